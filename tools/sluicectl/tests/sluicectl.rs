//! The `sluicectl` command line without a broker: help, usage errors and an unreachable
//! cluster. The end-to-end tests against a real broker are the root package's
//! tests/sluicectl.rs.
//!
//! This file has the same target name on purpose: `cargo test --test sluicectl` at the root
//! then selects both, and because this one is an integration test of the `sluicectl` package,
//! cargo builds target/<profile>/sluicectl first, which is the binary the root test runs.
//! (`cargo test --workspace` builds it for the same reason.)

use std::net::TcpListener;
use std::process::{Command, Output};

fn ctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluicectl"))
        .env_remove("SLUICE_BROKERS")
        .args(args)
        .output()
        .expect("run sluicectl")
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A local address nothing listens on.
fn dead_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("local addr");
    drop(l);
    addr.to_string()
}

#[test]
fn help_lists_every_subcommand_family() {
    let o = ctl(&["--help"]);
    assert!(o.status.success(), "{}", show(&o));
    let help = String::from_utf8_lossy(&o.stdout);
    for cmd in ["topic", "group", "produce", "consume", "cluster"] {
        assert!(help.contains(cmd), "help lacks {cmd}: {}", show(&o));
    }
    assert!(help.contains("Exit status"), "{}", show(&o));
}

#[test]
fn usage_errors_exit_2_without_connecting() {
    // The broker address is dead: exit 2 (not 1) shows the command line was rejected first.
    let dead = dead_addr();
    for args in [
        vec![],
        vec!["nonsense"],
        vec!["topic", "create", "t", "--config", "no-equals-sign"],
        vec!["group", "reset-offsets", "g", "--topic", "t"],
        vec!["consume", "t", "--from-time", "yesterday"],
    ] {
        let mut full = vec!["--brokers", dead.as_str()];
        full.extend(args.iter().copied());
        let o = ctl(&full);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", show(&o));
    }
}

#[test]
fn unreachable_cluster_is_unhealthy_with_exit_1() {
    let dead = dead_addr();
    let o = ctl(&["--brokers", &dead, "cluster", "health"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("Cluster is UNHEALTHY."), "{}", show(&o));
    assert!(out.contains("connection refused"), "{}", show(&o));

    let o = ctl(&["--brokers", &dead, "topic", "list"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("sluicectl: "), "{}", show(&o));
}
