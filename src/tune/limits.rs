//! Kernel limits: AIO and io_uring, the listen backlog and file descriptors.

use super::memory::sysctl_bound;
use super::sys;
use super::{Change, Context, Finding, Status};

/// Recommended `fs.aio-max-nr`: room for every shard's in-flight DMA requests when a
/// storage engine falls back to Linux AIO.
pub const AIO_MAX_NR_MIN: u64 = 1_048_576;
/// Recommended `net.core.somaxconn`: a burst of client reconnects must not overflow the
/// accept queue (dropped SYNs retry after a second).
pub const SOMAXCONN_MIN: u64 = 4096;
/// Recommended `fs.file-max`: system-wide descriptors for connections, segments and indexes.
pub const FILE_MAX_MIN: u64 = 1_048_576;
/// Recommended RLIMIT_NOFILE for the broker process.
pub const NOFILE_RECOMMENDED: u64 = 1_048_576;

const AIO_WHY: &str = "each in-flight asynchronous I/O takes a slot of fs.aio-max-nr; running out makes submissions fail or block";
const IO_URING_WHY: &str = "shards do all disk and network I/O through io_uring; kernel.io_uring_disabled=2 stops the broker, 1 limits it to one group";
const SOMAXCONN_WHY: &str = "a small accept backlog drops SYNs during reconnect storms; clients then wait a full retransmit timeout (1s)";
const FILE_MAX_WHY: &str = "every connection, segment and index holds a descriptor; the system-wide limit must exceed all brokers' needs";
const NOFILE_WHY: &str = "running out of descriptors refuses connections and segment rolls; the broker raises its soft limit to the hard limit";

/// `fs.aio-max-nr` should be at least [`AIO_MAX_NR_MIN`].
pub fn aio_max_nr(ctx: &Context) -> Finding {
    sysctl_bound(ctx, "fs.aio-max-nr", AIO_WHY, AIO_MAX_NR_MIN, true, None)
}

/// `kernel.io_uring_disabled` should be 0 (absent on kernels before 6.6, which is fine).
pub fn io_uring_disabled(ctx: &Context) -> Finding {
    const NAME: &str = "kernel.io_uring_disabled";
    let path = ctx.roots.proc("sys/kernel/io_uring_disabled");
    match sys::read_u64(&path) {
        Err(sys::ReadError::Missing { .. }) => Finding::new(
            NAME,
            "absent (kernel before 6.6: io_uring always enabled)",
            "0",
            IO_URING_WHY,
            Status::Ok,
            "",
        ),
        Err(e) => Finding::not_applicable(NAME, e.to_string(), "0", IO_URING_WHY),
        Ok(0) => Finding::new(NAME, "0", "0", IO_URING_WHY, Status::Ok, ""),
        Ok(value) => Finding::new(
            NAME,
            value.to_string(),
            "0",
            IO_URING_WHY,
            if value >= 2 {
                Status::Fail
            } else {
                Status::Warn
            },
            "sysctl -w kernel.io_uring_disabled=0 (sluice tune --apply; --persist writes sysctl.d)",
        )
        .with_changes(vec![Change {
            path,
            value: "0".into(),
        }]),
    }
}

/// `net.core.somaxconn` should be at least [`SOMAXCONN_MIN`].
pub fn somaxconn(ctx: &Context) -> Finding {
    sysctl_bound(
        ctx,
        "net.core.somaxconn",
        SOMAXCONN_WHY,
        SOMAXCONN_MIN,
        true,
        None,
    )
}

/// `fs.file-max` should be at least [`FILE_MAX_MIN`]; below the broker's own need it FAILs.
pub fn file_max(ctx: &Context) -> Finding {
    sysctl_bound(
        ctx,
        "fs.file-max",
        FILE_MAX_WHY,
        FILE_MAX_MIN,
        true,
        Some(ctx.nofile_needed),
    )
}

/// The hard RLIMIT_NOFILE should be at least [`NOFILE_RECOMMENDED`]; below the broker's need
/// (connections plus files) it FAILs.
pub fn nofile(ctx: &Context) -> Finding {
    const NAME: &str = "limit.nofile";
    let (soft, hard) = ctx.limits.nofile;
    let show = |v: u64| {
        if v == u64::MAX {
            "unlimited".to_string()
        } else {
            v.to_string()
        }
    };
    let current = format!("soft {}, hard {}", show(soft), show(hard));
    let recommended = format!(">= {NOFILE_RECOMMENDED} (hard)");
    let status = if hard >= NOFILE_RECOMMENDED {
        Status::Ok
    } else if hard >= ctx.nofile_needed {
        Status::Warn
    } else {
        Status::Fail
    };
    let fix = match status {
        Status::Ok => "",
        _ => "LimitNOFILE=1048576 in the systemd unit (sluice tune --persist writes a drop-in), or nofile in /etc/security/limits.conf",
    };
    Finding::new(NAME, current, recommended, NOFILE_WHY, status, fix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tune::apply;
    use crate::tune::testing::FakeHost;

    #[test]
    fn io_uring_switch() {
        let host = FakeHost::new();
        let ctx = host.context();
        assert_eq!(
            io_uring_disabled(&ctx).status,
            Status::Ok,
            "absent on old kernels"
        );
        host.proc("sys/kernel/io_uring_disabled", "2\n");
        let f = io_uring_disabled(&ctx);
        assert_eq!(f.status, Status::Fail);
        apply(&[f], false, &mut Vec::new()).unwrap();
        assert_eq!(io_uring_disabled(&ctx).status, Status::Ok);
        host.proc("sys/kernel/io_uring_disabled", "1\n");
        assert_eq!(io_uring_disabled(&ctx).status, Status::Warn);
    }

    #[test]
    fn sysctl_minimums() {
        let host = FakeHost::new();
        let ctx = host.context();
        assert_eq!(aio_max_nr(&ctx).status, Status::NotApplicable);
        host.proc("sys/fs/aio-max-nr", "65536\n");
        host.proc("sys/net/core/somaxconn", "4096\n");
        host.proc("sys/fs/file-max", "8192\n");
        assert_eq!(aio_max_nr(&ctx).status, Status::Warn);
        assert_eq!(somaxconn(&ctx).status, Status::Ok);
        assert_eq!(
            file_max(&ctx).status,
            Status::Fail,
            "below the broker's need"
        );
        let findings = vec![aio_max_nr(&ctx), somaxconn(&ctx), file_max(&ctx)];
        apply(&findings, false, &mut Vec::new()).unwrap();
        assert_eq!(host.read_proc("sys/fs/aio-max-nr"), "1048576");
        assert_eq!(
            host.read_proc("sys/net/core/somaxconn"),
            "4096\n",
            "OK is not rewritten"
        );
        assert_eq!(file_max(&ctx).status, Status::Ok);
    }

    #[test]
    fn nofile_levels() {
        let host = FakeHost::new();
        let mut ctx = host.context();
        assert_eq!(nofile(&ctx).status, Status::Ok);
        ctx.limits.nofile = (1024, 65536);
        assert_eq!(nofile(&ctx).status, Status::Warn);
        ctx.limits.nofile = (1024, 4096);
        let f = nofile(&ctx);
        assert_eq!(f.status, Status::Fail);
        assert!(f.fix.contains("LimitNOFILE"));
    }
}
