//! Reading and writing kernel tunables through configurable roots.
//!
//! Every tuner goes through [`Roots`] instead of naming `/sys`, `/proc` or `/etc` directly, so
//! the unit tests run the same code against a fake tree in a temporary directory and never
//! touch the host. Files that are missing or unreadable (a VM without cpufreq, a container
//! with a read-only `/sys`) are values, not errors: the caller reports them and goes on.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// Where the kernel's pseudo-filesystems and the configuration directory are mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// Stands in for `/sys`.
    pub sysfs: PathBuf,
    /// Stands in for `/proc`.
    pub procfs: PathBuf,
    /// Stands in for `/etc`; `/lib` and `/usr/lib` are looked up beside it.
    pub etc: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            sysfs: PathBuf::from("/sys"),
            procfs: PathBuf::from("/proc"),
            etc: PathBuf::from("/etc"),
        }
    }
}

impl Roots {
    /// A path under the sysfs root, e.g. `sys("kernel/mm/transparent_hugepage/enabled")`.
    pub fn sys(&self, rel: &str) -> PathBuf {
        self.sysfs.join(rel)
    }

    /// A path under the procfs root, e.g. `proc("sys/vm/swappiness")`.
    pub fn proc(&self, rel: &str) -> PathBuf {
        self.procfs.join(rel)
    }

    /// A path under the etc root, e.g. `etc("sysctl.d/60-sluice.conf")`.
    pub fn etc(&self, rel: &str) -> PathBuf {
        self.etc.join(rel)
    }

    /// A path under the root the etc root lives in (`/` for `/etc`), for `/lib/systemd/...`.
    pub fn root(&self, rel: &str) -> PathBuf {
        self.etc.parent().unwrap_or(Path::new("/")).join(rel)
    }
}

/// Why a tunable's file could not be read; the text goes into the report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The file does not exist (feature absent, VM, container, old kernel).
    #[error("{} is missing", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("cannot read {}: {reason}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
}

/// Reads a pseudo-file and trims surrounding whitespace.
pub fn read(path: &Path) -> Result<String, ReadError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().to_string()),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(ReadError::Missing {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(ReadError::Unreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// Reads a pseudo-file holding one unsigned integer.
pub fn read_u64(path: &Path) -> Result<u64, ReadError> {
    let text = read(path)?;
    text.parse().map_err(|_| ReadError::Unreadable {
        path: path.to_path_buf(),
        reason: format!("{text:?} is not a number"),
    })
}

/// The selected entry of a sysfs choice list: `always [madvise] never` gives `madvise`.
pub fn selected(text: &str) -> Option<&str> {
    let start = text.find('[')?;
    let end = text[start..].find(']')? + start;
    Some(&text[start + 1..end])
}

/// Names of the entries of a directory (sorted), empty if it is missing or unreadable.
pub fn list_dir(path: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(path) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort_by_key(|name| natural_key(name));
    names
}

/// Sort key putting `cpu2` before `cpu10`.
fn natural_key(name: &str) -> (String, u64, String) {
    let digits_at = name
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(name.len());
    let (prefix, rest) = name.split_at(digits_at);
    let digits_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let number = rest[..digits_end].parse().unwrap_or(0);
    (prefix.to_string(), number, rest[digits_end..].to_string())
}

/// Parses a kernel cpu list (`0-3,8`); an empty string is the empty set.
pub fn parse_cpu_list(text: &str) -> Option<Vec<usize>> {
    if text.trim().is_empty() {
        return Some(Vec::new());
    }
    crate::util::units::parse_cpuset(text).ok()
}

/// Formats CPUs as a kernel cpu list (`0-3,8`).
pub fn format_cpu_list(cpus: &[usize]) -> String {
    if cpus.is_empty() {
        return String::new();
    }
    crate::util::units::format_cpuset(cpus)
}

/// Parses a kernel CPU bitmask (`ff`, `00000000,00000003`) into CPU ids.
pub fn parse_cpu_mask(text: &str) -> Option<Vec<usize>> {
    let hex: String = text.trim().chars().filter(|c| *c != ',').collect();
    let mut cpus = Vec::new();
    for (nibble_index, c) in hex.chars().rev().enumerate() {
        let nibble = c.to_digit(16)?;
        for bit in 0..4 {
            if nibble & (1 << bit) != 0 {
                cpus.push(nibble_index * 4 + bit);
            }
        }
    }
    cpus.sort_unstable();
    Some(cpus)
}

/// Formats CPU ids as a kernel CPU bitmask, comma-separated in 32-bit groups as the kernel
/// prints it (a group longer than 8 hex digits is rejected on write).
pub fn format_cpu_mask(cpus: &[usize]) -> String {
    let groups = cpus.iter().max().map_or(1, |max| max / 32 + 1);
    let mut words = vec![0u32; groups];
    for &cpu in cpus {
        words[cpu / 32] |= 1 << (cpu % 32);
    }
    let mut parts: Vec<String> = Vec::with_capacity(groups);
    for (i, word) in words.iter().enumerate().rev() {
        if i == groups - 1 {
            parts.push(format!("{word:x}"));
        } else {
            parts.push(format!("{word:08x}"));
        }
    }
    parts.join(",")
}

/// Bytes as a short human string (`1.0 GiB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_round_trip() {
        assert_eq!(parse_cpu_mask("3"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_mask("00000000,00000003"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_mask("1,00000001"), Some(vec![0, 32]));
        assert_eq!(parse_cpu_mask("0"), Some(vec![]));
        assert_eq!(parse_cpu_mask("xyz"), None);
        assert_eq!(format_cpu_mask(&[0, 1]), "3");
        assert_eq!(format_cpu_mask(&[0, 32]), "1,00000001");
        assert_eq!(format_cpu_mask(&[]), "0");
        let cpus = vec![1, 5, 33, 70];
        assert_eq!(parse_cpu_mask(&format_cpu_mask(&cpus)), Some(cpus));
    }

    #[test]
    fn choice_lists_and_sorting() {
        assert_eq!(selected("always [madvise] never"), Some("madvise"));
        assert_eq!(selected("[none] mq-deadline"), Some("none"));
        assert_eq!(selected("none"), None);
        let dir = tempfile::tempdir().unwrap();
        for name in ["cpu10", "cpu2", "cpufreq", "cpu0"] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        assert_eq!(
            list_dir(dir.path()),
            vec!["cpu0", "cpu2", "cpu10", "cpufreq"]
        );
        assert!(list_dir(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn reads_report_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        assert!(matches!(read(&path), Err(ReadError::Missing { .. })));
        std::fs::write(&path, "42\n").unwrap();
        assert_eq!(read_u64(&path), Ok(42));
        std::fs::write(&path, "abc\n").unwrap();
        assert!(matches!(read_u64(&path), Err(ReadError::Unreadable { .. })));
        assert_eq!(human_bytes(1 << 30), "1.0 GiB");
        assert_eq!(human_bytes(12), "12 B");
    }
}
