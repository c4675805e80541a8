//! `sluicectl cluster`: info (id, controller, brokers, APIs) and health.

use std::process::ExitCode;

use kafka_protocol::messages::ApiKey;
use serde_json::{json, Value};
use sluice_client::Client;

use crate::table::{kv, Table};
use crate::{connect, print_json, print_text, Cli, CmdResult, Failure, Format};

pub(crate) fn cluster_info(cli: &Cli, client: &Client) -> CmdResult {
    let info = client.describe_cluster()?;
    let md = client.metadata()?;
    let partitions: usize = md.topics.iter().map(|t| t.partitions.len()).sum();
    let conn = client.any_broker()?;
    let apis: Vec<Value> = conn
        .versions()
        .all()
        .into_iter()
        .map(|(k, r)| {
            let name = ApiKey::try_from(k)
                .map(|k| format!("{k:?}"))
                .unwrap_or_else(|_| format!("Unknown({k})"));
            json!({"api_key": k, "name": name, "min": r.min, "max": r.max})
        })
        .collect();
    match cli.format {
        Format::Json => print_json(&json!({
            "cluster_id": info.cluster_id,
            "controller_id": info.controller_id,
            "brokers": info.brokers,
            "topics": md.topics.len(),
            "partitions": partitions,
            "bootstrap": conn.addr(),
            "api_versions": apis,
        })),
        Format::Table => {
            let mut s = kv(&[
                (
                    "Cluster id",
                    info.cluster_id.clone().unwrap_or_else(|| "-".into()),
                ),
                ("Controller", info.controller_id.to_string()),
                ("Brokers", info.brokers.len().to_string()),
                ("Topics", md.topics.len().to_string()),
                ("Partitions", partitions.to_string()),
                ("APIs", apis.len().to_string()),
            ]);
            s.push('\n');
            let mut tb = Table::new(&["ID", "HOST", "PORT", "RACK", "CONTROLLER"]);
            for b in &info.brokers {
                tb.row(vec![
                    b.node_id.to_string(),
                    b.host.clone(),
                    b.port.to_string(),
                    b.rack.clone().unwrap_or_else(|| "-".into()),
                    if b.node_id == info.controller_id {
                        "*".into()
                    } else {
                        String::new()
                    },
                ]);
            }
            s.push_str(&tb.render());
            print_text(&s)
        }
    }
}

/// Run `cluster health`: exit status 1 when a partition has no leader or a broker is
/// unreachable. It connects itself, so an unreachable cluster is reported, not an error.
pub(crate) fn cluster_health(cli: &Cli) -> Result<ExitCode, Failure> {
    let mut problems: Vec<String> = Vec::new();
    let mut report = json!({"healthy": false});
    match connect(cli).and_then(|c| Ok((c.metadata()?, c))) {
        Err(Failure(e)) => problems.push(e),
        Ok((md, client)) => {
            let mut leaderless = Vec::new();
            let mut partitions = 0usize;
            for t in &md.topics {
                for p in &t.partitions {
                    partitions += 1;
                    if p.leader < 0 || md.broker(p.leader).is_none() {
                        leaderless.push(json!({"topic": t.name, "partition": p.partition}));
                    }
                }
            }
            if !leaderless.is_empty() {
                problems.push(format!("{} partitions have no leader", leaderless.len()));
            }
            let mut unreachable = Vec::new();
            for b in &md.brokers {
                if let Err(e) = client.broker(b.node_id) {
                    unreachable.push(json!({"node_id": b.node_id, "error": e.to_string()}));
                    problems.push(e.to_string());
                }
            }
            if md.brokers.is_empty() {
                problems.push("metadata lists no brokers".into());
            }
            report = json!({
                "healthy": problems.is_empty(),
                "brokers": md.brokers.len(),
                "topics": md.topics.len(),
                "partitions": partitions,
                "leaderless_partitions": leaderless,
                "unreachable_brokers": unreachable,
            });
        }
    }
    let healthy = problems.is_empty();
    if let Value::Object(m) = &mut report {
        m.insert("healthy".into(), Value::from(healthy));
        m.insert("problems".into(), json!(problems));
    }
    match cli.format {
        Format::Json => print_json(&report)?,
        Format::Table => {
            let mut s = format!(
                "{}\n",
                if healthy {
                    "Cluster is healthy."
                } else {
                    "Cluster is UNHEALTHY."
                }
            );
            for k in ["brokers", "topics", "partitions"] {
                if let Some(v) = report.get(k) {
                    s.push_str(&format!("  {k}: {v}\n"));
                }
            }
            for p in &problems {
                s.push_str(&format!("  problem: {p}\n"));
            }
            print_text(&s)?;
        }
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
