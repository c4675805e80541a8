//! The persisted Raft hard state of a single-voter group: its term.

use std::fs;
use std::io::Write;
use std::path::Path;

use super::ReplicateError;

/// The term file in a partition's directory.
const STATE_FILE: &str = "leader-epoch";

/// Reads the group's last term from `dir`, starts a new one above both it and `floor` (the
/// highest term already stamped in the log: a directory written before this file existed
/// has none), persists it durably (file and directory) and returns it. A restarted single
/// voter elects itself in a new term. Blocking; run it off the shard thread.
pub fn bump_term(dir: &Path, floor: i32) -> Result<i32, ReplicateError> {
    let path = dir.join(STATE_FILE);
    let state_err = |source| ReplicateError::State {
        path: path.clone(),
        source,
    };
    fs::create_dir_all(dir).map_err(state_err)?;
    let previous = match fs::read_to_string(&path) {
        Ok(text) => text.trim().parse::<i32>().map_err(|_| {
            state_err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not a term: {text:?}"),
            ))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(state_err(e)),
    };
    let term = previous.max(floor).saturating_add(1);
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let mut file = fs::File::create(&tmp).map_err(state_err)?;
    file.write_all(term.to_string().as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(state_err)?;
    fs::rename(&tmp, &path).map_err(state_err)?;
    // The rename is durable only once the directory is.
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(state_err)?;
    Ok(term)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_start_is_a_new_term_above_the_log() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(super::bump_term(dir.path(), 0).unwrap(), 1);
        assert_eq!(super::bump_term(dir.path(), 0).unwrap(), 2);
        // A log already stamped with term 7 (written before the file existed) wins.
        assert_eq!(super::bump_term(dir.path(), 7).unwrap(), 8);
        assert_eq!(super::bump_term(dir.path(), 0).unwrap(), 9);
    }
}
