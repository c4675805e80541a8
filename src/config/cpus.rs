//! Which CPUs run shards: `--cores N` (the first N available) or `--cpuset LIST`, whichever
//! comes from the higher source, checked against this process's affinity mask.

use super::resolve::{invalid, parse_or, Raw};
use super::settings::{CORES, CPUSET};
use super::values::parse_count;
use super::{ConfigError, Origin};
use crate::util::units::{format_cpuset, parse_cpuset, CPU_ID_MAX};

/// Chooses shard CPUs from `--cores` or `--cpuset`, whichever comes from the higher source.
pub(super) fn resolve_cores(
    cores: Option<Raw>,
    cpuset: Option<Raw>,
    cpus_available: &[usize],
) -> Result<Vec<usize>, ConfigError> {
    let mut available = cpus_available.to_vec();
    available.sort_unstable();
    available.dedup();
    let (cores, cpuset) = match (cores, cpuset) {
        (Some(c), Some(s)) if c.origin.rank() == s.origin.rank() => {
            return Err(ConfigError::Conflict {
                first: CORES.flag,
                second: CPUSET.flag,
                origin: c.origin,
            });
        }
        (Some(c), Some(s)) if c.origin.rank() > s.origin.rank() => (Some(c), None),
        (Some(_), Some(s)) => (None, Some(s)),
        other => other,
    };
    if let Some(raw) = cpuset {
        return parse_or(
            &CPUSET,
            Some(raw),
            |s| cpuset_within(s, &available),
            Vec::new(),
        );
    }
    let count = parse_or(
        &CORES,
        cores,
        |s| cores_within(s, &available),
        available.len(),
    )?;
    if count == 0 {
        // Only reachable when the affinity mask itself is empty, which the OS does not allow.
        let raw = Raw {
            text: String::new(),
            origin: Origin::Flag,
        };
        return Err(invalid(
            &CORES,
            raw,
            "no CPUs are available to this process".into(),
        ));
    }
    Ok(available[..count].to_vec())
}

fn cores_within(text: &str, available: &[usize]) -> Result<usize, String> {
    let count = parse_count(text)?;
    if count > available.len() {
        return Err(format!(
            "only {} CPUs are available to this process ({})",
            available.len(),
            format_cpuset(available)
        ));
    }
    Ok(count)
}

fn cpuset_within(text: &str, available: &[usize]) -> Result<Vec<usize>, String> {
    let cpus = parse_cpuset(text)?;
    if let Some(cpu) = cpus
        .iter()
        .find(|cpu| available.binary_search(cpu).is_err())
    {
        return Err(format!(
            "CPU {cpu} is not available to this process (available: {})",
            format_cpuset(available)
        ));
    }
    Ok(cpus)
}

/// The CPUs this process may run on (its `sched_getaffinity` mask), sorted.
pub fn cpus_available() -> Result<Vec<usize>, ConfigError> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: `set` is a valid, writable cpu_set_t of `size` bytes; pid 0 is this thread.
    let rc = unsafe { libc::sched_getaffinity(0, size, &mut set) };
    if rc != 0 {
        return Err(ConfigError::Affinity(std::io::Error::last_os_error()));
    }
    let count = CPU_ID_MAX + 1;
    // SAFETY: every id is below CPU_SETSIZE (1024), the capacity of `set`.
    let cpus: Vec<usize> = (0..count)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect();
    Ok(cpus)
}
