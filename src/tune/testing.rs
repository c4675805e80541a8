//! Fake sysfs/procfs/etc trees for the tuners' unit tests.

use std::path::{Path, PathBuf};

use super::plan::CpuPlan;
use super::sys::Roots;
use super::{Context, ProcessLimits};

/// A temporary directory with `sys/`, `proc/`, `etc/` and `data/` inside.
pub struct FakeHost {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
    /// The roots pointing into it.
    pub roots: Roots,
}

impl FakeHost {
    /// An empty fake host (every file missing, as on a minimal container).
    pub fn new() -> FakeHost {
        let dir = tempfile::tempdir().unwrap();
        let roots = Roots {
            sysfs: dir.path().join("sys"),
            procfs: dir.path().join("proc"),
            etc: dir.path().join("etc"),
        };
        for path in [&roots.sysfs, &roots.procfs, &roots.etc] {
            std::fs::create_dir_all(path).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        FakeHost { dir, roots }
    }

    /// Writes a file under sys/.
    pub fn sys(&self, rel: &str, value: &str) -> PathBuf {
        write(&self.roots.sysfs.join(rel), value)
    }

    /// Writes a file under proc/.
    pub fn proc(&self, rel: &str, value: &str) -> PathBuf {
        write(&self.roots.procfs.join(rel), value)
    }

    /// Reads a file under sys/.
    pub fn read_sys(&self, rel: &str) -> String {
        std::fs::read_to_string(self.roots.sysfs.join(rel)).unwrap()
    }

    /// Reads a file under proc/.
    pub fn read_proc(&self, rel: &str) -> String {
        std::fs::read_to_string(self.roots.procfs.join(rel)).unwrap()
    }

    /// The data directory inside the fake host.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A context on this fake host with CPUs 0-3 online, shards on 1-3 and generous limits.
    pub fn context(&self) -> Context {
        let plan = CpuPlan {
            online_cpus: vec![0, 1, 2, 3],
            numa_nodes: vec![vec![0, 1, 2, 3]],
            shard_cpus: vec![1, 2, 3],
            irq_cpus: vec![0],
            note: String::new(),
        };
        Context {
            roots: self.roots.clone(),
            data_dir: self.data_dir(),
            shard_cpus: plan.shard_cpus.clone(),
            plan,
            limits: ProcessLimits {
                memlock_bytes: (u64::MAX, u64::MAX),
                nofile: (1 << 20, 1 << 20),
            },
            memlock_needed_bytes: 64 << 20,
            nofile_needed: 16_384,
            ballast_size_bytes: 1 << 20,
            probe_o_direct: false,
        }
    }
}

/// Writes `value` to `path`, creating parents.
pub fn write(path: &Path, value: &str) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, value).unwrap();
    path.to_path_buf()
}

/// Replaces `path` with a file that reads fine but rejects writes even for root, as sysfs
/// does in a container: a symlink to `/proc/sys/kernel/osrelease` (mode 0444; procfs sysctl
/// permissions ignore CAP_DAC_OVERRIDE). Its content is the kernel release.
pub fn make_read_only(path: &Path) {
    let _ = std::fs::remove_file(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("/proc/sys/kernel/osrelease", path).unwrap();
    assert!(
        std::fs::write(path, "x").is_err(),
        "osrelease must reject writes"
    );
}
