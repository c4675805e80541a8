//! End-to-end: a short open-loop produce benchmark against a real broker, checked through the
//! JSON report it writes (counts, percentile order, the floor). No wall-clock assertions:
//! the machine is shared, only the shape and the internal consistency are checked.

mod common;

use std::time::Duration;

use common::Broker;
use sluice_bench::{AckLevel, Mode, Options, Workload};

fn workload(mode: Mode) -> Workload {
    Workload {
        mode,
        topic: format!("bench-e2e-{mode}"),
        partitions: 3,
        rate: 200.0,
        duration_secs: 3.0,
        warmup_secs: 0.5,
        record_size: 256,
        acks: AckLevel::All,
        ..Workload::default()
    }
}

#[test]
fn produce_bench_writes_a_consistent_json_report() {
    let broker = Broker::start();
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("bench.json");
    let mut opts = Options::new(broker.bootstrap(), workload(Mode::Produce));
    opts.data_dir = Some(broker.data_dir.clone());
    opts.floor_budget = Duration::from_millis(200);
    opts.json = Some(json.clone());
    opts.plot = Some(out.path().join("bench.svg"));
    opts.histogram_out = Some(out.path().join("bench.hgrm"));
    let report = sluice_bench::run(&opts).expect("bench run");
    assert_eq!(report.results.len(), 1);

    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["schema"], "sluice-bench/1");
    let r = &v["results"][0];
    let n = |x: &serde_json::Value| x.as_f64().unwrap_or_else(|| panic!("not a number: {x}"));
    assert!(n(&r["sent"]) > 0.0, "{r}");
    assert!(n(&r["acked"]) > 0.0, "{r}");
    assert_eq!(n(&r["errors"]), 0.0, "{r}");
    assert_eq!(n(&r["timed_out"]), 0.0, "{r}");
    assert!(n(&r["records_per_sec"]) > 0.0);
    let l = &r["produce_latency_us"];
    assert_eq!(n(&l["count"]), n(&r["acked"]));
    assert!(n(&l["p50_us"]) > 0.0);
    assert!(n(&l["p50_us"]) <= n(&l["p99_us"]), "{l}");
    assert!(n(&l["p99_us"]) <= n(&l["p999_us"]), "{l}");
    assert!(n(&l["p999_us"]) <= n(&l["max_us"]), "{l}");

    let f = &v["floor"];
    assert!(n(&f["loopback_rtt"]["p99_us"]) > 0.0, "{f}");
    assert!(n(&f["fdatasync"]["p99_us"]) > 0.0, "{f}");
    assert!(n(&f["acks_all_p99_floor_us"]) > 0.0, "{f}");
    assert_eq!(r["vs_floor"]["floor"], "fdatasync_p99+loopback_rtt_p99");
    assert!(n(&r["vs_floor"]["p99"]) > 0.0);
    assert!(v["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(!r["distribution"].as_array().unwrap().is_empty());

    let svg = std::fs::read_to_string(out.path().join("bench.svg")).unwrap();
    assert!(svg.contains("<polyline"));
    let hgrm = std::fs::read_to_string(out.path().join("bench.hgrm")).unwrap();
    assert!(hgrm.contains("Total count"));
}

#[test]
fn e2e_bench_receives_what_it_produced() {
    let broker = Broker::start();
    let mut w = workload(Mode::E2e);
    w.acks = AckLevel::Leader;
    w.duration_secs = 2.0;
    let mut opts = Options::new(broker.bootstrap(), w);
    opts.floor_budget = Duration::from_millis(100);
    let report = sluice_bench::run(&opts).expect("bench run");
    let r = &report.results[0];
    assert!(r.acked > 0);
    assert_eq!(
        r.consumed,
        Some(r.acked),
        "every acknowledged record was consumed"
    );
    let e2e = r.e2e_latency_us.expect("e2e latency");
    assert_eq!(e2e.count, r.acked);
    assert!(e2e.p50_us <= e2e.p99_us && e2e.p99_us <= e2e.max_us);
    assert!(
        report.floor.fdatasync.is_none(),
        "no --data-dir, no disk floor"
    );
}
