//! `sluice tune`: checks (and optionally fixes) the host settings that decide tail latency.
//!
//! Each tuner group lives in its own file and turns what it reads into [`Finding`]s: the
//! tunable, its current and recommended value, why it matters, a status and the fix. A
//! finding that can be fixed by writing a sysfs/procfs file carries [`Change`]s, which
//! `--apply` performs (only for findings that are not OK, so a second run changes nothing),
//! `--dry-run` prints, and `--persist` turns into files under `/etc`. All paths go through
//! [`sys::Roots`] so tests run against a fake tree. `sluice start` runs the same checks
//! read-only ([`check_at_start`]). `sluice iotune`, which measures the data disk, is
//! [`iotune`].

pub mod ballast;
pub mod cpu;
pub mod disk;
pub mod iotune;
pub mod irq;
pub mod limits;
pub mod memory;
pub mod net;
pub mod persist;
pub mod plan;
pub mod report;
pub mod sys;

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use plan::CpuPlan;
use sys::Roots;

/// Default ballast file size: enough to buy an operator time when the disk fills up.
pub const BALLAST_SIZE_DEFAULT: &str = "1GiB";

/// Flags of `sluice tune`.
#[derive(Debug, Clone, Args)]
pub struct TuneArgs {
    /// Only check and report (the default)
    #[arg(long)]
    pub check: bool,
    /// Change what can be changed now (sysfs/procfs writes, ballast file), idempotently
    #[arg(long)]
    pub apply: bool,
    /// Print the writes --apply/--persist would make, without making them
    #[arg(long)]
    pub dry_run: bool,
    /// Write sysctl.d, udev, tmpfiles.d and systemd drop-in files under --etc-root
    #[arg(long)]
    pub persist: bool,
    /// Print the findings as JSON instead of a table
    #[arg(long)]
    pub json: bool,
    /// Data directory whose disk and filesystem are checked
    #[arg(long, value_name = "PATH", default_value = crate::config::DATA_DIR_DEFAULT)]
    pub data_dir: PathBuf,
    /// Size of the ballast file --apply creates in the data directory (0 disables it)
    #[arg(long, value_name = "SIZE", default_value = BALLAST_SIZE_DEFAULT)]
    pub ballast_size: String,
    /// CPUs that will run shards [default: the CPU plan's shard cores]
    #[arg(long, value_name = "LIST")]
    pub cpuset: Option<String>,
    /// Root of the sysfs tree (tests point it at a fake tree)
    #[arg(long, value_name = "PATH", default_value = "/sys")]
    pub sysfs_root: PathBuf,
    /// Root of the procfs tree (tests point it at a fake tree)
    #[arg(long, value_name = "PATH", default_value = "/proc")]
    pub procfs_root: PathBuf,
    /// Root of the configuration tree --persist writes into
    #[arg(long, value_name = "PATH", default_value = "/etc")]
    pub etc_root: PathBuf,
}

/// How a tunable compares with what Sluice wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// As recommended.
    #[serde(rename = "OK")]
    Ok,
    /// Costs latency or headroom, but the broker works.
    #[serde(rename = "WARN")]
    Warn,
    /// The broker will misbehave (no O_DIRECT, io_uring disabled, disk nearly full).
    #[serde(rename = "FAIL")]
    Fail,
    /// Cannot be checked here (file missing on this VM/container); the reason is in `current`.
    #[serde(rename = "N/A")]
    NotApplicable,
}

impl Status {
    /// The label printed in the table and the JSON.
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::NotApplicable => "N/A",
        }
    }
}

/// One write to a sysfs/procfs file that brings a tunable to its recommended value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The file (under the configured root).
    pub path: PathBuf,
    /// What to write.
    pub value: String,
}

/// The result of checking one tunable; serialized as one object of `sluice tune --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable name of the tunable, e.g. `vm.swappiness`.
    pub name: String,
    /// What the host has now (or why it cannot be read).
    pub current: String,
    /// What Sluice wants.
    pub recommended: String,
    /// Why it matters for latency.
    pub why: String,
    /// OK, WARN, FAIL or N/A.
    pub status: Status,
    /// What to do about it (empty when OK).
    pub fix: String,
    /// Writes `--apply` makes for this finding.
    #[serde(skip)]
    pub changes: Vec<Change>,
}

impl Finding {
    /// A finding with no changes attached.
    pub fn new(
        name: &str,
        current: impl Into<String>,
        recommended: impl Into<String>,
        why: &str,
        status: Status,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            name: name.to_string(),
            current: current.into(),
            recommended: recommended.into(),
            why: why.to_string(),
            status,
            fix: fix.into(),
            changes: Vec::new(),
        }
    }

    /// A finding that cannot be checked on this host, with the reason as its current value.
    pub fn not_applicable(
        name: &str,
        reason: impl Into<String>,
        recommended: impl Into<String>,
        why: &str,
    ) -> Finding {
        let reason = reason.into();
        Finding::new(
            name,
            format!("n/a: {reason}"),
            recommended,
            why,
            Status::NotApplicable,
            "",
        )
    }

    /// Attaches the writes that fix this finding.
    pub fn with_changes(mut self, changes: Vec<Change>) -> Finding {
        self.changes = changes;
        self
    }
}

/// Process resource limits as (soft, hard); `u64::MAX` is unlimited. Passed in so tests can
/// check limits without changing the test process's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessLimits {
    /// RLIMIT_MEMLOCK in bytes.
    pub memlock_bytes: (u64, u64),
    /// RLIMIT_NOFILE in descriptors.
    pub nofile: (u64, u64),
}

impl ProcessLimits {
    /// This process's limits; unreadable ones are reported as 0.
    pub fn current() -> ProcessLimits {
        ProcessLimits {
            memlock_bytes: rlimit(libc::RLIMIT_MEMLOCK),
            nofile: rlimit(libc::RLIMIT_NOFILE),
        }
    }
}

fn rlimit(resource: libc::__rlimit_resource_t) -> (u64, u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(resource, &mut limit) } != 0 {
        return (0, 0);
    }
    let conv = |v: libc::rlim_t| {
        if v == libc::RLIM_INFINITY {
            u64::MAX
        } else {
            v
        }
    };
    (conv(limit.rlim_cur), conv(limit.rlim_max))
}

/// Everything the checks look at, gathered once.
#[derive(Debug, Clone)]
pub struct Context {
    /// Where sysfs, procfs and etc are.
    pub roots: Roots,
    /// The broker's data directory.
    pub data_dir: PathBuf,
    /// The proposed split of cores between shards and IRQs.
    pub plan: CpuPlan,
    /// CPUs that run (or will run) shards.
    pub shard_cpus: Vec<usize>,
    /// The process limits the broker would start with.
    pub limits: ProcessLimits,
    /// RLIMIT_MEMLOCK the broker needs for its registered io_uring buffers.
    pub memlock_needed_bytes: u64,
    /// RLIMIT_NOFILE the broker needs (connections plus segments).
    pub nofile_needed: u64,
    /// Wanted size of the ballast file (0: no ballast).
    pub ballast_size_bytes: u64,
    /// Whether to open a probe file with O_DIRECT in the data directory.
    pub probe_o_direct: bool,
}

/// Registered-buffer memory the default broker locks per shard: 8 MiB on 3 rings.
const MEMLOCK_PER_SHARD_BYTES_DEFAULT: u64 = 3 * 8 * 1024 * 1024;
/// Descriptors the default broker needs: 10 000 connections plus segments and indexes.
const NOFILE_NEEDED_DEFAULT: u64 = 10_000 + 6_384;

impl Context {
    /// A context for `sluice tune` from its flags.
    pub fn from_args(args: &TuneArgs) -> Result<Context, TuneError> {
        let roots = Roots {
            sysfs: args.sysfs_root.clone(),
            procfs: args.procfs_root.clone(),
            etc: args.etc_root.clone(),
        };
        let ballast_size_bytes =
            crate::util::units::parse_size_bytes(&args.ballast_size).map_err(|reason| {
                TuneError::Invalid {
                    flag: "--ballast-size",
                    value: args.ballast_size.clone(),
                    reason,
                }
            })?;
        let plan = plan::plan(&roots);
        let shard_cpus = match &args.cpuset {
            Some(text) => {
                crate::util::units::parse_cpuset(text).map_err(|reason| TuneError::Invalid {
                    flag: "--cpuset",
                    value: text.clone(),
                    reason,
                })?
            }
            None => plan.shard_cpus.clone(),
        };
        Ok(Context {
            memlock_needed_bytes: memlock_needed(shard_cpus.len() as u64),
            roots,
            data_dir: args.data_dir.clone(),
            plan,
            shard_cpus,
            limits: ProcessLimits::current(),
            nofile_needed: NOFILE_NEEDED_DEFAULT,
            ballast_size_bytes,
            probe_o_direct: true,
        })
    }

    /// A read-only context for `sluice start`: the real host, the configured shard cores.
    pub fn for_broker(config: &crate::config::Config) -> Context {
        let roots = Roots::default();
        let plan = plan::plan(&roots);
        let shards = config.cores.len() as u64;
        let io_bytes = config.io_memory_per_shard_bytes as u64;
        Context {
            roots,
            data_dir: config.data_dir.clone(),
            plan,
            shard_cpus: config.cores.clone(),
            limits: ProcessLimits::current(),
            memlock_needed_bytes: io_bytes * 3 * shards + (1 << 20),
            nofile_needed: config.max_connections as u64 + 6_384,
            ballast_size_bytes: 0,
            probe_o_direct: true,
        }
    }

    /// CPUs that are online but run no shard: where IRQs should go.
    pub fn irq_cpus(&self) -> Vec<usize> {
        self.plan
            .online_cpus
            .iter()
            .copied()
            .filter(|cpu| !self.shard_cpus.contains(cpu))
            .collect()
    }
}

fn memlock_needed(shards: u64) -> u64 {
    MEMLOCK_PER_SHARD_BYTES_DEFAULT * shards.max(1) + (1 << 20)
}

/// Why `sluice tune` could not run at all (individual tunables never fail the command).
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    /// A flag has a value that does not parse.
    #[error("invalid value for {flag} ({value:?}): {reason}")]
    Invalid {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Writing the report failed (closed stdout).
    #[error("writing the report: {0}")]
    Output(#[from] std::io::Error),
}

/// Why `sluice start --production` refused to start: the FAILed settings and their fixes.
#[derive(Debug, thiserror::Error)]
#[error("refusing to start with --production: {}", failures.iter().map(|f| format!("{} is {} (want {}); fix: {}", f.name, f.current, f.recommended, f.fix)).collect::<Vec<_>>().join("; "))]
pub struct ProductionRefused {
    /// The findings with status FAIL.
    pub failures: Vec<Finding>,
}

/// Runs every check, in a fixed order (the order of the table).
pub fn check(ctx: &Context) -> Vec<Finding> {
    vec![
        plan::finding(ctx),
        cpu::governor(ctx),
        cpu::cstates(ctx),
        cpu::clocksource(ctx),
        irq::nic(ctx),
        irq::nvme(ctx),
        disk::scheduler(ctx),
        disk::nomerges(ctx),
        disk::write_cache(ctx),
        disk::block_size(ctx),
        disk::fstrim_timer(ctx),
        disk::filesystem(ctx),
        disk::free_space(ctx),
        ballast::finding(ctx),
        memory::swappiness(ctx),
        memory::transparent_hugepages(ctx),
        memory::memlock(ctx),
        limits::aio_max_nr(ctx),
        limits::io_uring_disabled(ctx),
        limits::somaxconn(ctx),
        limits::file_max(ctx),
        limits::nofile(ctx),
        net::rps(ctx),
        net::xps(ctx),
    ]
}

/// Whether any finding is a FAIL.
pub fn any_fail(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.status == Status::Fail)
}

/// Performs (or, with `dry_run`, prints) the writes of every finding that is not OK.
/// Returns how many writes failed; failures are printed and skipped (read-only sysfs in a
/// container is normal).
pub fn apply(findings: &[Finding], dry_run: bool, out: &mut dyn Write) -> std::io::Result<usize> {
    let mut failed = 0;
    for finding in findings.iter().filter(|f| f.status != Status::Ok) {
        for change in &finding.changes {
            let shown = change.path.display();
            if dry_run {
                writeln!(out, "would run: echo '{}' > {shown}", change.value)?;
                continue;
            }
            let before = sys::read(&change.path).unwrap_or_else(|e| e.to_string());
            match std::fs::write(&change.path, &change.value) {
                Ok(()) => writeln!(
                    out,
                    "changed {}: {shown}: {before:?} -> {:?}",
                    finding.name, change.value
                )?,
                Err(e) => {
                    failed += 1;
                    writeln!(
                        out,
                        "cannot change {}: writing {:?} to {shown}: {e} (read-only on a VM or container?)",
                        finding.name, change.value
                    )?;
                }
            }
        }
    }
    Ok(failed)
}

/// `sluice tune`: check, optionally apply and persist, report. Returns the exit status:
/// 0 when nothing FAILs, 1 when something does, 2 when the flags are wrong.
pub fn run(args: &TuneArgs) -> u8 {
    match run_with(args, &mut std::io::stdout().lock()) {
        Ok(true) => 1,
        Ok(false) => 0,
        // The reader went away (`sluice tune --json | head`): not our failure.
        Err(TuneError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("sluice tune: {e}");
            2
        }
    }
}

/// [`run`] writing to `out`; returns whether a FAIL remains.
pub fn run_with(args: &TuneArgs, out: &mut dyn Write) -> Result<bool, TuneError> {
    let ctx = Context::from_args(args)?;
    let mut findings = check(&ctx);
    let changing = args.apply || args.dry_run;
    // With --json, progress goes to stderr so stdout stays one JSON document.
    let mut stderr = std::io::stderr();
    let log: &mut dyn Write = if args.json { &mut stderr } else { out };
    if changing {
        apply(&findings, args.dry_run, log)?;
        ballast::apply(&ctx, args.dry_run, log)?;
    }
    if args.persist {
        persist::persist(&ctx, &findings, args.dry_run, log)?;
    }
    if changing && !args.dry_run {
        findings = check(&ctx);
    }
    if args.json {
        report::write_json(&findings, out)?;
    } else {
        report::write_table(&findings, out)?;
        report::write_plan(&ctx.plan, out)?;
    }
    Ok(any_fail(&findings))
}

/// Runs the checks read-only at broker start-up: one WARN log line per WARN or FAIL, and with
/// `production` an error naming every FAIL and its fix.
pub fn check_at_start(
    config: &crate::config::Config,
    production: bool,
) -> Result<(), ProductionRefused> {
    let ctx = Context::for_broker(config);
    let findings: Vec<Finding> = check(&ctx)
        .into_iter()
        .filter(|f| f.name != plan::NAME && f.name != ballast::NAME)
        .collect();
    for f in &findings {
        if matches!(f.status, Status::Warn | Status::Fail) {
            tracing::warn!(
                tunable = %f.name,
                status = f.status.label(),
                current = %f.current,
                recommended = %f.recommended,
                fix = %f.fix,
                "host tuning: {} is {} (recommended {})",
                f.name,
                f.current,
                f.recommended
            );
        }
    }
    let failures: Vec<Finding> = findings
        .into_iter()
        .filter(|f| f.status == Status::Fail)
        .collect();
    if production && !failures.is_empty() {
        return Err(ProductionRefused { failures });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod testing;
