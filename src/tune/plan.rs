//! The CPU plan: which cores run shards and which take interrupts.
//!
//! A shard that also services NIC and NVMe interrupts is preempted at random by softirq work,
//! which shows up directly in p99. With enough cores, the first core of each NUMA node (and its
//! hyperthread sibling) is kept for IRQs and everything else runs one shard each; with fewer
//! than [`IRQ_RESERVE_CPUS_MIN`] cores, giving up a core would cost more throughput than the
//! interrupts cost latency, so every core runs a shard.

use super::sys::{self, Roots};
use super::{Context, Finding, Status};

/// Name of the plan's row in the report.
pub const NAME: &str = "cpu.plan";
/// Fewest online CPUs for which a core per NUMA node is reserved for IRQs.
pub const IRQ_RESERVE_CPUS_MIN: usize = 4;

/// The proposed use of each online CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuPlan {
    /// Online CPUs, sorted.
    pub online_cpus: Vec<usize>,
    /// Online CPUs of each NUMA node (one node holding every CPU when NUMA is not exposed).
    pub numa_nodes: Vec<Vec<usize>>,
    /// CPUs that run one shard each: the `--cpuset` for `sluice start`.
    pub shard_cpus: Vec<usize>,
    /// CPUs reserved for NIC and NVMe interrupts (may be empty).
    pub irq_cpus: Vec<usize>,
    /// Why the plan is what it is.
    pub note: String,
}

/// Reads online CPUs, NUMA nodes and SMT siblings under the sysfs root and proposes a plan.
/// Falls back to the CPUs this process may run on when sysfs does not say.
pub fn plan(roots: &Roots) -> CpuPlan {
    let online = sys::read(&roots.sys("devices/system/cpu/online"))
        .ok()
        .and_then(|text| sys::parse_cpu_list(&text))
        .filter(|cpus| !cpus.is_empty())
        .or_else(|| crate::config::cpus_available().ok())
        .unwrap_or_else(|| vec![0]);
    let mut nodes: Vec<Vec<usize>> = sys::list_dir(&roots.sys("devices/system/node"))
        .iter()
        .filter(|name| {
            name.strip_prefix("node")
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter_map(|name| {
            let path = roots.sys(&format!("devices/system/node/{name}/cpulist"));
            sys::read(&path).ok().and_then(|t| sys::parse_cpu_list(&t))
        })
        .map(|cpus| cpus.into_iter().filter(|c| online.contains(c)).collect())
        .filter(|cpus: &Vec<usize>| !cpus.is_empty())
        .collect();
    if nodes.is_empty() {
        nodes.push(online.clone());
    }
    let siblings = |cpu: usize| -> Vec<usize> {
        let path = roots.sys(&format!(
            "devices/system/cpu/cpu{cpu}/topology/thread_siblings_list"
        ));
        sys::read(&path)
            .ok()
            .and_then(|t| sys::parse_cpu_list(&t))
            .unwrap_or_else(|| vec![cpu])
    };
    propose(online, nodes, &siblings)
}

/// The pure planning rule, given the topology.
pub fn propose(
    online_cpus: Vec<usize>,
    numa_nodes: Vec<Vec<usize>>,
    siblings: &dyn Fn(usize) -> Vec<usize>,
) -> CpuPlan {
    if online_cpus.len() < IRQ_RESERVE_CPUS_MIN {
        let note = format!(
            "{} CPU(s): every CPU runs a shard and takes its share of IRQs; reserving one would cost more throughput than the interrupts cost latency",
            online_cpus.len()
        );
        return CpuPlan {
            shard_cpus: online_cpus.clone(),
            irq_cpus: Vec::new(),
            online_cpus,
            numa_nodes,
            note,
        };
    }
    let mut irq_cpus = Vec::new();
    for node in &numa_nodes {
        let Some(&first) = node.first() else {
            continue;
        };
        let mut reserve: Vec<usize> = siblings(first)
            .into_iter()
            .filter(|c| node.contains(c))
            .collect();
        if !reserve.contains(&first) {
            reserve.push(first);
        }
        // Keep at least one shard per node: a node without shards wastes its memory channels.
        if node.len() <= reserve.len() {
            reserve = vec![first];
        }
        if node.len() > reserve.len() {
            irq_cpus.extend(reserve);
        }
    }
    irq_cpus.sort_unstable();
    let shard_cpus: Vec<usize> = online_cpus
        .iter()
        .copied()
        .filter(|c| !irq_cpus.contains(c))
        .collect();
    let note = format!(
        "{} CPU(s) on {} NUMA node(s): CPU {} take(s) NIC/NVMe IRQs (first core of each node and its SMT sibling), {} shard(s) on the rest",
        online_cpus.len(),
        numa_nodes.len(),
        sys::format_cpu_list(&irq_cpus),
        shard_cpus.len()
    );
    CpuPlan {
        online_cpus,
        numa_nodes,
        shard_cpus,
        irq_cpus,
        note,
    }
}

/// The plan as a report row, so `--json` consumers get the cpuset too.
pub fn finding(ctx: &Context) -> Finding {
    let plan = &ctx.plan;
    let irq = if plan.irq_cpus.is_empty() {
        "none".to_string()
    } else {
        sys::format_cpu_list(&plan.irq_cpus)
    };
    let current = format!(
        "online {}, {} NUMA node(s)",
        sys::format_cpu_list(&plan.online_cpus),
        plan.numa_nodes.len()
    );
    let recommended = format!(
        "--cpuset {} (IRQs on {irq})",
        sys::format_cpu_list(&plan.shard_cpus)
    );
    let overlap: Vec<usize> = ctx
        .shard_cpus
        .iter()
        .copied()
        .filter(|c| plan.irq_cpus.contains(c))
        .collect();
    let cpuset = sys::format_cpu_list(&plan.shard_cpus);
    let (status, fix) = if overlap.is_empty() {
        (Status::Ok, format!("sluice start --cpuset {cpuset}"))
    } else {
        (
            Status::Warn,
            format!(
                "shards requested on IRQ core(s) {}; use sluice start --cpuset {cpuset}",
                sys::format_cpu_list(&overlap)
            ),
        )
    };
    Finding::new(
        NAME,
        current,
        recommended,
        "a shard that also handles interrupts is preempted at random by softirqs, which lands in p99",
        status,
        fix,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tune::testing::FakeHost;

    fn alone(cpu: usize) -> Vec<usize> {
        vec![cpu]
    }

    #[test]
    fn two_cores_keep_both_for_shards() {
        let plan = propose(vec![0, 1], vec![vec![0, 1]], &alone);
        assert_eq!(plan.shard_cpus, vec![0, 1]);
        assert!(plan.irq_cpus.is_empty());
        assert!(
            plan.note.contains("every CPU runs a shard"),
            "{}",
            plan.note
        );
    }

    #[test]
    fn reserves_first_core_of_each_numa_node() {
        let nodes = vec![(0..8).collect(), (8..16).collect()];
        let plan = propose((0..16).collect(), nodes, &alone);
        assert_eq!(plan.irq_cpus, vec![0, 8]);
        assert_eq!(plan.shard_cpus.len(), 14);
        assert!(!plan.shard_cpus.contains(&0));
    }

    #[test]
    fn reserves_smt_sibling_with_the_irq_core() {
        let siblings = |cpu: usize| vec![cpu % 4, cpu % 4 + 4];
        let plan = propose((0..8).collect(), vec![(0..8).collect()], &siblings);
        assert_eq!(plan.irq_cpus, vec![0, 4]);
        assert_eq!(plan.shard_cpus, vec![1, 2, 3, 5, 6, 7]);
    }

    #[test]
    fn reads_topology_from_sysfs() {
        let host = FakeHost::new();
        host.sys("devices/system/cpu/online", "0-7\n");
        host.sys("devices/system/node/node0/cpulist", "0-3\n");
        host.sys("devices/system/node/node1/cpulist", "4-7\n");
        let plan = plan(&host.roots);
        assert_eq!(plan.numa_nodes.len(), 2);
        assert_eq!(plan.irq_cpus, vec![0, 4]);
        assert_eq!(plan.shard_cpus, vec![1, 2, 3, 5, 6, 7]);
        let mut ctx = host.context();
        ctx.plan = plan.clone();
        ctx.shard_cpus = plan.shard_cpus.clone();
        let f = finding(&ctx);
        assert_eq!(f.status, Status::Ok);
        assert!(
            f.recommended.contains("--cpuset 1-3,5-7"),
            "{}",
            f.recommended
        );
    }

    #[test]
    fn missing_sysfs_falls_back_to_process_cpus() {
        let host = FakeHost::new();
        let plan = plan(&host.roots);
        assert!(!plan.online_cpus.is_empty());
        assert_eq!(plan.numa_nodes.len(), 1);
    }
}
