//! Network tuners: RPS and XPS of each NIC queue.
//!
//! The policy follows Seastar's `perftune.py`: when a NIC has fewer receive queues than the
//! host has CPUs, RPS spreads protocol processing over the shard cores (so one queue's CPU is
//! not the bottleneck); with enough hardware queues RPS is off (it would only add IPIs). XPS
//! gives each shard core its own transmit queue so sends do not contend on a queue lock.

use std::path::PathBuf;

use super::irq::{self, Nic};
use super::sys;
use super::{Change, Context, Finding, Status};

const RPS_WHY: &str = "with fewer RX queues than cores, all TCP receive processing lands on a few cores; RPS spreads it over the shard cores";
const XPS_WHY: &str = "without XPS, shards sending on the same TX queue contend on its lock; one queue per core keeps sends independent";

/// A queue file of a NIC and the CPUs it should name.
struct QueueTarget {
    path: PathBuf,
    label: String,
    wanted: Vec<usize>,
}

fn queues(nic: &Nic, prefix: &str) -> Vec<String> {
    sys::list_dir(&nic.dir.join("queues"))
        .into_iter()
        .filter(|q| q.starts_with(prefix))
        .collect()
}

fn rps_targets(ctx: &Context, nic: &Nic) -> Vec<QueueTarget> {
    let rx = queues(nic, "rx-");
    let wanted = if rx.len() < ctx.plan.online_cpus.len() {
        ctx.shard_cpus.clone()
    } else {
        Vec::new()
    };
    rx.iter()
        .map(|q| QueueTarget {
            path: nic.dir.join("queues").join(q).join("rps_cpus"),
            label: format!("{}/{q}", nic.name),
            wanted: wanted.clone(),
        })
        .collect()
}

fn xps_targets(ctx: &Context, nic: &Nic) -> Vec<QueueTarget> {
    let tx = queues(nic, "tx-");
    let count = tx.len();
    tx.iter()
        .enumerate()
        .map(|(i, q)| QueueTarget {
            path: nic.dir.join("queues").join(q).join("xps_cpus"),
            label: format!("{}/{q}", nic.name),
            wanted: ctx
                .shard_cpus
                .iter()
                .enumerate()
                .filter(|(j, _)| j % count == i)
                .map(|(_, &cpu)| cpu)
                .collect(),
        })
        .collect()
}

/// Compares every queue's mask with its target.
fn judge(ctx: &Context, name: &str, why: &str, targets: Vec<QueueTarget>) -> Finding {
    let recommended = if name == "net.rps" {
        format!(
            "shard CPUs {} when RX queues < CPUs, else off",
            sys::format_cpu_list(&ctx.shard_cpus)
        )
    } else {
        "shard CPUs spread one per TX queue".to_string()
    };
    if irq::nics(&ctx.roots).is_empty() {
        return Finding::not_applicable(
            name,
            "no physical NIC in class/net (container?)",
            recommended,
            why,
        );
    }
    let mut current = Vec::new();
    let mut changes = Vec::new();
    for target in targets {
        let Ok(text) = sys::read(&target.path) else {
            continue;
        };
        let Some(cpus) = sys::parse_cpu_mask(&text) else {
            continue;
        };
        current.push(format!("{}={}", target.label, text.trim()));
        if cpus != target.wanted {
            changes.push(Change {
                path: target.path,
                value: sys::format_cpu_mask(&target.wanted),
            });
        }
    }
    if current.is_empty() {
        return Finding::not_applicable(
            name,
            "no readable queue masks (kernel without RPS/XPS, or container)",
            recommended,
            why,
        );
    }
    if changes.is_empty() {
        return Finding::new(name, current.join(" "), recommended, why, Status::Ok, "");
    }
    Finding::new(
        name,
        current.join(" "),
        recommended,
        why,
        Status::Warn,
        format!(
            "sluice tune --apply ({} queue mask(s)); --persist writes tmpfiles.d entries",
            changes.len()
        ),
    )
    .with_changes(changes)
}

/// RPS masks of every NIC's receive queues.
pub fn rps(ctx: &Context) -> Finding {
    let targets = irq::nics(&ctx.roots)
        .iter()
        .flat_map(|nic| rps_targets(ctx, nic))
        .collect();
    judge(ctx, "net.rps", RPS_WHY, targets)
}

/// XPS masks of every NIC's transmit queues.
pub fn xps(ctx: &Context) -> Finding {
    let targets = irq::nics(&ctx.roots)
        .iter()
        .flat_map(|nic| xps_targets(ctx, nic))
        .collect();
    judge(ctx, "net.xps", XPS_WHY, targets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tune::apply;
    use crate::tune::testing::{make_read_only, FakeHost};

    fn fake_nic(host: &FakeHost, rx: usize, tx: usize) {
        std::fs::create_dir_all(host.roots.sys("devices/pci/0000:3b:00.0")).unwrap();
        std::fs::create_dir_all(host.roots.sys("class/net/ens1")).unwrap();
        std::os::unix::fs::symlink(
            host.roots.sys("devices/pci/0000:3b:00.0"),
            host.roots.sys("class/net/ens1/device"),
        )
        .unwrap();
        for q in 0..rx {
            host.sys(&format!("class/net/ens1/queues/rx-{q}/rps_cpus"), "0\n");
        }
        for q in 0..tx {
            host.sys(
                &format!("class/net/ens1/queues/tx-{q}/xps_cpus"),
                "00000000\n",
            );
        }
    }

    #[test]
    fn single_queue_nic_gets_rps_on_shards() {
        let host = FakeHost::new();
        fake_nic(&host, 1, 2);
        let ctx = host.context();
        let f = rps(&ctx);
        assert_eq!(f.status, Status::Warn, "{f:?}");
        let x = xps(&ctx);
        assert_eq!(x.status, Status::Warn);
        apply(&[f, x], false, &mut Vec::new()).unwrap();
        assert_eq!(host.read_sys("class/net/ens1/queues/rx-0/rps_cpus"), "e");
        assert_eq!(host.read_sys("class/net/ens1/queues/tx-0/xps_cpus"), "a");
        assert_eq!(host.read_sys("class/net/ens1/queues/tx-1/xps_cpus"), "4");
        assert_eq!(rps(&ctx).status, Status::Ok);
        assert_eq!(xps(&ctx).status, Status::Ok);
    }

    #[test]
    fn enough_queues_means_rps_off() {
        let host = FakeHost::new();
        fake_nic(&host, 4, 0);
        assert_eq!(rps(&host.context()).status, Status::Ok);
        assert_eq!(xps(&host.context()).status, Status::NotApplicable);
    }

    #[test]
    fn missing_and_read_only() {
        let host = FakeHost::new();
        assert_eq!(rps(&host.context()).status, Status::NotApplicable);
        fake_nic(&host, 1, 0);
        make_read_only(&host.roots.sys("class/net/ens1/queues/rx-0/rps_cpus"));
        // The kernel release is not a hex mask: no readable mask, reported as N/A.
        assert_eq!(rps(&host.context()).status, Status::NotApplicable);
    }
}
