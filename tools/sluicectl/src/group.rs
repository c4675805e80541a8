//! `sluicectl group`: list, describe (members, assignments, lag), delete, reset offsets.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::ApiKey;
use serde_json::{json, Value};
use sluice_client::{Client, OffsetSpec};

use crate::table::{join, kv, Table};
use crate::{
    print_json, print_text, topic_meta, Cli, CmdResult, Failure, Format, GroupCmd, ResetArgs,
};

/// Fail clearly when the broker has no consumer-group support at all.
fn require_groups(client: &Client, key: ApiKey) -> CmdResult {
    if client.supports(key)? {
        Ok(())
    } else {
        Err(Failure(format!(
            "the broker does not support consumer groups ({key:?} is not in its ApiVersions)"
        )))
    }
}

/// Run a `group` subcommand.
pub(crate) fn group_cmd(cli: &Cli, client: &Client, cmd: &GroupCmd) -> CmdResult {
    match cmd {
        GroupCmd::List => {
            require_groups(client, ApiKey::ListGroups)?;
            let groups = client.list_groups()?;
            match cli.format {
                Format::Json => print_json(&serde_json::to_value(&groups).unwrap_or_default()),
                Format::Table => {
                    let mut tb = Table::new(&["GROUP", "STATE", "PROTOCOL-TYPE"]);
                    for g in groups {
                        tb.row(vec![
                            g.group_id,
                            g.state.unwrap_or_else(|| "-".into()),
                            g.protocol_type,
                        ]);
                    }
                    print_text(&tb.render())
                }
            }
        }
        GroupCmd::Describe { name } => group_describe(cli, client, name),
        GroupCmd::Delete { name } => {
            require_groups(client, ApiKey::DeleteGroups)?;
            client.delete_group(name)?;
            match cli.format {
                Format::Json => print_json(&json!({"group": name, "deleted": true})),
                Format::Table => print_text(&format!("Deleted group {name}.\n")),
            }
        }
        GroupCmd::ResetOffsets(args) => reset_offsets(cli, client, args),
    }
}

fn group_describe(cli: &Cli, client: &Client, name: &str) -> CmdResult {
    require_groups(client, ApiKey::OffsetFetch)?;
    let desc = if client.supports(ApiKey::DescribeGroups)? {
        Some(client.describe_group(name)?)
    } else {
        None
    };
    let committed = client.fetch_committed(name, None)?;
    let exists = !committed.is_empty()
        || desc
            .as_ref()
            .map(|d| d.state != "Dead" || !d.members.is_empty())
            .unwrap_or(false);
    if !exists {
        return Err(Failure(format!("group {name} does not exist")));
    }
    // Partitions to report: everything committed plus everything assigned.
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    let mut parts: BTreeSet<(String, i32)> = committed
        .iter()
        .map(|c| (c.topic.clone(), c.partition))
        .collect();
    if let Some(d) = &desc {
        for m in &d.members {
            for (t, ps) in &m.assignment {
                for p in ps {
                    parts.insert((t.clone(), *p));
                    owner.insert((t.clone(), *p), m.member_id.clone());
                }
            }
        }
    }
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (t, p) in &parts {
        by_topic.entry(t.clone()).or_default().push(*p);
    }
    let mut hw: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for (t, ps) in &by_topic {
        // A deleted topic still has committed offsets; show them without a high watermark.
        if let Ok(offs) = client.list_offsets(t, ps, OffsetSpec::Latest) {
            for o in offs {
                hw.insert((t.clone(), o.partition), o.offset);
            }
        }
    }
    let rows: Vec<Value> = parts
        .iter()
        .map(|(t, p)| {
            let c = committed
                .iter()
                .find(|c| &c.topic == t && c.partition == *p)
                .map(|c| c.offset)
                .filter(|o| *o >= 0);
            let h = hw.get(&(t.clone(), *p)).copied();
            let lag = match (c, h) {
                (Some(c), Some(h)) => Some((h - c).max(0)),
                _ => None,
            };
            json!({
                "topic": t, "partition": p, "committed": c, "high_watermark": h,
                "lag": lag, "member": owner.get(&(t.clone(), *p)),
            })
        })
        .collect();
    let total_lag: i64 = rows.iter().filter_map(|r| r["lag"].as_i64()).sum();
    let (state, protocol_type, protocol) = match &desc {
        Some(d) => (d.state.clone(), d.protocol_type.clone(), d.protocol.clone()),
        None => ("unknown".into(), String::new(), String::new()),
    };
    let members = desc.as_ref().map(|d| d.members.clone()).unwrap_or_default();
    match cli.format {
        Format::Json => print_json(&json!({
            "group": name,
            "state": state,
            "protocol_type": protocol_type,
            "protocol": protocol,
            "members": members,
            "offsets": rows,
            "total_lag": total_lag,
        })),
        Format::Table => {
            let mut s = kv(&[
                ("Group", name.to_string()),
                ("State", state),
                ("Protocol type", protocol_type),
                ("Protocol", protocol),
                ("Members", members.len().to_string()),
                ("Total lag", total_lag.to_string()),
            ]);
            if !members.is_empty() {
                s.push('\n');
                let mut mt = Table::new(&["MEMBER", "CLIENT-ID", "HOST", "ASSIGNMENT"]);
                for m in &members {
                    let a = m
                        .assignment
                        .iter()
                        .map(|(t, ps)| format!("{t}:{}", join(ps)))
                        .collect::<Vec<_>>()
                        .join(" ");
                    mt.row(vec![
                        m.member_id.clone(),
                        m.client_id.clone(),
                        m.client_host.clone(),
                        a,
                    ]);
                }
                s.push_str(&mt.render());
            }
            s.push('\n');
            let mut tb = Table::new(&[
                "TOPIC",
                "PARTITION",
                "COMMITTED",
                "HIGH-WATERMARK",
                "LAG",
                "MEMBER",
            ]);
            let cell = |v: &Value| match v {
                Value::Null => "-".to_string(),
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            for r in &rows {
                tb.row(vec![
                    cell(&r["topic"]),
                    cell(&r["partition"]),
                    cell(&r["committed"]),
                    cell(&r["high_watermark"]),
                    cell(&r["lag"]),
                    cell(&r["member"]),
                ]);
            }
            s.push_str(&tb.render());
            print_text(&s)
        }
    }
}

fn reset_offsets(cli: &Cli, client: &Client, a: &ResetArgs) -> CmdResult {
    require_groups(client, ApiKey::OffsetCommit)?;
    let t = topic_meta(client, &a.topic)?;
    let all: Vec<i32> = t.partitions.iter().map(|p| p.partition).collect();
    let parts: Vec<i32> = if a.partitions.is_empty() {
        all.clone()
    } else {
        for p in &a.partitions {
            if !all.contains(p) {
                return Err(Failure(format!(
                    "topic {} has no partition {p} (it has {})",
                    a.topic,
                    all.len()
                )));
            }
        }
        a.partitions.clone()
    };
    if client.supports(ApiKey::DescribeGroups)? {
        let d = client.describe_group(&a.name)?;
        if !d.members.is_empty() || !matches!(d.state.as_str(), "Empty" | "Dead" | "") {
            return Err(Failure(format!(
                "group {} is not empty (state {}, {} members): stop its consumers before resetting offsets",
                a.name,
                d.state,
                d.members.len()
            )));
        }
    }
    let earliest = client.list_offsets(&a.topic, &parts, OffsetSpec::Earliest)?;
    let latest = client.list_offsets(&a.topic, &parts, OffsetSpec::Latest)?;
    let by_time = match a.to.to_datetime {
        Some(ts) => Some(client.list_offsets(&a.topic, &parts, OffsetSpec::Timestamp(ts))?),
        None => None,
    };
    let committed = client.fetch_committed(&a.name, Some(&[(a.topic.clone(), parts.clone())]))?;
    let get = |v: &[sluice_client::PartitionOffset], p: i32| {
        v.iter()
            .find(|o| o.partition == p)
            .map(|o| o.offset)
            .unwrap_or(-1)
    };
    let mut plan = Vec::new();
    for &p in &parts {
        let (lo, hi) = (get(&earliest, p), get(&latest, p));
        let new = if a.to.to_earliest {
            lo
        } else if a.to.to_latest {
            hi
        } else if let Some(o) = a.to.to_offset {
            o.clamp(lo, hi)
        } else if let Some(v) = &by_time {
            // No record at or after the time: the end, as Kafka does.
            match get(v, p) {
                o if o < 0 => hi,
                o => o,
            }
        } else {
            return Err(Failure("no reset target given".into()));
        };
        let current = committed
            .iter()
            .find(|c| c.topic == a.topic && c.partition == p)
            .map(|c| c.offset)
            .filter(|o| *o >= 0);
        plan.push((p, current, new));
    }
    if a.execute {
        let offsets: Vec<(String, i32, i64)> = plan
            .iter()
            .map(|(p, _, n)| (a.topic.clone(), *p, *n))
            .collect();
        client.commit_offsets(&a.name, &offsets)?;
    }
    match cli.format {
        Format::Json => print_json(&json!({
            "group": a.name,
            "topic": a.topic,
            "executed": a.execute,
            "partitions": plan.iter().map(|(p, c, n)| json!({
                "partition": p, "current": c, "new": n,
            })).collect::<Vec<_>>(),
        })),
        Format::Table => {
            let mut tb = Table::new(&["TOPIC", "PARTITION", "CURRENT", "NEW"]);
            for (p, c, n) in &plan {
                tb.row(vec![
                    a.topic.clone(),
                    p.to_string(),
                    c.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                    n.to_string(),
                ]);
            }
            let mut s = tb.render();
            if a.execute {
                s.push_str(&format!("Committed new offsets for group {}.\n", a.name));
            } else {
                s.push_str(
                    "Dry run: nothing was changed. Add --execute to commit these offsets.\n",
                );
            }
            print_text(&s)
        }
    }
}
