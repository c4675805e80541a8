//! `sluice tune` and `sluice iotune` run as the real binary on the real host.
//!
//! `tune --json` only reads (no --apply), so it is safe on any CI machine; it must list every
//! tunable the issue names whatever the host is (VM, container), with N/A where a file is
//! missing. `iotune` runs on a small file in a temporary directory.

use std::process::Command;

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// Every tunable `sluice tune` must report.
const TUNABLES: &[&str] = &[
    "cpu.plan",
    "cpu.governor",
    "cpu.cstates",
    "cpu.clocksource",
    "irq.nic_affinity",
    "irq.nvme_affinity",
    "disk.scheduler",
    "disk.nomerges",
    "disk.write_cache",
    "disk.block_size",
    "disk.fstrim_timer",
    "disk.filesystem",
    "disk.free_space",
    "disk.ballast",
    "vm.swappiness",
    "mm.transparent_hugepage",
    "limit.memlock",
    "fs.aio-max-nr",
    "kernel.io_uring_disabled",
    "net.core.somaxconn",
    "fs.file-max",
    "limit.nofile",
    "net.rps",
    "net.xps",
];

#[test]
fn tune_json_on_the_real_host_lists_every_tunable() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    let output = Command::new(SLUICE)
        .args(["tune", "--json", "--data-dir"])
        .arg(&data_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let findings: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let findings = findings.as_array().expect("an array");
    let mut any_fail = false;
    for name in TUNABLES {
        let f = findings
            .iter()
            .find(|f| f["name"] == *name)
            .unwrap_or_else(|| panic!("{name} missing from {stdout}"));
        for field in ["current", "recommended", "why", "status", "fix"] {
            assert!(f[field].is_string(), "{name}.{field} in {f}");
        }
        let status = f["status"].as_str().unwrap();
        assert!(["OK", "WARN", "FAIL", "N/A"].contains(&status), "{f}");
        assert!(!f["why"].as_str().unwrap().is_empty(), "{f}");
        any_fail |= status == "FAIL";
    }
    assert_eq!(findings.len(), TUNABLES.len(), "{stdout}");
    // Exit status is non-zero exactly when something FAILs.
    assert_eq!(output.status.success(), !any_fail, "{stdout}");
    // A check never writes: only the data directory we made exists, and it is empty.
    assert_eq!(std::fs::read_dir(&data_dir).unwrap().count(), 0);
}

#[test]
fn tune_table_prints_the_cpuset() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(SLUICE)
        .args(["tune", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("TUNABLE"), "{stdout}");
    assert!(
        stdout.contains("start with: sluice start --cpuset "),
        "{stdout}"
    );
}

#[test]
fn tune_apply_on_a_fake_tree_changes_it_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let write = |rel: &str, value: &str| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, value).unwrap();
    };
    write("sys/devices/system/cpu/online", "0-3\n");
    write(
        "sys/kernel/mm/transparent_hugepage/enabled",
        "[always] madvise never\n",
    );
    write("proc/sys/vm/swappiness", "60\n");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let run = |extra: &[&str]| {
        let output = Command::new(SLUICE)
            .arg("tune")
            .args(extra)
            .arg("--sysfs-root")
            .arg(root.join("sys"))
            .arg("--procfs-root")
            .arg(root.join("proc"))
            .arg("--etc-root")
            .arg(root.join("etc"))
            .arg("--data-dir")
            .arg(root.join("data"))
            .args(["--ballast-size", "1MiB"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let dry = run(&["--dry-run", "--persist"]);
    assert!(dry.contains("would run: echo '1' >"), "{dry}");
    assert!(dry.contains("would write"), "{dry}");
    assert_eq!(
        std::fs::read_to_string(root.join("proc/sys/vm/swappiness")).unwrap(),
        "60\n"
    );
    let applied = run(&["--apply", "--persist"]);
    assert!(applied.contains("changed vm.swappiness"), "{applied}");
    assert!(applied.contains("changed disk.ballast"), "{applied}");
    assert_eq!(
        std::fs::read_to_string(root.join("proc/sys/vm/swappiness")).unwrap(),
        "1"
    );
    assert!(root.join("data/ballast").exists());
    assert!(root.join("etc/sysctl.d/60-sluice.conf").exists());
    assert!(root.join("etc/udev/rules.d/60-sluice-io.rules").exists());
    let again = run(&["--apply", "--persist"]);
    assert!(
        !again.lines().any(|l| l.starts_with("changed ")),
        "second --apply changes nothing: {again}"
    );
    assert!(
        !again.lines().any(|l| l.starts_with("wrote ")),
        "second --persist writes nothing: {again}"
    );
}

#[test]
fn iotune_measures_sane_values() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let output = Command::new(SLUICE)
        .args([
            "iotune",
            "--json",
            "--size",
            "16MiB",
            "--duration-secs",
            "2",
            "--data-dir",
        ])
        .arg(&data_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("does not support O_DIRECT") {
        eprintln!("skipped: temporary directory refuses O_DIRECT: {stderr}");
        return;
    }
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("iotune: fdatasync"),
        "progress on stderr: {stderr}"
    );
    let profile: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        profile["seq_write_bytes_per_sec"].as_u64().unwrap() > 0,
        "{profile}"
    );
    for phase in ["write_4k_latency", "write_16k_latency", "fdatasync_latency"] {
        let l = &profile[phase];
        let (p50, p99, p999) = (
            l["p50_ns"].as_u64().unwrap(),
            l["p99_ns"].as_u64().unwrap(),
            l["p999_ns"].as_u64().unwrap(),
        );
        assert!(p50 > 0 && p99 >= p50 && p999 >= p99, "{phase}: {l}");
        assert!(p99 < 10_000_000_000, "{phase} p99 under 10 s: {l}");
    }
    let on_disk = std::fs::read_to_string(data_dir.join("io-profile.json")).unwrap();
    let from_disk: serde_json::Value = serde_json::from_str(&on_disk).unwrap();
    assert_eq!(from_disk, profile);
    let loaded =
        sluice::storage::io_profile::load_profile(&data_dir).expect("the broker can load it");
    assert_eq!(
        loaded.fsync_floor_ns(),
        profile["fdatasync_latency"]["p99_ns"].as_u64().unwrap()
    );
}
