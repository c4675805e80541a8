//! CPU tuners: frequency governor, idle states (C-states) and the clocksource.

use super::sys;
use super::{Change, Context, Finding, Status};

/// Exit latency above which an idle state is disabled on shard cores: waking from a deep
/// C-state takes tens to hundreds of microseconds, paid by the first request after a pause.
pub const CSTATE_EXIT_LATENCY_US_MAX: u64 = 10;

const GOVERNOR_WHY: &str = "powersave/ondemand governors drop the clock between bursts; the first requests after a pause run slower";
const CSTATE_WHY: &str =
    "waking a core from a deep C-state adds its exit latency to the request that woke it";
const CLOCKSOURCE_WHY: &str = "every latency measurement and timer reads the clock; hpet/acpi_pm reads are syscalls costing microseconds, tsc is read in userspace";

/// `scaling_governor` of each shard CPU should be `performance`.
pub fn governor(ctx: &Context) -> Finding {
    const NAME: &str = "cpu.governor";
    let mut wrong = Vec::new();
    let mut seen = Vec::new();
    let mut changes = Vec::new();
    for &cpu in &ctx.shard_cpus {
        let path = ctx.roots.sys(&format!(
            "devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"
        ));
        let Ok(value) = sys::read(&path) else {
            continue;
        };
        if !seen.contains(&value) {
            seen.push(value.clone());
        }
        if value != "performance" {
            wrong.push(cpu);
            changes.push(Change {
                path,
                value: "performance".into(),
            });
        }
    }
    if seen.is_empty() {
        return Finding::not_applicable(
            NAME,
            "no cpufreq on the shard CPUs (VM or fixed-frequency host)",
            "performance",
            GOVERNOR_WHY,
        );
    }
    if wrong.is_empty() {
        return Finding::new(
            NAME,
            "performance",
            "performance",
            GOVERNOR_WHY,
            Status::Ok,
            "",
        );
    }
    Finding::new(
        NAME,
        seen.join(","),
        "performance",
        GOVERNOR_WHY,
        Status::Warn,
        format!(
            "sluice tune --apply (writes performance to cpu{{{}}}/cpufreq/scaling_governor)",
            sys::format_cpu_list(&wrong)
        ),
    )
    .with_changes(changes)
}

/// Idle states with an exit latency above [`CSTATE_EXIT_LATENCY_US_MAX`] should be disabled
/// on shard CPUs.
pub fn cstates(ctx: &Context) -> Finding {
    const NAME: &str = "cpu.cstates";
    let recommended =
        format!("states with exit latency > {CSTATE_EXIT_LATENCY_US_MAX}us disabled on shard CPUs");
    let driver = sys::read(&ctx.roots.sys("devices/system/cpu/cpuidle/current_driver"));
    let mut deep_enabled: Vec<String> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut changes = Vec::new();
    for &cpu in &ctx.shard_cpus {
        let dir = ctx
            .roots
            .sys(&format!("devices/system/cpu/cpu{cpu}/cpuidle"));
        for state in sys::list_dir(&dir)
            .iter()
            .filter(|s| s.starts_with("state"))
        {
            let state_dir = dir.join(state);
            let name = sys::read(&state_dir.join("name")).unwrap_or_else(|_| state.clone());
            let Ok(latency_us) = sys::read_u64(&state_dir.join("latency")) else {
                continue;
            };
            let disabled = sys::read(&state_dir.join("disable")).is_ok_and(|v| v == "1");
            let label = format!("{name}({latency_us}us)");
            if !names.contains(&label) {
                names.push(label.clone());
            }
            if latency_us > CSTATE_EXIT_LATENCY_US_MAX && !disabled {
                if !deep_enabled.contains(&label) {
                    deep_enabled.push(label);
                }
                changes.push(super::Change {
                    path: state_dir.join("disable"),
                    value: "1".into(),
                });
            }
        }
    }
    if names.is_empty() {
        let reason = match driver {
            Ok(d) => format!("no cpuidle states exposed (driver {d})"),
            Err(_) => "no cpuidle in sysfs (VM or idle=poll)".to_string(),
        };
        return Finding::not_applicable(NAME, reason, recommended, CSTATE_WHY);
    }
    let current = format!("available: {}", names.join(" "));
    if deep_enabled.is_empty() {
        return Finding::new(NAME, current, recommended, CSTATE_WHY, Status::Ok, "");
    }
    Finding::new(
        NAME,
        current,
        recommended,
        CSTATE_WHY,
        Status::Warn,
        format!(
            "sluice tune --apply disables {} on shard CPUs (costs idle power), or boot with processor.max_cstate=1",
            deep_enabled.join(" ")
        ),
    )
    .with_changes(changes)
}

/// The clocksource should be `tsc` (or `kvm-clock` on KVM guests without a stable TSC).
pub fn clocksource(ctx: &Context) -> Finding {
    const NAME: &str = "cpu.clocksource";
    let dir = "devices/system/clocksource/clocksource0";
    let current = match sys::read(&ctx.roots.sys(&format!("{dir}/current_clocksource"))) {
        Ok(value) => value,
        Err(e) => return Finding::not_applicable(NAME, e.to_string(), "tsc", CLOCKSOURCE_WHY),
    };
    if current == "tsc" || current == "kvm-clock" || current == "arch_sys_counter" {
        return Finding::new(NAME, current, "tsc", CLOCKSOURCE_WHY, Status::Ok, "");
    }
    let available =
        sys::read(&ctx.roots.sys(&format!("{dir}/available_clocksource"))).unwrap_or_default();
    let finding = Finding::new(
        NAME,
        &current,
        "tsc",
        CLOCKSOURCE_WHY,
        Status::Warn,
        if available.split_whitespace().any(|c| c == "tsc") {
            "sluice tune --apply (writes tsc to current_clocksource); persist with the boot parameter clocksource=tsc".to_string()
        } else {
            format!("tsc is not available (only {available}); check BIOS/hypervisor TSC settings")
        },
    );
    if available.split_whitespace().any(|c| c == "tsc") {
        finding.with_changes(vec![Change {
            path: ctx.roots.sys(&format!("{dir}/current_clocksource")),
            value: "tsc".into(),
        }])
    } else {
        finding
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tune::testing::{make_read_only, FakeHost};
    use crate::tune::{apply, persist};

    #[test]
    fn governor_check_apply_and_idempotence() {
        let host = FakeHost::new();
        for cpu in 0..4 {
            host.sys(
                &format!("devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"),
                "powersave\n",
            );
        }
        let ctx = host.context();
        let f = governor(&ctx);
        assert_eq!(f.status, Status::Warn);
        assert_eq!(f.current, "powersave");
        assert_eq!(f.changes.len(), 3, "only shard CPUs 1-3");
        let mut out = Vec::new();
        apply(&[f], false, &mut out).unwrap();
        assert_eq!(
            host.read_sys("devices/system/cpu/cpu1/cpufreq/scaling_governor"),
            "performance"
        );
        assert_eq!(
            host.read_sys("devices/system/cpu/cpu0/cpufreq/scaling_governor"),
            "powersave\n"
        );
        let again = governor(&ctx);
        assert_eq!(again.status, Status::Ok);
        assert!(again.changes.is_empty());
    }

    #[test]
    fn governor_missing_and_read_only() {
        let host = FakeHost::new();
        let f = governor(&host.context());
        assert_eq!(f.status, Status::NotApplicable);
        assert!(f.current.contains("no cpufreq"), "{}", f.current);
        let path = host.sys(
            "devices/system/cpu/cpu1/cpufreq/scaling_governor",
            "powersave",
        );
        make_read_only(&path);
        let f = governor(&host.context());
        assert_eq!(f.status, Status::Warn);
        let mut out = Vec::new();
        let failed = apply(&[f], false, &mut out).unwrap();
        assert_eq!(failed, 1);
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("cannot change cpu.governor"), "{out}");
    }

    #[test]
    fn cstates_disable_deep_states_only() {
        let host = FakeHost::new();
        for cpu in 0..4 {
            let dir = format!("devices/system/cpu/cpu{cpu}/cpuidle");
            host.sys(&format!("{dir}/state0/name"), "POLL");
            host.sys(&format!("{dir}/state0/latency"), "0");
            host.sys(&format!("{dir}/state0/disable"), "0");
            host.sys(&format!("{dir}/state1/name"), "C6");
            host.sys(&format!("{dir}/state1/latency"), "133");
            host.sys(&format!("{dir}/state1/disable"), "0");
        }
        let ctx = host.context();
        let f = cstates(&ctx);
        assert_eq!(f.status, Status::Warn);
        assert!(f.current.contains("C6(133us)"), "{}", f.current);
        let mut out = Vec::new();
        apply(&[f], true, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("would run: echo '1' >"), "{out}");
        assert_eq!(
            host.read_sys("devices/system/cpu/cpu1/cpuidle/state1/disable"),
            "0"
        );
        apply(&[cstates(&ctx)], false, &mut Vec::new()).unwrap();
        assert_eq!(
            host.read_sys("devices/system/cpu/cpu1/cpuidle/state1/disable"),
            "1"
        );
        assert_eq!(
            host.read_sys("devices/system/cpu/cpu1/cpuidle/state0/disable"),
            "0"
        );
        assert_eq!(
            host.read_sys("devices/system/cpu/cpu0/cpuidle/state1/disable"),
            "0"
        );
        assert_eq!(cstates(&ctx).status, Status::Ok);
        assert_eq!(
            cstates(&FakeHost::new().context()).status,
            Status::NotApplicable
        );
        // cpuidle changes do not survive a reboot; persist writes them as tmpfiles entries.
        let text = persist::tmpfiles_conf(&ctx, &[cstates(&FakeHost::new().context())]);
        assert!(text.is_none());
    }

    #[test]
    fn clocksource_states() {
        let host = FakeHost::new();
        let dir = "devices/system/clocksource/clocksource0";
        assert_eq!(clocksource(&host.context()).status, Status::NotApplicable);
        host.sys(&format!("{dir}/current_clocksource"), "hpet\n");
        host.sys(
            &format!("{dir}/available_clocksource"),
            "tsc hpet acpi_pm\n",
        );
        let f = clocksource(&host.context());
        assert_eq!(f.status, Status::Warn);
        apply(&[f], false, &mut Vec::new()).unwrap();
        assert_eq!(clocksource(&host.context()).status, Status::Ok);
        host.sys(&format!("{dir}/current_clocksource"), "hpet\n");
        host.sys(&format!("{dir}/available_clocksource"), "hpet acpi_pm\n");
        let f = clocksource(&host.context());
        assert!(f.changes.is_empty());
        assert!(f.fix.contains("not available"), "{}", f.fix);
    }
}
