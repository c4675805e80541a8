//! IRQ affinity of the NIC and NVMe queues versus the shard cores.
//!
//! When the CPU plan reserves IRQ cores, every NIC and NVMe interrupt should be steered to
//! them so shards are not preempted by softirq work. NVMe drivers usually bind one queue per
//! core with kernel-managed affinity (completions then run on the submitting shard, which is
//! what we want); such IRQs cannot be moved and are reported as OK.

use std::path::{Path, PathBuf};

use super::sys::{self, Roots};
use super::{Change, Context, Finding, Status};

const NIC_WHY: &str = "NIC interrupts and their softirq (TCP receive) on a shard core preempt the shard at random, adding tens of microseconds to whatever request it was running";
const NVME_WHY: &str = "an NVMe completion interrupt on another shard's core preempts that shard; per-core queues or dedicated IRQ cores keep completions off foreign shards";

/// A network interface backed by a device (not `lo`, bridges or veths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// Interface name, e.g. `eth0`.
    pub name: String,
    /// The interface's directory under `class/net`.
    pub dir: PathBuf,
    /// Basename of its device (e.g. `virtio2`, `0000:3b:00.0`), used to find IRQ names.
    pub device: String,
}

/// Physical network interfaces under the sysfs root.
pub fn nics(roots: &Roots) -> Vec<Nic> {
    let class = roots.sys("class/net");
    sys::list_dir(&class)
        .into_iter()
        .filter(|name| name != "lo")
        .filter_map(|name| {
            let dir = class.join(&name);
            let device_path = dir.join("device");
            let resolved = std::fs::canonicalize(&device_path).ok()?;
            let device = resolved.file_name()?.to_string_lossy().into_owned();
            Some(Nic { name, dir, device })
        })
        .collect()
}

/// `(irq, name)` of every line of `/proc/interrupts` that names a device.
pub fn proc_interrupts(roots: &Roots) -> Vec<(u32, String)> {
    let Ok(text) = sys::read(&roots.proc("interrupts")) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let (irq, rest) = line.trim_start().split_once(':')?;
            let irq: u32 = irq.trim().parse().ok()?;
            let name = rest.split_whitespace().last()?.to_string();
            Some((irq, name))
        })
        .collect()
}

/// IRQ numbers listed in a device's `msi_irqs` directory (or its parent's, for virtio).
fn msi_irqs(device_dir: &Path) -> Vec<u32> {
    for dir in [device_dir.join("msi_irqs"), device_dir.join("../msi_irqs")] {
        let irqs: Vec<u32> = sys::list_dir(&dir)
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        if !irqs.is_empty() {
            return irqs;
        }
    }
    Vec::new()
}

/// The NIC's IRQs: its queue interrupts from `/proc/interrupts` when named there, else its
/// device's MSI vectors.
fn nic_irqs(roots: &Roots, nic: &Nic) -> Vec<u32> {
    let prefix = format!("{}-", nic.device);
    let named: Vec<u32> = proc_interrupts(roots)
        .into_iter()
        .filter(|(_, name)| {
            (name.starts_with(&nic.name) || name.starts_with(&prefix)) && !name.ends_with("config")
        })
        .map(|(irq, _)| irq)
        .collect();
    if named.is_empty() {
        msi_irqs(&nic.dir.join("device"))
    } else {
        named
    }
}

/// NVMe queue IRQs: named `nvme*q*` in `/proc/interrupts`, else each controller's MSI vectors.
fn nvme_irqs(roots: &Roots) -> Vec<u32> {
    let named: Vec<u32> = proc_interrupts(roots)
        .into_iter()
        .filter(|(_, name)| name.starts_with("nvme"))
        .map(|(irq, _)| irq)
        .collect();
    if !named.is_empty() {
        return named;
    }
    let class = roots.sys("class/nvme");
    sys::list_dir(&class)
        .iter()
        .flat_map(|ctrl| msi_irqs(&class.join(ctrl).join("device")))
        .collect()
}

/// Affinity of each IRQ as read from `irq/N/smp_affinity_list`, `None` when unreadable.
fn affinities(roots: &Roots, irqs: &[u32]) -> Vec<(u32, PathBuf, Option<Vec<usize>>)> {
    irqs.iter()
        .map(|&irq| {
            let path = roots.proc(&format!("irq/{irq}/smp_affinity_list"));
            let cpus = sys::read(&path).ok().and_then(|t| sys::parse_cpu_list(&t));
            (irq, path, cpus)
        })
        .collect()
}

/// Judges a set of IRQs: they should avoid shard cores when IRQ cores are reserved.
fn judge(
    ctx: &Context,
    name: &str,
    why: &str,
    what: &str,
    irqs: &[u32],
    managed_ok: bool,
) -> Finding {
    let irq_cpus = ctx.irq_cpus();
    let recommended = if irq_cpus.is_empty() {
        "any (every CPU runs a shard)".to_string()
    } else {
        format!("CPU {}", sys::format_cpu_list(&irq_cpus))
    };
    if irqs.is_empty() {
        return Finding::not_applicable(name, format!("no {what} IRQs found"), recommended, why);
    }
    let found = affinities(&ctx.roots, irqs);
    let readable: Vec<_> = found.iter().filter(|(_, _, c)| c.is_some()).collect();
    if readable.is_empty() {
        return Finding::not_applicable(
            name,
            format!(
                "{} {what} IRQ(s) but irq/*/smp_affinity_list unreadable",
                irqs.len()
            ),
            recommended,
            why,
        );
    }
    let summary: Vec<String> = readable
        .iter()
        .map(|(irq, _, cpus)| {
            let cpus = cpus.as_deref().unwrap_or_default();
            format!("{irq}->{}", sys::format_cpu_list(cpus))
        })
        .collect();
    let current = summary.join(" ");
    if irq_cpus.is_empty() {
        return Finding::new(name, current, recommended, why, Status::Ok, "");
    }
    // One single-CPU IRQ per shard core: kernel-managed per-core queues.
    let per_core = managed_ok
        && readable.len() >= ctx.shard_cpus.len()
        && readable
            .iter()
            .all(|(_, _, c)| c.as_ref().is_some_and(|c| c.len() == 1));
    if per_core {
        return Finding::new(
            name,
            current,
            "per-core queues (kernel-managed)",
            why,
            Status::Ok,
            "",
        );
    }
    let changes: Vec<Change> = readable
        .iter()
        .filter(|(_, _, cpus)| {
            cpus.as_ref()
                .is_some_and(|c| c.iter().any(|cpu| ctx.shard_cpus.contains(cpu)))
        })
        .map(|(_, path, _)| Change {
            path: path.clone(),
            value: sys::format_cpu_list(&irq_cpus),
        })
        .collect();
    if changes.is_empty() {
        return Finding::new(name, current, recommended, why, Status::Ok, "");
    }
    Finding::new(
        name,
        current,
        recommended,
        why,
        Status::Warn,
        format!(
            "sluice tune --apply (writes {} to {} smp_affinity_list file(s)); stop irqbalance or set IRQBALANCE_BANNED_CPULIST={}",
            sys::format_cpu_list(&irq_cpus),
            changes.len(),
            sys::format_cpu_list(&ctx.shard_cpus)
        ),
    )
    .with_changes(changes)
}

/// NIC queue IRQs versus shard cores.
pub fn nic(ctx: &Context) -> Finding {
    let irqs: Vec<u32> = nics(&ctx.roots)
        .iter()
        .flat_map(|nic| nic_irqs(&ctx.roots, nic))
        .collect();
    judge(ctx, "irq.nic_affinity", NIC_WHY, "NIC", &irqs, false)
}

/// NVMe queue IRQs versus shard cores.
pub fn nvme(ctx: &Context) -> Finding {
    let irqs = nvme_irqs(&ctx.roots);
    judge(ctx, "irq.nvme_affinity", NVME_WHY, "NVMe", &irqs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tune::apply;
    use crate::tune::testing::FakeHost;

    const INTERRUPTS: &str = "           CPU0       CPU1
 37:          0          0 PCI-MSIX-0000:00:03.0   0-edge      virtio2-config
 38:          0       2663 PCI-MSIX-0000:00:03.0   1-edge      virtio2-input.0
 39:       1827          0 PCI-MSIX-0000:00:03.0   2-edge      virtio2-output.0
 50:          0          0 PCI-MSIX-0000:00:04.0   0-edge      nvme0q0
 51:          0          0 PCI-MSIX-0000:00:04.0   1-edge      nvme0q1
NMI:          0          0   Non-maskable interrupts
";

    fn fake_nic(host: &FakeHost) {
        std::fs::create_dir_all(host.roots.sys("devices/virtio2")).unwrap();
        std::fs::create_dir_all(host.roots.sys("class/net/eth0")).unwrap();
        std::fs::create_dir_all(host.roots.sys("class/net/lo")).unwrap();
        std::os::unix::fs::symlink(
            host.roots.sys("devices/virtio2"),
            host.roots.sys("class/net/eth0/device"),
        )
        .unwrap();
    }

    #[test]
    fn nic_irqs_move_to_irq_cores() {
        let host = FakeHost::new();
        fake_nic(&host);
        host.proc("interrupts", INTERRUPTS);
        host.proc("irq/38/smp_affinity_list", "1\n");
        host.proc("irq/39/smp_affinity_list", "0\n");
        let ctx = host.context();
        assert_eq!(nics(&ctx.roots).len(), 1);
        let f = nic(&ctx);
        assert_eq!(f.status, Status::Warn, "{f:?}");
        assert_eq!(f.current, "38->1 39->0");
        assert_eq!(f.changes.len(), 1);
        apply(&[f], false, &mut Vec::new()).unwrap();
        assert_eq!(host.read_proc("irq/38/smp_affinity_list"), "0");
        assert_eq!(nic(&ctx).status, Status::Ok);
    }

    #[test]
    fn no_irq_cores_means_ok_and_missing_means_na() {
        let host = FakeHost::new();
        assert_eq!(nic(&host.context()).status, Status::NotApplicable);
        assert_eq!(nvme(&host.context()).status, Status::NotApplicable);
        fake_nic(&host);
        host.proc("interrupts", INTERRUPTS);
        host.proc("irq/38/smp_affinity_list", "1\n");
        let mut ctx = host.context();
        assert_eq!(nic(&ctx).status, Status::Warn);
        ctx.shard_cpus = vec![0, 1, 2, 3];
        assert_eq!(nic(&ctx).status, Status::Ok);
    }

    #[test]
    fn nvme_queues_checked() {
        let host = FakeHost::new();
        host.proc("interrupts", INTERRUPTS);
        host.proc("irq/50/smp_affinity_list", "0-3\n");
        host.proc("irq/51/smp_affinity_list", "0-3\n");
        let f = nvme(&host.context());
        assert_eq!(f.status, Status::Warn);
        assert_eq!(f.changes.len(), 2);
        // Unreadable affinity files (container) are reported, not fatal.
        let host = FakeHost::new();
        host.proc("interrupts", INTERRUPTS);
        let f = nvme(&host.context());
        assert_eq!(f.status, Status::NotApplicable);
        assert!(f.current.contains("unreadable"), "{}", f.current);
    }
}
