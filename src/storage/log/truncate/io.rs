//! The file work of a truncation, run as a detached task that owns the
//! exclusive hold on the appenders (step 5 of the parent module's docs).

use std::path::{Path, PathBuf};

use crate::storage::error::StorageError;
use crate::storage::recovery::{self, LOG_START_OFFSET_FILE, RECOVERY_POINT_FILE};

use super::TruncationIo;

/// Extension of the temp files a truncation writes the offset files through,
/// off the shard thread: distinct from the `.tmp` of writers on the shard.
const TRUNCATE_TMP_EXTENSION: &str = "truncate-tmp";

impl TruncationIo {
    /// Step 5: makes the truncation durable, then releases the appenders.
    pub(super) async fn run(self) -> Result<(), StorageError> {
        let TruncationIo {
            dir,
            held,
            active,
            cut_active,
            position,
            end_offset,
            removed_segments: _,
            remove,
            recovery_point,
            log_start_offset,
        } = self;
        let blocking_dir = dir.clone();
        let metadata = glommio::executor()
            .spawn_blocking(move || {
                update_files(&blocking_dir, recovery_point, log_start_offset, &remove)
            })
            .await;
        if let Err(e) = metadata {
            return Err(active.appender.fail(e));
        }
        if cut_active {
            if let Some(file) = active.appender.file() {
                // Cutting the length (not zeroing) leaves no stale batch bytes to scan,
                // and fdatasync makes a size change durable (it is needed to read the data).
                if let Err(e) = file.truncate(position).await {
                    return Err(active.appender.fail(StorageError::glommio(
                        "truncate",
                        &active.path,
                        e,
                    )));
                }
                if let Err(e) = file.fdatasync().await {
                    return Err(active.appender.fail(StorageError::glommio(
                        "fdatasync",
                        &active.path,
                        e,
                    )));
                }
                active.appender.mark_durable(position, end_offset);
            }
        }
        tracing::debug!(dir = %dir.display(), end_offset, position, "truncation durable");
        drop(held);
        Ok(())
    }
}

/// The blocking part of a truncation's file work, on glommio's blocking pool:
/// lowers the offset files first (so no crash leaves them above the data),
/// unlinks the removed files, highest offsets first, and fsyncs the directory.
fn update_files(
    dir: &Path,
    recovery_point: Option<i64>,
    log_start_offset: Option<i64>,
    remove: &[PathBuf],
) -> Result<(), StorageError> {
    for (name, value) in [
        (RECOVERY_POINT_FILE, recovery_point),
        (LOG_START_OFFSET_FILE, log_start_offset),
    ] {
        if let Some(value) = value {
            let path = dir.join(name);
            let tmp = path.with_extension(TRUNCATE_TMP_EXTENSION);
            recovery::write_offset_file_via(&path, &tmp, value)?;
        }
    }
    let mut unlinked = false;
    for path in remove {
        match std::fs::remove_file(path) {
            Ok(()) => unlinked = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io("remove", path, e)),
        }
    }
    if !unlinked {
        return Ok(());
    }
    let d = std::fs::File::open(dir).map_err(|e| StorageError::io("open dir", dir, e))?;
    d.sync_all()
        .map_err(|e| StorageError::io("fsync dir", dir, e))
}
