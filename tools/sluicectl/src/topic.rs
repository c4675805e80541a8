//! `sluicectl topic`: create, list, describe, delete, alter configs, add partitions.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use serde_json::{json, Value};
use sluice_client::{Client, ConfigResource, NewTopic, OffsetSpec, TopicInfo};

use crate::table::{join, kv, Table};
use crate::{
    print_json, print_text, topic_meta, unknown_topic, Cli, CmdResult, Failure, Format, TopicCmd,
};

/// Run a `topic` subcommand.
pub(crate) fn topic_cmd(
    cli: &Cli,
    client: &Client,
    cmd: &TopicCmd,
    timeout: Duration,
) -> CmdResult {
    match cmd {
        TopicCmd::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            client.create_topic(
                &NewTopic {
                    name: name.clone(),
                    partitions: *partitions,
                    replication_factor: *replication_factor,
                    configs: configs.clone(),
                },
                timeout,
            )?;
            match cli.format {
                Format::Json => print_json(&json!({
                    "topic": name, "created": true, "partitions": partitions,
                    "replication_factor": replication_factor,
                    "configs": configs.iter().cloned().collect::<BTreeMap<_, _>>(),
                })),
                Format::Table => print_text(&format!(
                    "Created topic {name} ({partitions} partitions).\n"
                )),
            }
        }
        TopicCmd::List { include_internal } => {
            let md = client.metadata()?;
            let topics: Vec<&TopicInfo> = md
                .topics
                .iter()
                .filter(|t| *include_internal || !t.internal)
                .collect();
            match cli.format {
                Format::Json => print_json(&Value::Array(
                    topics
                        .iter()
                        .map(|t| {
                            json!({
                                "name": t.name,
                                "topic_id": t.topic_id,
                                "partitions": t.partitions.len(),
                                "replication_factor":
                                    t.partitions.first().map(|p| p.replicas.len()).unwrap_or(0),
                                "internal": t.internal,
                            })
                        })
                        .collect(),
                )),
                Format::Table => {
                    let mut tb = Table::new(&["NAME", "PARTITIONS", "REPLICAS", "INTERNAL"]);
                    for t in topics {
                        tb.row(vec![
                            t.name.clone(),
                            t.partitions.len().to_string(),
                            t.partitions
                                .first()
                                .map(|p| p.replicas.len())
                                .unwrap_or(0)
                                .to_string(),
                            t.internal.to_string(),
                        ]);
                    }
                    print_text(&tb.render())
                }
            }
        }
        TopicCmd::Describe { name } => topic_describe(cli, client, name),
        TopicCmd::Delete { name } => {
            client
                .delete_topic(name, timeout)
                .map_err(|e| unknown_topic(name, e))?;
            match cli.format {
                Format::Json => print_json(&json!({"topic": name, "deleted": true})),
                Format::Table => print_text(&format!("Deleted topic {name}.\n")),
            }
        }
        TopicCmd::AlterConfig { name, set, delete } => {
            if set.is_empty() && delete.is_empty() {
                return Err(Failure(
                    "nothing to change: give --set k=v or --delete k".into(),
                ));
            }
            client
                .alter_configs(ConfigResource::Topic, name, set, delete)
                .map_err(|e| unknown_topic(name, e))?;
            match cli.format {
                Format::Json => print_json(&json!({
                    "topic": name,
                    "set": set.iter().cloned().collect::<BTreeMap<_, _>>(),
                    "deleted": delete,
                })),
                Format::Table => {
                    let mut s = String::new();
                    for (k, v) in set {
                        s.push_str(&format!("Set {k}={v} on {name}.\n"));
                    }
                    for k in delete {
                        s.push_str(&format!("Reverted {k} to its default on {name}.\n"));
                    }
                    print_text(&s)
                }
            }
        }
        TopicCmd::AddPartitions { name, count } => {
            client
                .create_partitions(name, *count, timeout)
                .map_err(|e| unknown_topic(name, e))?;
            match cli.format {
                Format::Json => print_json(&json!({"topic": name, "partitions": count})),
                Format::Table => print_text(&format!("Topic {name} now has {count} partitions.\n")),
            }
        }
    }
}

fn topic_describe(cli: &Cli, client: &Client, name: &str) -> CmdResult {
    let t = topic_meta(client, name)?;
    let ids: Vec<i32> = t.partitions.iter().map(|p| p.partition).collect();
    let with_leader: Vec<i32> = t
        .partitions
        .iter()
        .filter(|p| p.leader >= 0)
        .map(|p| p.partition)
        .collect();
    let earliest = client.list_offsets(name, &with_leader, OffsetSpec::Earliest)?;
    let latest = client.list_offsets(name, &with_leader, OffsetSpec::Latest)?;
    let find = |v: &[sluice_client::PartitionOffset], p: i32| {
        v.iter().find(|o| o.partition == p).map(|o| o.offset)
    };
    let configs = if client.supports(ApiKey::DescribeConfigs)? {
        Some(client.describe_configs(ConfigResource::Topic, name)?)
    } else {
        None
    };
    match cli.format {
        Format::Json => {
            let parts: Vec<Value> = t
                .partitions
                .iter()
                .map(|p| {
                    json!({
                        "partition": p.partition,
                        "leader": p.leader,
                        "leader_epoch": p.leader_epoch,
                        "replicas": p.replicas,
                        "isr": p.isr,
                        "log_start_offset": find(&earliest, p.partition),
                        "high_watermark": find(&latest, p.partition),
                        "error": p.error,
                    })
                })
                .collect();
            print_json(&json!({
                "name": t.name,
                "topic_id": t.topic_id,
                "internal": t.internal,
                "partitions": parts,
                "configs": configs,
            }))
        }
        Format::Table => {
            let mut s = kv(&[
                ("Topic", t.name.clone()),
                ("Topic id", t.topic_id.to_string()),
                ("Partitions", ids.len().to_string()),
                ("Internal", t.internal.to_string()),
            ]);
            s.push('\n');
            let mut tb = Table::new(&[
                "PARTITION",
                "LEADER",
                "EPOCH",
                "REPLICAS",
                "ISR",
                "LOG-START",
                "HIGH-WATERMARK",
            ]);
            let opt = |o: Option<i64>| o.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
            for p in &t.partitions {
                tb.row(vec![
                    p.partition.to_string(),
                    p.leader.to_string(),
                    p.leader_epoch.to_string(),
                    join(&p.replicas),
                    join(&p.isr),
                    opt(find(&earliest, p.partition)),
                    opt(find(&latest, p.partition)),
                ]);
            }
            s.push_str(&tb.render());
            if let Some(configs) = configs {
                let overrides: Vec<_> = configs.iter().filter(|c| !c.is_default()).collect();
                s.push_str(&format!(
                    "\nConfigs ({} set on the topic, {} total; --format json lists all):\n",
                    overrides.len(),
                    configs.len()
                ));
                let mut ct = Table::new(&["NAME", "VALUE", "SOURCE"]);
                for c in overrides {
                    ct.row(vec![
                        c.name.clone(),
                        c.value.clone().unwrap_or_else(|| "(hidden)".into()),
                        c.source.clone(),
                    ]);
                }
                s.push_str(&ct.render());
            }
            print_text(&s)
        }
    }
}
