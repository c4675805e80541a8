//! The admin HTTP API on `--admin-addr`: `/metrics`, `/v1/status`, `/v1/partitions`,
//! `/v1/health`. It runs on shard 0; scrapes gather a snapshot from every shard.
//!
//! Requests are parsed with `httparse`; a request whose head exceeds 16 KiB gets 431, an
//! unparseable one 400, a method other than GET/HEAD 405, and a client that stalls is
//! dropped after a timeout. Every response closes the connection.

use std::rc::Rc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures::future::{select, Either};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use serde::Serialize;

use crate::cluster::Shard;
use crate::metrics::prometheus;
use crate::metrics::registry::{PartitionGauge, Snapshot};

/// Largest request head accepted.
pub const REQUEST_HEAD_MAX_BYTES: usize = 16 * 1024;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Headers parsed at most.
const HEADERS_MAX: usize = 64;

static STARTED_AT: OnceLock<Instant> = OnceLock::new();

/// Marks the broker's start time for `/v1/status` uptime.
pub fn mark_start() {
    let _ = STARTED_AT.set(Instant::now());
}

/// A complete HTTP response.
struct Reply {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: String,
}

impl Reply {
    fn text(status: u16, reason: &'static str, body: &str) -> Reply {
        Reply {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: format!("{body}\n"),
        }
    }

    fn json<T: Serialize>(value: &T) -> Reply {
        match serde_json::to_string_pretty(value) {
            Ok(body) => Reply {
                status: 200,
                reason: "OK",
                content_type: "application/json",
                body,
            },
            Err(e) => Reply::text(500, "Internal Server Error", &e.to_string()),
        }
    }
}

/// Serves the admin API until shutdown.
pub async fn serve(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        if shard.shutting_down.get() {
            return;
        }
        let accepted = match select(
            Box::pin(listener.accept()),
            Box::pin(shard.shutdown.notified()),
        )
        .await
        {
            Either::Left((accepted, _)) => accepted,
            Either::Right(_) => return,
        };
        match accepted {
            Ok(stream) => {
                glommio::spawn_local(handle_connection(shard.clone(), stream)).detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn handle_connection(shard: Rc<Shard>, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let reply = match read_head(&mut stream).await {
        Ok(head) => route(&shard, &head).await,
        Err(reply) => reply,
    };
    let head_only = false;
    let response = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        reply.status,
        reply.reason,
        reply.content_type,
        reply.body.len(),
        if head_only { "" } else { &reply.body }
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.close().await;
}

/// A parsed request line.
struct Head {
    method: String,
    path: String,
}

async fn read_head(stream: &mut TcpStream) -> Result<Head, Reply> {
    let mut buf = vec![0u8; REQUEST_HEAD_MAX_BYTES];
    let mut filled = 0;
    loop {
        let n = stream
            .read(&mut buf[filled..])
            .await
            .map_err(|_| Reply::text(408, "Request Timeout", "request not received in time"))?;
        if n == 0 {
            return Err(Reply::text(
                400,
                "Bad Request",
                "connection closed before the request ended",
            ));
        }
        filled += n;
        let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf[..filled]) {
            Ok(httparse::Status::Complete(_)) => {
                return Ok(Head {
                    method: request.method.unwrap_or("").to_string(),
                    path: request.path.unwrap_or("/").to_string(),
                });
            }
            Ok(httparse::Status::Partial) if filled == buf.len() => {
                return Err(Reply::text(
                    431,
                    "Request Header Fields Too Large",
                    "request head too large",
                ));
            }
            Ok(httparse::Status::Partial) => continue,
            Err(e) => {
                return Err(Reply::text(
                    400,
                    "Bad Request",
                    &format!("malformed request: {e}"),
                ))
            }
        }
    }
}

async fn route(shard: &Rc<Shard>, head: &Head) -> Reply {
    if head.method != "GET" && head.method != "HEAD" {
        return Reply::text(405, "Method Not Allowed", "only GET is supported");
    }
    let path = head.path.split('?').next().unwrap_or("");
    match path {
        "/metrics" => {
            let mut snapshot = gather(shard).await;
            snapshot.lag = crate::groups::driver::lag(shard)
                .await
                .into_iter()
                .filter_map(|l| {
                    l.lag().map(|lag| crate::metrics::registry::LagGauge {
                        group: l.committed.group_id.clone(),
                        topic: l.committed.topic.clone(),
                        partition: l.committed.partition,
                        lag,
                    })
                })
                .collect();
            Reply {
                status: 200,
                reason: "OK",
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: prometheus::render(&snapshot),
            }
        }
        "/v1/health" => {
            if shard.shutting_down.get() {
                return Reply::text(503, "Service Unavailable", "shutting down");
            }
            let offline: Vec<serde_json::Value> = gather(shard)
                .await
                .partitions
                .iter()
                .filter_map(|p| {
                    let reason = p.offline.as_ref()?;
                    Some(serde_json::json!({
                        "topic": p.topic,
                        "partition": p.partition,
                        "reason": reason,
                    }))
                })
                .collect();
            if offline.is_empty() {
                Reply::json(&serde_json::json!({ "status": "ok" }))
            } else {
                // Degraded, not down: other partitions still serve. 503 so a health check
                // pages someone; the body names what failed.
                let mut reply = Reply::json(&serde_json::json!({
                    "status": "degraded",
                    "offline_partitions": offline,
                }));
                reply.status = 503;
                reply.reason = "Service Unavailable";
                reply
            }
        }
        "/v1/status" => {
            let snapshot = gather(shard).await;
            Reply::json(&Status {
                node_id: shard.config.node_id,
                version: env!("CARGO_PKG_VERSION"),
                uptime_seconds: STARTED_AT.get().map_or(0, |t| t.elapsed().as_secs()),
                shards: shard.count,
                cores: shard.config.cores.clone(),
                kafka_addr: shard.config.kafka_addr.to_string(),
                partitions: snapshot.partitions.len(),
                connections: snapshot.connections_open,
                requests_in_flight: snapshot.requests_in_flight,
            })
        }
        "/v1/partitions" => {
            let mut partitions = gather(shard).await.partitions;
            partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
            Reply::json(
                &partitions
                    .iter()
                    .map(PartitionView::from)
                    .collect::<Vec<_>>(),
            )
        }
        _ => Reply::text(
            404,
            "Not Found",
            "unknown path; try /metrics, /v1/status, /v1/partitions, /v1/health",
        ),
    }
}

#[derive(Serialize)]
struct Status {
    node_id: i32,
    version: &'static str,
    uptime_seconds: u64,
    shards: usize,
    cores: Vec<usize>,
    kafka_addr: String,
    partitions: usize,
    connections: u64,
    requests_in_flight: u64,
}

#[derive(Serialize)]
struct PartitionView<'a> {
    topic: &'a str,
    partition: i32,
    leader: i32,
    shard: usize,
    leader_epoch: i32,
    log_start_offset: i64,
    high_watermark: i64,
    log_end_offset: i64,
    size_bytes: u64,
    offline: Option<&'a str>,
}

impl<'a> From<&'a PartitionGauge> for PartitionView<'a> {
    fn from(p: &'a PartitionGauge) -> Self {
        PartitionView {
            topic: &p.topic,
            partition: p.partition,
            leader: 0,
            shard: p.shard,
            leader_epoch: p.leader_epoch,
            log_start_offset: p.log_start_offset,
            high_watermark: p.high_watermark,
            log_end_offset: p.log_end_offset,
            size_bytes: p.size_bytes,
            offline: p.offline.as_deref(),
        }
    }
}

/// Collects and merges every shard's snapshot.
pub async fn gather(shard: &Rc<Shard>) -> Snapshot {
    let mut merged = Snapshot::default();
    for target in 0..shard.count {
        match shard
            .invoke_on(target, |s| async move { s.metrics_snapshot() })
            .await
        {
            Ok(snapshot) => merged.merge(snapshot),
            Err(e) => tracing::warn!(shard = target, error = %e, "metrics scrape missed a shard"),
        }
    }
    merged
}
