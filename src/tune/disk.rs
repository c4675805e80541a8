//! Disk tuners for the data directory: its block device's queue settings, write cache, TRIM,
//! filesystem (with a real O_DIRECT probe) and free space.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::sys;
use super::{Change, Context, Finding, Status};

/// Below this much free space the broker cannot roll a segment safely.
pub const FREE_SPACE_BYTES_MIN: u64 = 1 << 30;
/// Free space share (percent) below which the check FAILs.
pub const FREE_SPACE_PERCENT_FAIL: u64 = 5;
/// Free space share (percent) below which the check WARNs.
pub const FREE_SPACE_PERCENT_WARN: u64 = 15;
/// Name of the probe file opened with O_DIRECT in the data directory (removed right away).
pub const O_DIRECT_PROBE_FILE_NAME: &str = ".sluice-odirect-probe";
/// Alignment and size of the O_DIRECT probe write (the logical block size of every device).
const PROBE_BLOCK_BYTES: usize = 4096;

const SCHEDULER_WHY: &str = "an I/O scheduler reorders and delays requests on NVMe that has its own deep queues; none sends them straight to the device";
const NOMERGES_WHY: &str = "merge attempts cost CPU on every request and can hold a small write back to merge it; the log already writes large chunks";
const WRITE_CACHE_WHY: &str = "with a volatile (write back) cache every fdatasync issues a cache flush, the floor of produce latency with acks=all";
const FSTRIM_WHY: &str = "without periodic TRIM the SSD's garbage collection runs under writes and causes latency spikes as the disk fills";
const FS_WHY: &str = "the log writes with O_DIRECT; XFS and ext4 support it with predictable allocation, others (tmpfs, overlay, NFS) refuse it or buffer behind it";
const FREE_WHY: &str =
    "a full disk stops every produce; filesystems also slow down allocation when nearly full";

/// The block device holding the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    /// Kernel name (`nvme0n1`, `vda`) of the whole disk.
    pub name: String,
    /// Its `queue/` directory under the sysfs root.
    pub queue: PathBuf,
}

/// The data directory, or its nearest existing ancestor when it does not exist yet.
pub fn existing_ancestor(dir: &Path) -> PathBuf {
    let mut current = dir.to_path_buf();
    loop {
        if current.exists() {
            return current;
        }
        if !current.pop() || current.as_os_str().is_empty() {
            return PathBuf::from(".");
        }
    }
}

/// Finds the whole-disk block device behind `dir` through `dev/block/MAJ:MIN` in sysfs.
pub fn block_device(ctx: &Context) -> Result<BlockDevice, String> {
    let dir = existing_ancestor(&ctx.data_dir);
    let dev = std::fs::metadata(&dir)
        .map_err(|e| format!("cannot stat {}: {e}", dir.display()))?
        .dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    if major == 0 {
        return Err(format!(
            "{} is on a filesystem without a block device (overlay, tmpfs, btrfs subvolume?)",
            dir.display()
        ));
    }
    let link = ctx.roots.sys(&format!("dev/block/{major}:{minor}"));
    let mut resolved = std::fs::canonicalize(&link)
        .map_err(|_| format!("{} is missing (container?)", link.display()))?;
    if resolved.join("partition").exists() {
        resolved.pop();
    }
    let name = resolved
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(BlockDevice {
        name,
        queue: resolved.join("queue"),
    })
}

/// The data disk's I/O scheduler should be `none`.
pub fn scheduler(ctx: &Context) -> Finding {
    const NAME: &str = "disk.scheduler";
    let device = match block_device(ctx) {
        Ok(device) => device,
        Err(reason) => return Finding::not_applicable(NAME, reason, "none", SCHEDULER_WHY),
    };
    let path = device.queue.join("scheduler");
    let text = match sys::read(&path) {
        Ok(text) => text,
        Err(e) => return Finding::not_applicable(NAME, e.to_string(), "none", SCHEDULER_WHY),
    };
    let current = sys::selected(&text).unwrap_or(&text).to_string();
    if current == "none" {
        return Finding::new(
            NAME,
            format!("{}: none", device.name),
            "none",
            SCHEDULER_WHY,
            Status::Ok,
            "",
        );
    }
    let offered = text
        .split_whitespace()
        .any(|s| s.trim_matches(['[', ']']) == "none");
    let finding = Finding::new(
        NAME,
        format!("{}: {current}", device.name),
        "none",
        SCHEDULER_WHY,
        Status::Warn,
        if offered {
            "sluice tune --apply, persisted by the udev rule of sluice tune --persist".to_string()
        } else {
            format!(
                "the kernel does not offer none for {} ({text})",
                device.name
            )
        },
    );
    if offered {
        finding.with_changes(vec![Change {
            path,
            value: "none".into(),
        }])
    } else {
        finding
    }
}

/// The data disk's `nomerges` should be 2 (no merging at all).
pub fn nomerges(ctx: &Context) -> Finding {
    const NAME: &str = "disk.nomerges";
    let device = match block_device(ctx) {
        Ok(device) => device,
        Err(reason) => return Finding::not_applicable(NAME, reason, "2", NOMERGES_WHY),
    };
    let path = device.queue.join("nomerges");
    match sys::read(&path) {
        Err(e) => Finding::not_applicable(NAME, e.to_string(), "2", NOMERGES_WHY),
        Ok(value) if value == "2" => Finding::new(
            NAME,
            format!("{}: 2", device.name),
            "2",
            NOMERGES_WHY,
            Status::Ok,
            "",
        ),
        Ok(value) => Finding::new(
            NAME,
            format!("{}: {value}", device.name),
            "2",
            NOMERGES_WHY,
            Status::Warn,
            "sluice tune --apply, persisted by the udev rule of sluice tune --persist",
        )
        .with_changes(vec![Change {
            path,
            value: "2".into(),
        }]),
    }
}

/// Reports the device write cache; never changed automatically, since `write through` on a
/// drive without power-loss protection would lose acknowledged writes on power failure.
pub fn write_cache(ctx: &Context) -> Finding {
    const NAME: &str = "disk.write_cache";
    const RECOMMENDED: &str = "write through (drive with power-loss protection)";
    let device = match block_device(ctx) {
        Ok(device) => device,
        Err(reason) => return Finding::not_applicable(NAME, reason, RECOMMENDED, WRITE_CACHE_WHY),
    };
    match sys::read(&device.queue.join("write_cache")) {
        Err(e) => Finding::not_applicable(NAME, e.to_string(), RECOMMENDED, WRITE_CACHE_WHY),
        Ok(value) if value == "write through" => Finding::new(
            NAME,
            format!("{}: {value}", device.name),
            RECOMMENDED,
            WRITE_CACHE_WHY,
            Status::Ok,
            "",
        ),
        Ok(value) => Finding::new(
            NAME,
            format!("{}: {value}", device.name),
            RECOMMENDED,
            WRITE_CACHE_WHY,
            Status::Warn,
            format!(
                "fdatasync pays a cache flush; use an enterprise drive with power-loss protection (it reports write through). Only if it has PLP: echo 'write through' > /sys/block/{}/queue/write_cache. Never on a consumer drive",
                device.name
            ),
        ),
    }
}

const BLOCK_WHY: &str = "the log assumes a physical block is written atomically and aligns every write to the largest of the logical, physical and filesystem block, so a torn write never reaches into acknowledged bytes; a physical block above 64 KiB cannot be honoured";

/// Reports the block sizes the log's write alignment comes from (read only).
pub fn block_size(ctx: &Context) -> Finding {
    const NAME: &str = "disk.block_size";
    const RECOMMENDED: &str = "physical block <= 64 KiB";
    let device = match block_device(ctx) {
        Ok(device) => device,
        Err(reason) => return Finding::not_applicable(NAME, reason, RECOMMENDED, BLOCK_WHY),
    };
    let read = |name: &str| {
        sys::read(&device.queue.join(name))
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    match (read("logical_block_size"), read("physical_block_size")) {
        (Some(logical), Some(physical)) => Finding::new(
            NAME,
            format!(
                "{}: logical {logical} B, physical {physical} B",
                device.name
            ),
            RECOMMENDED,
            BLOCK_WHY,
            if physical <= 64 * 1024 {
                Status::Ok
            } else {
                Status::Warn
            },
            "",
        ),
        _ => Finding::not_applicable(
            NAME,
            format!("{}: block sizes not in sysfs", device.name),
            RECOMMENDED,
            BLOCK_WHY,
        ),
    }
}

/// Where systemd may keep the fstrim.timer unit, relative to the root beside the etc root.
const FSTRIM_UNIT_DIRS: [&str; 2] = ["lib/systemd/system", "usr/lib/systemd/system"];
/// The symlink `systemctl enable fstrim.timer` creates, relative to the etc root.
pub const FSTRIM_WANTS_LINK: &str = "systemd/system/timers.target.wants/fstrim.timer";

/// The unit file of fstrim.timer if this host has one.
pub fn fstrim_unit(ctx: &Context) -> Option<PathBuf> {
    let etc = ctx.roots.etc("systemd/system/fstrim.timer");
    if etc.exists() {
        return Some(etc);
    }
    FSTRIM_UNIT_DIRS
        .iter()
        .map(|dir| ctx.roots.root(&format!("{dir}/fstrim.timer")))
        .find(|path| path.exists())
}

/// systemd's `fstrim.timer` should be enabled.
pub fn fstrim_timer(ctx: &Context) -> Finding {
    const NAME: &str = "disk.fstrim_timer";
    if ctx.roots.etc(FSTRIM_WANTS_LINK).exists() {
        return Finding::new(NAME, "enabled", "enabled", FSTRIM_WHY, Status::Ok, "");
    }
    match fstrim_unit(ctx) {
        Some(_) => Finding::new(
            NAME,
            "installed, not enabled",
            "enabled",
            FSTRIM_WHY,
            Status::Warn,
            "systemctl enable --now fstrim.timer (sluice tune --persist enables it)",
        ),
        None => Finding::new(
            NAME,
            "no fstrim.timer unit",
            "enabled",
            FSTRIM_WHY,
            Status::Warn,
            "install util-linux's fstrim.timer, or run fstrim weekly from cron; avoid the discard mount option (inline TRIM stalls writes)",
        ),
    }
}

/// The filesystem type of `dir` from statfs, by name.
pub fn filesystem_type(dir: &Path) -> Result<&'static str, String> {
    let c_path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| format!("{} contains a NUL byte", dir.display()))?;
    // SAFETY: statfs is plain data; zeroed is a valid value to be overwritten.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is NUL-terminated and `buf` is a valid, writable statfs.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut buf) } != 0 {
        return Err(format!(
            "statfs {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        ));
    }
    #[allow(clippy::unnecessary_cast)]
    let magic = buf.f_type as i64;
    Ok(match magic {
        0x5846_5342 => "xfs",
        0xEF53 => "ext4",
        0x9123_683E => "btrfs",
        0x2FC1_2FC1 => "zfs",
        0x0102_1994 => "tmpfs",
        0x794C_7630 => "overlay",
        0x6969 => "nfs",
        0x6573_5546 => "fuse",
        _ => "other",
    })
}

/// The outcome of opening and writing a file with O_DIRECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ODirect {
    /// O_DIRECT open and an aligned write worked.
    Supported,
    /// The filesystem refused O_DIRECT (EINVAL).
    Unsupported(String),
    /// The probe could not run (directory missing, read-only, permissions).
    Unknown(String),
}

/// Opens a probe file in `dir` with O_DIRECT, writes one aligned block, removes it.
pub fn probe_o_direct(dir: &Path) -> ODirect {
    let path = dir.join(O_DIRECT_PROBE_FILE_NAME);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path);
    let outcome = match file {
        Ok(mut file) => match AlignedBlock::new() {
            Some(block) => match file.write_all(block.as_slice()) {
                Ok(()) => ODirect::Supported,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    ODirect::Unsupported(format!("aligned O_DIRECT write failed: {e}"))
                }
                Err(e) => ODirect::Unknown(format!("probe write failed: {e}")),
            },
            None => ODirect::Unknown("cannot allocate an aligned buffer".into()),
        },
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            ODirect::Unsupported(format!("open with O_DIRECT failed: {e}"))
        }
        Err(e) => ODirect::Unknown(format!("cannot create {}: {e}", path.display())),
    };
    let _ = std::fs::remove_file(&path);
    outcome
}

/// One zeroed block aligned for O_DIRECT.
struct AlignedBlock {
    ptr: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

impl AlignedBlock {
    fn new() -> Option<AlignedBlock> {
        let layout =
            std::alloc::Layout::from_size_align(PROBE_BLOCK_BYTES, PROBE_BLOCK_BYTES).ok()?;
        // SAFETY: the layout has a non-zero size.
        let ptr = std::ptr::NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })?;
        Some(AlignedBlock { ptr, layout })
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points to `layout.size()` initialized (zeroed) bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBlock {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// The data directory's filesystem should be XFS or ext4 and accept O_DIRECT.
pub fn filesystem(ctx: &Context) -> Finding {
    const NAME: &str = "disk.filesystem";
    const RECOMMENDED: &str = "xfs (or ext4) with O_DIRECT";
    let dir = existing_ancestor(&ctx.data_dir);
    let fs = match filesystem_type(&dir) {
        Ok(fs) => fs,
        Err(reason) => return Finding::not_applicable(NAME, reason, RECOMMENDED, FS_WHY),
    };
    let preferred = matches!(fs, "xfs" | "ext4");
    if !ctx.data_dir.exists() {
        return Finding::new(
            NAME,
            format!(
                "{fs} ({} does not exist yet; O_DIRECT not probed)",
                ctx.data_dir.display()
            ),
            RECOMMENDED,
            FS_WHY,
            Status::Warn,
            "create the data directory (sluice tune --apply does) and check again",
        );
    }
    let probe = if ctx.probe_o_direct {
        probe_o_direct(&ctx.data_dir)
    } else {
        ODirect::Unknown("probe disabled".into())
    };
    match probe {
        ODirect::Unsupported(reason) => Finding::new(
            NAME,
            format!("{fs}, O_DIRECT unsupported ({reason})"),
            RECOMMENDED,
            FS_WHY,
            Status::Fail,
            "put the data directory on an XFS or ext4 filesystem on a local disk (mkfs.xfs /dev/nvme0n1; mount -o noatime)",
        ),
        ODirect::Supported if preferred => Finding::new(
            NAME,
            format!("{fs}, O_DIRECT ok"),
            RECOMMENDED,
            FS_WHY,
            Status::Ok,
            "",
        ),
        ODirect::Supported => Finding::new(
            NAME,
            format!("{fs}, O_DIRECT ok"),
            RECOMMENDED,
            FS_WHY,
            Status::Warn,
            "prefer XFS (or ext4): copy-on-write and network filesystems add latency to every write",
        ),
        ODirect::Unknown(reason) => Finding::new(
            NAME,
            format!("{fs}, O_DIRECT not probed: {reason}"),
            RECOMMENDED,
            FS_WHY,
            if preferred { Status::Ok } else { Status::Warn },
            if preferred { "" } else { "prefer XFS (or ext4) on a local disk" },
        ),
    }
}

/// Free and total bytes of the filesystem holding `dir` (available to unprivileged users).
pub fn space_bytes(dir: &Path) -> Result<(u64, u64), String> {
    let c_path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| format!("{} contains a NUL byte", dir.display()))?;
    // SAFETY: statvfs is plain data; zeroed is a valid value to be overwritten.
    let mut buf: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is NUL-terminated and `buf` is a valid, writable statvfs.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut buf) } != 0 {
        return Err(format!(
            "statvfs {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        ));
    }
    let fragment = buf.f_frsize as u64;
    Ok((
        buf.f_bavail as u64 * fragment,
        buf.f_blocks as u64 * fragment,
    ))
}

/// Judges free space: FAIL below 1 GiB or 5 %, WARN below 15 %.
pub fn judge_free_space(free_bytes: u64, total_bytes: u64) -> Status {
    let percent = free_bytes.saturating_mul(100) / total_bytes.max(1);
    if free_bytes < FREE_SPACE_BYTES_MIN || percent < FREE_SPACE_PERCENT_FAIL {
        Status::Fail
    } else if percent < FREE_SPACE_PERCENT_WARN {
        Status::Warn
    } else {
        Status::Ok
    }
}

/// The data directory's filesystem should have room to spare.
pub fn free_space(ctx: &Context) -> Finding {
    const NAME: &str = "disk.free_space";
    let recommended = format!(
        ">= {FREE_SPACE_PERCENT_WARN}% and >= {} free",
        sys::human_bytes(FREE_SPACE_BYTES_MIN)
    );
    let dir = existing_ancestor(&ctx.data_dir);
    let (free_bytes, total_bytes) = match space_bytes(&dir) {
        Ok(space) => space,
        Err(reason) => return Finding::not_applicable(NAME, reason, recommended, FREE_WHY),
    };
    let percent = free_bytes.saturating_mul(100) / total_bytes.max(1);
    let status = judge_free_space(free_bytes, total_bytes);
    let fix = match status {
        Status::Ok => String::new(),
        _ => format!(
            "free space on {} (delete {}/ballast for immediate room, then lower retention or add disk)",
            dir.display(),
            ctx.data_dir.display()
        ),
    };
    Finding::new(
        NAME,
        format!(
            "{} free of {} ({percent}%)",
            sys::human_bytes(free_bytes),
            sys::human_bytes(total_bytes)
        ),
        recommended,
        FREE_WHY,
        status,
        fix,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tune::apply;
    use crate::tune::testing::{make_read_only, FakeHost};

    /// Creates `dev/block/MAJ:MIN` for the fake host's data directory's real device.
    fn fake_disk(host: &FakeHost, scheduler: &str, nomerges: &str, cache: &str) -> PathBuf {
        let dev = std::fs::metadata(host.data_dir()).unwrap().dev();
        let (major, minor) = (
            ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff),
            (dev & 0xff) | ((dev >> 12) & !0xff),
        );
        let disk = host.roots.sys("devices/pci0000:00/nvme/nvme0n1");
        host.sys("devices/pci0000:00/nvme/nvme0n1/queue/scheduler", scheduler);
        host.sys("devices/pci0000:00/nvme/nvme0n1/queue/nomerges", nomerges);
        host.sys("devices/pci0000:00/nvme/nvme0n1/queue/write_cache", cache);
        host.sys("devices/pci0000:00/nvme/nvme0n1/nvme0n1p1/partition", "1");
        std::fs::create_dir_all(host.roots.sys("dev/block")).unwrap();
        std::os::unix::fs::symlink(
            disk.join("nvme0n1p1"),
            host.roots.sys(&format!("dev/block/{major}:{minor}")),
        )
        .unwrap();
        disk
    }

    #[test]
    fn scheduler_and_nomerges_apply_on_the_whole_disk() {
        let host = FakeHost::new();
        if std::fs::metadata(host.data_dir()).unwrap().dev() >> 8 == 0 {
            return; // tempdir on tmpfs/overlay: no block device to fake
        }
        let disk = fake_disk(&host, "[mq-deadline] kyber none\n", "0\n", "write back\n");
        let ctx = host.context();
        assert_eq!(block_device(&ctx).unwrap().name, "nvme0n1");
        let findings = vec![scheduler(&ctx), nomerges(&ctx), write_cache(&ctx)];
        assert_eq!(findings[0].status, Status::Warn);
        assert_eq!(findings[0].current, "nvme0n1: mq-deadline");
        assert_eq!(findings[1].status, Status::Warn);
        assert_eq!(findings[2].status, Status::Warn);
        assert!(
            findings[2].changes.is_empty(),
            "write cache is never changed automatically"
        );
        apply(&findings, false, &mut Vec::new()).unwrap();
        assert_eq!(
            std::fs::read_to_string(disk.join("queue/scheduler")).unwrap(),
            "none"
        );
        assert_eq!(
            std::fs::read_to_string(disk.join("queue/nomerges")).unwrap(),
            "2"
        );
        // The fake file now reads "none" (the kernel would print "[none] mq-deadline kyber").
        assert_eq!(scheduler(&ctx).status, Status::Ok);
        assert_eq!(nomerges(&ctx).status, Status::Ok);
        make_read_only(&disk.join("queue/nomerges"));
        let f = nomerges(&ctx);
        assert_eq!(apply(&[f], false, &mut Vec::new()).unwrap(), 1);
    }

    #[test]
    fn missing_device_is_not_applicable() {
        let host = FakeHost::new();
        let ctx = host.context();
        for f in [scheduler(&ctx), nomerges(&ctx), write_cache(&ctx)] {
            assert_eq!(f.status, Status::NotApplicable, "{f:?}");
        }
    }

    #[test]
    fn fstrim_timer_states() {
        let host = FakeHost::new();
        let ctx = host.context();
        assert_eq!(fstrim_timer(&ctx).current, "no fstrim.timer unit");
        crate::tune::testing::write(
            &ctx.roots.root("lib/systemd/system/fstrim.timer"),
            "[Timer]\n",
        );
        assert_eq!(fstrim_timer(&ctx).current, "installed, not enabled");
        crate::tune::testing::write(&ctx.roots.etc(FSTRIM_WANTS_LINK), "");
        assert_eq!(fstrim_timer(&ctx).status, Status::Ok);
    }

    #[test]
    fn filesystem_probe_and_free_space() {
        let host = FakeHost::new();
        let mut ctx = host.context();
        ctx.probe_o_direct = true;
        let f = filesystem(&ctx);
        assert_ne!(f.status, Status::NotApplicable, "{f:?}");
        assert!(!ctx.data_dir.join(O_DIRECT_PROBE_FILE_NAME).exists());
        ctx.data_dir = host.dir.path().join("missing/data");
        let f = filesystem(&ctx);
        assert_eq!(f.status, Status::Warn);
        assert!(f.current.contains("does not exist"), "{}", f.current);
        let f = free_space(&ctx);
        assert!(f.current.contains("free of"), "{}", f.current);
        assert_eq!(judge_free_space(100 << 30, 200 << 30), Status::Ok);
        assert_eq!(judge_free_space(20 << 30, 200 << 30), Status::Warn);
        assert_eq!(judge_free_space(5 << 30, 200 << 30), Status::Fail);
        assert_eq!(judge_free_space(500 << 20, 1 << 30), Status::Fail);
    }

    #[test]
    fn o_direct_on_tmpfs_fails_if_available() {
        let shm = Path::new("/dev/shm");
        if filesystem_type(shm) != Ok("tmpfs") {
            return;
        }
        let dir = tempfile::tempdir_in(shm).unwrap();
        // Linux >= 6.6 supports O_DIRECT on tmpfs; older kernels refuse it.
        assert!(matches!(
            probe_o_direct(dir.path()),
            ODirect::Supported | ODirect::Unsupported(_)
        ));
    }
}
