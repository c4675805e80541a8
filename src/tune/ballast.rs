//! The ballast file: pre-allocated space in the data directory that an operator deletes to get
//! room back at once when the disk fills, instead of hunting for what to delete while every
//! produce fails.

use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use super::sys;
use super::{Context, Finding, Status};

/// Name of the ballast row in the report.
pub const NAME: &str = "disk.ballast";
/// File name of the ballast inside the data directory.
pub const FILE_NAME: &str = "ballast";

const WHY: &str = "when the disk fills, deleting the ballast frees space instantly so the broker can keep serving while retention or capacity is fixed";

/// Where the ballast lives.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// Bytes actually allocated to a file (not its apparent size).
fn allocated_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.blocks() * 512)
}

/// Reports whether the ballast exists with the wanted size.
pub fn finding(ctx: &Context) -> Finding {
    let file = path(&ctx.data_dir);
    let wanted = ctx.ballast_size_bytes;
    let recommended = if wanted == 0 {
        "none (--ballast-size 0)".to_string()
    } else {
        format!(
            "{} pre-allocated at {}",
            sys::human_bytes(wanted),
            file.display()
        )
    };
    let current = match allocated_bytes(&file) {
        Some(bytes) => format!("{} allocated", sys::human_bytes(bytes)),
        None => "absent".to_string(),
    };
    let enough = wanted == 0 || allocated_bytes(&file).is_some_and(|b| b >= wanted);
    if enough {
        return Finding::new(NAME, current, recommended, WHY, Status::Ok, "");
    }
    Finding::new(
        NAME,
        current,
        recommended,
        WHY,
        Status::Warn,
        format!(
            "sluice tune --apply --data-dir {} --ballast-size {}",
            ctx.data_dir.display(),
            wanted
        ),
    )
}

/// Why the ballast file could not be created.
#[derive(Debug, thiserror::Error)]
pub enum BallastError {
    /// The data directory could not be created.
    #[error("cannot create data directory {}: {source}", dir.display())]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The file could not be opened or allocated.
    #[error("cannot allocate {size_bytes} bytes for {}: {source}", path.display())]
    Allocate {
        /// The ballast file.
        path: PathBuf,
        /// The wanted size.
        size_bytes: u64,
        /// The operating system's reason (ENOSPC, EOPNOTSUPP).
        source: std::io::Error,
    },
}

/// Creates the data directory and the ballast (fallocate, so the blocks are really reserved
/// and not a sparse hole). Idempotent: an existing ballast of at least the size is kept.
pub fn create(data_dir: &Path, size_bytes: u64) -> Result<bool, BallastError> {
    std::fs::create_dir_all(data_dir).map_err(|source| BallastError::CreateDir {
        dir: data_dir.to_path_buf(),
        source,
    })?;
    let file_path = path(data_dir);
    if size_bytes == 0 || allocated_bytes(&file_path).is_some_and(|b| b >= size_bytes) {
        return Ok(false);
    }
    let alloc_err = |source| BallastError::Allocate {
        path: file_path.clone(),
        size_bytes,
        source,
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&file_path)
        .map_err(alloc_err)?;
    let len = libc::off_t::try_from(size_bytes)
        .map_err(|_| alloc_err(std::io::Error::from_raw_os_error(libc::EFBIG)))?;
    // SAFETY: the descriptor is open for writing; fallocate reads no memory of ours.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc != 0 {
        let error = std::io::Error::last_os_error();
        drop(file);
        let _ = std::fs::remove_file(&file_path);
        return Err(alloc_err(error));
    }
    file.sync_all().map_err(alloc_err)?;
    Ok(true)
}

/// `--apply` part for the ballast: creates it (or, with `dry_run`, prints what it would do).
pub fn apply(ctx: &Context, dry_run: bool, out: &mut dyn Write) -> std::io::Result<()> {
    let size = ctx.ballast_size_bytes;
    let file = path(&ctx.data_dir);
    if dry_run {
        if !ctx.data_dir.exists() {
            writeln!(out, "would run: mkdir -p {}", ctx.data_dir.display())?;
        }
        if size > 0 && allocated_bytes(&file).is_none_or(|b| b < size) {
            writeln!(out, "would run: fallocate -l {size} {}", file.display())?;
        }
        return Ok(());
    }
    match create(&ctx.data_dir, size) {
        Ok(true) => writeln!(
            out,
            "changed {NAME}: created {} ({}); delete it to free space in an emergency",
            file.display(),
            sys::human_bytes(size)
        ),
        Ok(false) => Ok(()),
        Err(e) => writeln!(out, "cannot change {NAME}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tune::testing::FakeHost;

    #[test]
    fn created_once_with_real_blocks() {
        let host = FakeHost::new();
        let mut ctx = host.context();
        ctx.data_dir = host.dir.path().join("new/data");
        assert_eq!(finding(&ctx).status, Status::Warn);
        let mut out = Vec::new();
        apply(&ctx, true, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("would run: fallocate -l 1048576"), "{text}");
        assert!(!ctx.data_dir.exists(), "dry run changes nothing");
        let mut out = Vec::new();
        apply(&ctx, false, &mut out).unwrap();
        assert!(String::from_utf8(out).unwrap().contains("created"));
        assert!(allocated_bytes(&path(&ctx.data_dir)).unwrap() >= 1 << 20);
        assert_eq!(finding(&ctx).status, Status::Ok);
        let mut out = Vec::new();
        apply(&ctx, false, &mut out).unwrap();
        assert!(out.is_empty(), "idempotent");
    }

    #[test]
    fn zero_size_disables_it() {
        let host = FakeHost::new();
        let mut ctx = host.context();
        ctx.ballast_size_bytes = 0;
        assert_eq!(finding(&ctx).status, Status::Ok);
        assert!(!create(&ctx.data_dir, 0).unwrap());
        assert!(!path(&ctx.data_dir).exists());
    }
}
