//! The end-to-end consumer: one long-poll fetch loop per leader, recording each record's
//! latency from its intended send time (carried in the value).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_client::{decode_fetched, Client, Connection};

use crate::error::BenchError;
use crate::schedule::latency;
use crate::stats::{new_histogram, record};
use crate::workload::Workload;

use super::*;

/// A leader's connection, the topic id, and the (partition, next offset) pairs read from it.
pub(super) type LeaderPartitions = (Arc<Connection>, uuid::Uuid, Vec<(i32, i64)>);

/// One e2e consumer's fetch loop against one leader.
pub(super) struct Fetcher {
    pub(super) _client: Client,
    pub(super) conn: Arc<Connection>,
    pub(super) topic: String,
    pub(super) topic_uuid: uuid::Uuid,
    pub(super) offsets: Vec<(i32, i64)>,
}

impl Fetcher {
    pub(super) fn connect(
        bootstrap: &str,
        w: &Workload,
        idx: u32,
        partitions: &[i32],
        start: &HashMap<i32, i64>,
    ) -> Result<Vec<Fetcher>, BenchError> {
        let client = Client::connect(client_config(bootstrap, &format!("sluice-bench-c{idx}")))
            .map_err(|e| BenchError::client(format!("connect to {bootstrap}"), e))?;
        let mut by_leader: Vec<LeaderPartitions> = Vec::new();
        for &p in partitions {
            let (conn, t) = client
                .leader_for(&w.topic, p)
                .map_err(|e| BenchError::client(format!("leader of {}/{p}", w.topic), e))?;
            let off = start.get(&p).copied().unwrap_or(0);
            match by_leader.iter_mut().find(|(c, _, _)| Arc::ptr_eq(c, &conn)) {
                Some((_, _, v)) => v.push((p, off)),
                None => by_leader.push((conn, t.topic_id, vec![(p, off)])),
            }
        }
        let mut out = Vec::new();
        let mut client = Some(client);
        for (conn, id, offsets) in by_leader {
            // Each fetcher keeps a client alive only to keep the connection's owner around;
            // the first one carries it.
            let c = match client.take() {
                Some(c) => c,
                None => Client::connect(client_config(bootstrap, &format!("sluice-bench-c{idx}")))
                    .map_err(|e| BenchError::client(format!("connect to {bootstrap}"), e))?,
            };
            out.push(Fetcher {
                _client: c,
                conn,
                topic: w.topic.clone(),
                topic_uuid: id,
                offsets,
            });
        }
        Ok(out)
    }

    pub(super) fn run(
        mut self,
        shared: &Shared,
        win: Window,
        run_id: u32,
    ) -> Result<(Histogram<u64>, u64), BenchError> {
        let mut h = new_histogram();
        let mut received = 0u64;
        let version = self
            .conn
            .version_for::<FetchRequest>()
            .map_err(|e| BenchError::client("fetch version", e))?;
        let mut consecutive_errors = 0;
        while !shared.stop_consumers.load(Ordering::Relaxed) {
            let mut ft = FetchTopic::default().with_partitions(
                self.offsets
                    .iter()
                    .map(|(p, o)| {
                        FetchPartition::default()
                            .with_partition(*p)
                            .with_fetch_offset(*o)
                            .with_partition_max_bytes(1 << 20)
                    })
                    .collect(),
            );
            if version >= 13 {
                ft.topic_id = self.topic_uuid;
            } else {
                ft.topic = TopicName(StrBytes::from_string(self.topic.clone()));
            }
            let req = FetchRequest::default()
                .with_max_wait_ms(FETCH_MAX_WAIT.as_millis() as i32)
                .with_min_bytes(1)
                .with_max_bytes(8 << 20)
                .with_topics(vec![ft]);
            let resp = self
                .conn
                .send_version(&req, version)
                .and_then(|f| f.wait_timeout(Duration::from_secs(30) + FETCH_MAX_WAIT));
            let now = Instant::now();
            let resp = match resp {
                Ok(r) => {
                    consecutive_errors = 0;
                    r
                }
                Err(e) => {
                    consecutive_errors += 1;
                    shared.error(0, || format!("fetch: {e}"));
                    if consecutive_errors > 20 || self.conn.is_closed() {
                        return Err(BenchError::client("e2e consumer fetch", e));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            let mut max = 0;
            for t in resp.responses {
                for pd in t.partitions {
                    if pd.error_code != 0 {
                        shared.error(0, || {
                            format!(
                                "fetch {}/{}: error code {}",
                                self.topic, pd.partition_index, pd.error_code
                            )
                        });
                        continue;
                    }
                    let slot = match self
                        .offsets
                        .iter_mut()
                        .find(|(p, _)| *p == pd.partition_index)
                    {
                        Some(s) => s,
                        None => continue,
                    };
                    let data = match pd.records {
                        Some(d) if !d.is_empty() => d,
                        _ => continue,
                    };
                    let (recs, next) = decode_fetched(pd.partition_index, data, slot.1)
                        .map_err(|e| BenchError::Run(format!("undecodable fetch data: {e}")))?;
                    for r in &recs {
                        let Some((run, ns)) = r.value.as_deref().and_then(parse_record_value)
                        else {
                            continue;
                        };
                        if run != run_id {
                            continue;
                        }
                        let intended = win.base + Duration::from_nanos(ns);
                        let l = latency(intended, now);
                        max = max.max(l.as_micros() as u64);
                        if win.measured(intended) {
                            record(&mut h, l);
                            received += 1;
                        }
                        shared.consumed.fetch_add(1, Ordering::Relaxed);
                    }
                    let after_last = recs.last().map(|r| r.offset + 1).unwrap_or(slot.1);
                    slot.1 = after_last.max(next.unwrap_or(slot.1));
                }
            }
            shared.second_max_us.fetch_max(max, Ordering::Relaxed);
        }
        Ok((h, received))
    }
}
