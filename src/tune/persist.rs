//! `sluice tune --persist`: the files that make tuning survive a reboot.
//!
//! Sysctls go to `sysctl.d`, block-queue settings to a udev rule (so they follow the disk
//! through hot-plug and reboot), other sysfs writes to `tmpfiles.d` (systemd-tmpfiles writes
//! them at boot), limits and CPUs to a systemd drop-in for `sluice.service`, and TRIM is
//! scheduled by enabling `fstrim.timer`. The sysctl.d and udev files are the ones under
//! `tuning/` in the repository, compiled in, so what is reviewed is what is written.

use std::io::Write;
use std::path::Path;

use super::disk;
use super::sys;
use super::{Context, Finding, Status};

/// `/etc/sysctl.d/60-sluice.conf`, the same text as `tuning/sysctl.d/60-sluice.conf`.
pub const SYSCTL_CONF: &str = include_str!("../../tuning/sysctl.d/60-sluice.conf");
/// `/etc/udev/rules.d/60-sluice-io.rules`, the same text as `tuning/udev/60-sluice-io.rules`.
pub const UDEV_RULES: &str = include_str!("../../tuning/udev/60-sluice-io.rules");

/// Paths written under the etc root.
pub const SYSCTL_PATH: &str = "sysctl.d/60-sluice.conf";
/// See [`UDEV_RULES`].
pub const UDEV_PATH: &str = "udev/rules.d/60-sluice-io.rules";
/// sysfs writes replayed at boot by systemd-tmpfiles.
pub const TMPFILES_PATH: &str = "tmpfiles.d/60-sluice.conf";
/// Limits and CPU affinity of the service.
pub const DROP_IN_PATH: &str = "systemd/system/sluice.service.d/60-sluice-tune.conf";

/// `tmpfiles.d` lines for the sysfs writes of findings that are not OK (IRQ affinity and
/// sysctls are left out: IRQ numbers change across boots, sysctls have sysctl.d).
pub fn tmpfiles_conf(ctx: &Context, findings: &[Finding]) -> Option<String> {
    let mut lines = Vec::new();
    for finding in findings.iter().filter(|f| f.status != Status::Ok) {
        for change in &finding.changes {
            let Ok(rel) = change.path.strip_prefix(&ctx.roots.sysfs) else {
                continue;
            };
            // Block queues are handled by the udev rule, which follows device renames.
            if rel.components().any(|c| c.as_os_str() == "queue") {
                continue;
            }
            lines.push(format!("w /sys/{} - - - - {}", rel.display(), change.value));
        }
    }
    if lines.is_empty() {
        return None;
    }
    Some(format!(
        "# sysfs settings for Sluice, written by `sluice tune --persist`; applied at boot by\n# systemd-tmpfiles (now: systemd-tmpfiles --create {TMPFILES_PATH}).\n{}\n",
        lines.join("\n")
    ))
}

/// The systemd drop-in: unlimited memlock for registered buffers, descriptors, shard CPUs.
pub fn drop_in(ctx: &Context) -> String {
    format!(
        "# Written by `sluice tune --persist`; reload with `systemctl daemon-reload`.\n[Service]\n# Registered io_uring buffers are pinned memory.\nLimitMEMLOCK=infinity\n# Connections, segments and indexes.\nLimitNOFILE=1048576\n# Shard cores from the CPU plan; pass the same list as --cpuset.\nCPUAffinity={}\n",
        sys::format_cpu_list(&ctx.shard_cpus).replace(',', " ")
    )
}

/// Writes one file unless it already has this content; returns false on failure.
fn write_file(
    path: &Path,
    content: &str,
    dry_run: bool,
    out: &mut dyn Write,
) -> std::io::Result<bool> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == content) {
        writeln!(out, "unchanged {}", path.display())?;
        return Ok(true);
    }
    if dry_run {
        writeln!(out, "would write {}:", path.display())?;
        for line in content.lines() {
            writeln!(out, "    {line}")?;
        }
        return Ok(true);
    }
    let result = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(path, content));
    match result {
        Ok(()) => {
            writeln!(out, "wrote {}", path.display())?;
            Ok(true)
        }
        Err(e) => {
            writeln!(out, "cannot write {}: {e}", path.display())?;
            Ok(false)
        }
    }
}

/// Enables fstrim.timer the way `systemctl enable` does: a symlink in timers.target.wants.
fn enable_fstrim(ctx: &Context, dry_run: bool, out: &mut dyn Write) -> std::io::Result<bool> {
    let link = ctx.roots.etc(disk::FSTRIM_WANTS_LINK);
    if link.exists() {
        writeln!(out, "unchanged {} (fstrim.timer enabled)", link.display())?;
        return Ok(true);
    }
    let Some(unit) = disk::fstrim_unit(ctx) else {
        writeln!(out, "cannot enable fstrim.timer: no unit file on this host")?;
        return Ok(false);
    };
    if dry_run {
        writeln!(
            out,
            "would run: ln -s {} {}",
            unit.display(),
            link.display()
        )?;
        return Ok(true);
    }
    let result = link
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::os::unix::fs::symlink(&unit, &link));
    match result {
        Ok(()) => writeln!(
            out,
            "enabled fstrim.timer: {} -> {}",
            link.display(),
            unit.display()
        )?,
        Err(e) => writeln!(out, "cannot enable fstrim.timer: {e}")?,
    }
    Ok(link.exists())
}

/// Writes (or with `dry_run` prints) every persistent file. Returns how many failed.
pub fn persist(
    ctx: &Context,
    findings: &[Finding],
    dry_run: bool,
    out: &mut dyn Write,
) -> std::io::Result<usize> {
    let mut files = vec![
        (ctx.roots.etc(SYSCTL_PATH), SYSCTL_CONF.to_string()),
        (ctx.roots.etc(UDEV_PATH), UDEV_RULES.to_string()),
        (ctx.roots.etc(DROP_IN_PATH), drop_in(ctx)),
    ];
    if let Some(text) = tmpfiles_conf(ctx, findings) {
        files.push((ctx.roots.etc(TMPFILES_PATH), text));
    }
    let mut failed = 0;
    for (path, content) in &files {
        if !write_file(path, content, dry_run, out)? {
            failed += 1;
        }
    }
    if !enable_fstrim(ctx, dry_run, out)? {
        failed += 1;
    }
    if !dry_run {
        writeln!(
            out,
            "load now: sysctl --system; udevadm control --reload && udevadm trigger --subsystem-match=block; systemd-tmpfiles --create; systemctl daemon-reload"
        )?;
    }
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tune::testing::{write, FakeHost};
    use crate::tune::{check, memory};

    #[test]
    fn writes_every_file_once() {
        let host = FakeHost::new();
        host.sys(
            "kernel/mm/transparent_hugepage/enabled",
            "[always] madvise never",
        );
        write(
            &host.roots.root("lib/systemd/system/fstrim.timer"),
            "[Timer]\n",
        );
        let ctx = host.context();
        let findings = vec![memory::transparent_hugepages(&ctx)];
        let mut out = Vec::new();
        assert_eq!(persist(&ctx, &findings, true, &mut out).unwrap(), 0);
        assert!(
            !ctx.roots.etc(SYSCTL_PATH).exists(),
            "dry run writes nothing"
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("would write"), "{text}");

        let mut out = Vec::new();
        assert_eq!(persist(&ctx, &findings, false, &mut out).unwrap(), 0);
        let read = |rel: &str| std::fs::read_to_string(ctx.roots.etc(rel)).unwrap();
        assert!(read(SYSCTL_PATH).contains("vm.swappiness = 1"));
        assert!(read(UDEV_PATH).contains("ATTR{queue/scheduler}=\"none\""));
        assert_eq!(
            read(TMPFILES_PATH).lines().last().unwrap(),
            "w /sys/kernel/mm/transparent_hugepage/enabled - - - - madvise"
        );
        let unit = read(DROP_IN_PATH);
        assert!(unit.contains("LimitMEMLOCK=infinity"));
        assert!(unit.contains("CPUAffinity=1-3"), "{unit}");
        assert!(ctx.roots.etc(disk::FSTRIM_WANTS_LINK).exists());
        assert_eq!(disk::fstrim_timer(&ctx).status, Status::Ok);

        let mut out = Vec::new();
        persist(&ctx, &findings, false, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("wrote"), "second run is idempotent: {text}");
    }

    #[test]
    fn persist_survives_an_unwritable_etc() {
        let host = FakeHost::new();
        let mut ctx = host.context();
        // A file where a directory should be: every write fails, even as root.
        write(&host.dir.path().join("etc-file"), "");
        ctx.roots.etc = host.dir.path().join("etc-file");
        let findings = check(&ctx);
        let mut out = Vec::new();
        let failed = persist(&ctx, &findings, false, &mut out).unwrap();
        assert!(failed >= 3, "{}", String::from_utf8(out).unwrap());
    }

    #[test]
    fn repository_files_are_what_persist_writes() {
        assert!(SYSCTL_CONF.contains("fs.aio-max-nr = 1048576"));
        assert!(SYSCTL_CONF.contains("net.core.somaxconn = 4096"));
        assert!(UDEV_RULES.contains("ATTR{queue/nomerges}=\"2\""));
    }
}
