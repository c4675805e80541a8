//! Memory tuners: swappiness, transparent huge pages and RLIMIT_MEMLOCK.

use super::sys;
use super::{Change, Context, Finding, Status};

/// Highest `vm.swappiness` accepted: 1 keeps anonymous memory (caches, buffers) in RAM
/// while still letting the kernel swap in an emergency.
pub const SWAPPINESS_MAX: u64 = 1;

const SWAPPINESS_WHY: &str = "a swapped-out page of a shard's cache or buffers turns one request into a disk read of milliseconds";
const THP_WHY: &str = "THP=always makes khugepaged compact memory in the background and page faults stall on compaction; madvise keeps huge pages for those who ask";
const MEMLOCK_WHY: &str = "io_uring registered buffers are pinned memory counted against RLIMIT_MEMLOCK; too low and the broker shrinks them and copies every DMA write";

/// A sysctl under `/proc/sys` that should be at least (or at most) a value.
pub(crate) fn sysctl_bound(
    ctx: &Context,
    name: &str,
    why: &str,
    wanted: u64,
    at_least: bool,
    fail_below: Option<u64>,
) -> Finding {
    let rel = format!("sys/{}", name.replace('.', "/"));
    let path = ctx.roots.proc(&rel);
    let recommended = if at_least {
        format!(">= {wanted}")
    } else {
        format!("<= {wanted}")
    };
    let value = match sys::read_u64(&path) {
        Ok(value) => value,
        Err(e) => return Finding::not_applicable(name, e.to_string(), recommended, why),
    };
    let good = if at_least {
        value >= wanted
    } else {
        value <= wanted
    };
    if good {
        return Finding::new(name, value.to_string(), recommended, why, Status::Ok, "");
    }
    let status = match fail_below {
        Some(floor) if value < floor => Status::Fail,
        _ => Status::Warn,
    };
    Finding::new(
        name,
        value.to_string(),
        recommended,
        why,
        status,
        format!("sysctl -w {name}={wanted} (sluice tune --apply; --persist writes sysctl.d)"),
    )
    .with_changes(vec![Change {
        path,
        value: wanted.to_string(),
    }])
}

/// `vm.swappiness` should be at most [`SWAPPINESS_MAX`].
pub fn swappiness(ctx: &Context) -> Finding {
    sysctl_bound(
        ctx,
        "vm.swappiness",
        SWAPPINESS_WHY,
        SWAPPINESS_MAX,
        false,
        None,
    )
}

/// Transparent huge pages should be `madvise` or `never`.
pub fn transparent_hugepages(ctx: &Context) -> Finding {
    const NAME: &str = "mm.transparent_hugepage";
    let path = ctx.roots.sys("kernel/mm/transparent_hugepage/enabled");
    let text = match sys::read(&path) {
        Ok(text) => text,
        Err(e) => return Finding::not_applicable(NAME, e.to_string(), "madvise", THP_WHY),
    };
    let current = sys::selected(&text).unwrap_or(&text).to_string();
    if current == "madvise" || current == "never" {
        return Finding::new(NAME, current, "madvise", THP_WHY, Status::Ok, "");
    }
    Finding::new(
        NAME,
        current,
        "madvise",
        THP_WHY,
        Status::Warn,
        "sluice tune --apply (writes madvise); persist with transparent_hugepage=madvise on the kernel command line or sluice tune --persist (tmpfiles.d)",
    )
    .with_changes(vec![Change {
        path,
        value: "madvise".into(),
    }])
}

/// The hard RLIMIT_MEMLOCK should cover the registered buffers (the broker raises its soft
/// limit up to the hard one at start-up).
pub fn memlock(ctx: &Context) -> Finding {
    const NAME: &str = "limit.memlock";
    let (soft, hard) = ctx.limits.memlock_bytes;
    let show = |v: u64| {
        if v == u64::MAX {
            "unlimited".to_string()
        } else {
            sys::human_bytes(v)
        }
    };
    let current = format!("soft {}, hard {}", show(soft), show(hard));
    let recommended = format!(
        "unlimited (>= {} for the registered buffers)",
        sys::human_bytes(ctx.memlock_needed_bytes)
    );
    if hard >= ctx.memlock_needed_bytes {
        return Finding::new(NAME, current, recommended, MEMLOCK_WHY, Status::Ok, "");
    }
    Finding::new(
        NAME,
        current,
        recommended,
        MEMLOCK_WHY,
        Status::Warn,
        "LimitMEMLOCK=infinity in the systemd unit (tuning/sluice.service; sluice tune --persist writes a drop-in), or memlock unlimited in /etc/security/limits.conf",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tune::apply;
    use crate::tune::testing::{make_read_only, FakeHost};

    #[test]
    fn swappiness_check_apply_missing_read_only() {
        let host = FakeHost::new();
        let ctx = host.context();
        assert_eq!(swappiness(&ctx).status, Status::NotApplicable);
        host.proc("sys/vm/swappiness", "60\n");
        let f = swappiness(&ctx);
        assert_eq!((f.status, f.current.as_str()), (Status::Warn, "60"));
        apply(&[f], false, &mut Vec::new()).unwrap();
        assert_eq!(host.read_proc("sys/vm/swappiness"), "1");
        let f = swappiness(&ctx);
        assert_eq!(f.status, Status::Ok);
        assert!(f.changes.is_empty());
        make_read_only(&ctx.roots.proc("sys/vm/swappiness"));
        // Reads the kernel release: not a number, reported rather than crashing.
        assert_eq!(swappiness(&ctx).status, Status::NotApplicable);
    }

    #[test]
    fn thp_always_is_changed_to_madvise() {
        let host = FakeHost::new();
        let ctx = host.context();
        assert_eq!(transparent_hugepages(&ctx).status, Status::NotApplicable);
        host.sys(
            "kernel/mm/transparent_hugepage/enabled",
            "[always] madvise never\n",
        );
        let f = transparent_hugepages(&ctx);
        assert_eq!((f.status, f.current.as_str()), (Status::Warn, "always"));
        let mut out = Vec::new();
        apply(&[f], false, &mut out).unwrap();
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("changed mm.transparent_hugepage"));
        assert_eq!(
            host.read_sys("kernel/mm/transparent_hugepage/enabled"),
            "madvise"
        );
        assert_eq!(transparent_hugepages(&ctx).status, Status::Ok);
        make_read_only(&ctx.roots.sys("kernel/mm/transparent_hugepage/enabled"));
        let f = transparent_hugepages(&ctx);
        assert_eq!(f.status, Status::Warn);
        assert_eq!(apply(&[f], false, &mut Vec::new()).unwrap(), 1);
    }

    #[test]
    fn memlock_uses_the_hard_limit() {
        let host = FakeHost::new();
        let mut ctx = host.context();
        assert_eq!(memlock(&ctx).status, Status::Ok);
        ctx.limits.memlock_bytes = (8 << 20, 8 << 20);
        let f = memlock(&ctx);
        assert_eq!(f.status, Status::Warn);
        assert!(f.fix.contains("LimitMEMLOCK=infinity"));
    }
}
