//! The appender against a disk that fails: a seeded simulation ([`SimFile`]) drives appends,
//! acks=1 and acks=all waiters, waiters that time out (their futures dropped mid-I/O), EIO on
//! writes and flushes, ENOSPC on pre-allocation and writes (and space coming back), short
//! writes, reordered completions and power cuts, and checks after every step:
//! - every byte acknowledged as durable is in the durable image, unchanged;
//! - reads of the written range return exactly the appended bytes (no offset ever holds two
//!   contents), and no two writes to one range are in flight at once;
//! - acknowledged bytes are never written again (only the partial tail block is);
//! - the durable position never moves backward;
//! - after an EIO nothing more is acknowledged and no flush is issued again;
//! - every waiter ends (success or error), none hangs.
//!
//! A fixed set of seeds runs every time; `SLUICE_FAULT_SECONDS` (default 2) adds random
//! seeds for that long. A failure names its seed; `SLUICE_FAULT_SEED=N` replays only it.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use crate::storage::appender::Appender;
use crate::storage::segment_file::sim::{yield_now, Faults, Rng, SimFile};
use crate::storage::StorageError;

use super::run;

/// Write block of the simulated device.
const BLOCK: u64 = 512;
/// Steps of one scenario.
const STEPS: usize = 160;
/// Seeds every run checks.
const FIXED_SEEDS: u64 = 48;

/// How a waiter ended: (durable?, position it waited for, result).
type Outcome = (bool, u64, Result<(), String>);

/// The bytes appended at `pos`: a function of the position, so a misplaced byte shows.
fn pattern(pos: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| {
            let p = pos + i;
            (p ^ (p >> 8) ^ (p >> 16)).wrapping_mul(31) as u8
        })
        .collect()
}

fn faults_for(rng: &mut Rng) -> Faults {
    let mut f = Faults::default();
    let pick = |rng: &mut Rng| 1 + rng.below(40) as u32;
    if rng.chance(1, 4) {
        f.eio_write = pick(rng);
    }
    if rng.chance(1, 4) {
        f.eio_flush = pick(rng);
    }
    if rng.chance(1, 4) {
        f.enospc_write = pick(rng);
    }
    if rng.chance(1, 4) {
        f.enospc_allocate = pick(rng);
    }
    if rng.chance(1, 4) {
        f.short_write = pick(rng);
    }
    f
}

async fn settle(n: u64) {
    for _ in 0..n {
        yield_now().await;
    }
}

/// Drops the unwritten tail after ENOSPC, as `Partition::drop_unwritten` does through
/// the log: take the appender, reload the block at the written end, cut back to it.
async fn drop_unwritten(appender: &Rc<Appender>, model: &mut Vec<u8>) -> Result<(), String> {
    appender.want_exclusive();
    appender.wait_idle().await;
    let taken = appender.try_exclusive();
    appender.unwant_exclusive();
    if !taken {
        return Ok(()); // a round started meanwhile; try again on a later step
    }
    let end = appender.written_pos();
    let head = appender.reload_head(end).await;
    let result = match head {
        Ok(head) => {
            appender.truncate_to(end, end as i64, head);
            model.truncate(end as usize);
            Ok(())
        }
        Err(e) => Err(format!("reload head after ENOSPC: {e}")),
    };
    appender.release_exclusive();
    result
}

async fn scenario(seed: u64) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let faults = faults_for(&mut rng);
    let sim = Rc::new(SimFile::new(seed, faults));
    let appender = Rc::new(Appender::new_simulated(
        PathBuf::from(format!("sim-{seed}.log")),
        sim.clone(),
        BLOCK,
        8 * 1024,
        1 << 30,
    ));
    let mut model: Vec<u8> = Vec::new();
    let outcomes: Rc<RefCell<Vec<Outcome>>> = Rc::default();
    let mut waiters: Vec<glommio::Task<()>> = Vec::new();
    let mut acked_durable = 0u64;
    let mut last_durable = 0u64;
    let mut failed_at: Option<(u64, u32)> = None; // (durable pos, flushes) when EIO was seen
    for step in 0..STEPS {
        let at = |what: String| format!("seed {seed} step {step} ({faults:?}): {what}");
        match rng.below(10) {
            0..=3 => {
                let max = if rng.chance(1, 8) { 40_000 } else { 3_000 };
                let len = 1 + rng.below(max) as usize;
                let pos = model.len() as u64;
                let bytes = pattern(pos, len);
                model.extend_from_slice(&bytes);
                appender.append(&bytes, model.len() as i64);
            }
            4..=6 => {
                let durable = rng.chance(2, 3);
                let pos = model.len() as u64;
                let (a, out) = (appender.clone(), outcomes.clone());
                let task = glommio::spawn_local(async move {
                    let result = if durable {
                        a.wait_durable(pos, pos as i64).await
                    } else {
                        a.wait_written(pos, pos as i64).await
                    };
                    out.borrow_mut()
                        .push((durable, pos, result.map_err(|e| e.to_string())));
                });
                if rng.chance(1, 4) {
                    // A request that will time out: its future is dropped below.
                    waiters.push(task);
                } else {
                    task.detach();
                }
            }
            7 => {
                if !waiters.is_empty() {
                    let i = rng.below(waiters.len() as u64) as usize;
                    drop(waiters.swap_remove(i)); // the timeout fires: cancel mid-wait
                }
            }
            8 => {
                if appender.is_out_of_space() && rng.chance(1, 2) {
                    drop_unwritten(&appender, &mut model).await.map_err(at)?;
                }
            }
            _ => settle(rng.below(6)).await,
        }
        settle(rng.below(3)).await;

        // Invariants.
        for (durable, pos, result) in outcomes.borrow_mut().drain(..) {
            if result.is_ok() {
                if let Some((durable_at_failure, _)) = failed_at {
                    if durable && pos > durable_at_failure {
                        return Err(at(format!("acked durable {pos} after an EIO")));
                    }
                }
                if durable {
                    acked_durable = acked_durable.max(pos);
                }
            }
        }
        if let Some(e) = sim.overlap() {
            return Err(at(e));
        }
        if let Some(e) = sim.rewrite() {
            return Err(at(e));
        }
        let written = appender.written_pos();
        if appender.failure().is_none() {
            let read = sim.read(0, written as usize);
            if read[..] != model[..written as usize] {
                return Err(at(format!(
                    "file differs from the appended bytes below {written}"
                )));
            }
        }
        sim.set_floor(written / BLOCK * BLOCK);
        let durable = appender.durable_pos();
        if durable < last_durable {
            return Err(at(format!(
                "durable position moved back {last_durable} -> {durable}"
            )));
        }
        last_durable = durable;
        let image = sim.durable_image();
        let n = acked_durable as usize;
        if image.len() < n || image[..n] != model[..n] {
            return Err(at(format!(
                "bytes acknowledged durable below {n} are not on disk"
            )));
        }
        if appender.failure().is_some() && failed_at.is_none() {
            failed_at = Some((durable, sim.flushes()));
        }
    }
    // Every waiter ends: give space back, drop what ran out of it, and let the I/O finish.
    drop(waiters);
    sim.set_capacity(0);
    for _ in 0..2_000 {
        if appender.is_out_of_space() {
            drop_unwritten(&appender, &mut model)
                .await
                .map_err(|e| format!("seed {seed}: {e}"))?;
        }
        let idle = appender.is_idle();
        settle(1).await;
        if idle && appender.is_idle() && Rc::strong_count(&outcomes) == 1 {
            break;
        }
    }
    if Rc::strong_count(&outcomes) != 1 {
        return Err(format!("seed {seed}: a waiter never ended"));
    }
    for (durable, pos, result) in outcomes.borrow().iter() {
        if let (true, Ok(())) = (durable, result) {
            acked_durable = acked_durable.max(*pos);
        }
    }
    if let Some((_, flushes)) = failed_at {
        if sim.flushes() != flushes {
            return Err(format!("seed {seed}: fdatasync issued again after an EIO"));
        }
    }
    // Power cut: whatever survives must hold every acknowledged byte.
    let image = sim.power_cut();
    let n = acked_durable as usize;
    if image.len() < n || image[..n] != model[..n] {
        return Err(format!(
            "seed {seed}: after a power cut, bytes acknowledged durable below {n} are lost"
        ));
    }
    Ok(())
}

/// Runs `scenario` for the fixed seeds `0..fixed`, then for random seeds until
/// `SLUICE_FAULT_SECONDS` (default 2) have passed; `SLUICE_FAULT_SEED=N` runs only seed N.
/// A failure panics with its seed and the command that replays it (`test` names the test
/// filter). Shared by the simulations of this module and `power_cut`.
pub(super) async fn drive_seeds<F>(fixed: u64, test: &str, scenario: F)
where
    F: Fn(u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>>>>,
{
    let fail = |seed: u64, e: String| -> ! {
        panic!("{e}\nreplay: SLUICE_FAULT_SEED={seed} cargo test --release --lib {test}")
    };
    if let Some(seed) = std::env::var("SLUICE_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        if let Err(e) = scenario(seed).await {
            fail(seed, e);
        }
        return;
    }
    for seed in 0..fixed {
        if let Err(e) = scenario(seed).await {
            fail(seed, e);
        }
    }
    for seed in crate::util::rng::timed_seeds() {
        if let Err(e) = scenario(seed).await {
            fail(seed, e);
        }
    }
}

#[test]
fn acknowledged_bytes_survive_every_injected_fault() {
    run(drive_seeds(FIXED_SEEDS, "faults", |seed| {
        Box::pin(scenario(seed))
    }));
}

#[test]
fn a_waiter_that_times_out_does_not_cancel_the_write_it_started() {
    run(async {
        let sim = Rc::new(SimFile::new(7, Faults::default()));
        let appender = Rc::new(Appender::new_simulated(
            PathBuf::from("timeout.log"),
            sim.clone(),
            BLOCK,
            8 * 1024,
            1 << 30,
        ));
        let bytes = pattern(0, 3_000);
        appender.append(&bytes, 1);
        // The waiter starts the write and flush, then is dropped at once (a produce timeout).
        let a = appender.clone();
        let waiter = glommio::spawn_local(async move { a.wait_durable(3_000, 1).await });
        settle(1).await;
        drop(waiter);
        // A later append and its waiter must find the first bytes written and durable,
        // not rewritten concurrently by a second round.
        appender.append(&pattern(3_000, 100), 2);
        appender.wait_durable(3_100, 2).await.expect("durable");
        assert!(sim.overlap().is_none(), "{:?}", sim.overlap());
        let image = sim.durable_image();
        assert_eq!(&image[..3_000], &bytes[..]);
    });
}

#[test]
fn out_of_space_refuses_waiters_and_resumes_after_the_tail_is_dropped() {
    run(async {
        let sim = Rc::new(SimFile::new(11, Faults::default()));
        sim.set_capacity(16 * 1024);
        let appender = Rc::new(Appender::new_simulated(
            PathBuf::from("enospc.log"),
            sim.clone(),
            BLOCK,
            4 * 1024,
            1 << 30,
        ));
        let mut model = pattern(0, 10_000);
        appender.append(&model, 1);
        appender.wait_durable(10_000, 1).await.expect("fits");
        let more = pattern(10_000, 20_000);
        model.extend_from_slice(&more);
        appender.append(&more, 2);
        match appender.wait_durable(30_000, 2).await {
            Err(StorageError::NoSpace { .. }) => {}
            other => panic!("expected NoSpace, got {other:?}"),
        }
        assert!(appender.failure().is_none(), "ENOSPC must not poison");
        assert_eq!(appender.durable_pos(), 10_000, "acknowledged bytes stay");
        sim.set_capacity(0);
        drop_unwritten(&appender, &mut model).await.expect("drop");
        assert_eq!(appender.end_pos(), 10_000);
        let again = pattern(10_000, 5_000);
        appender.append(&again, 3);
        appender
            .wait_durable(15_000, 3)
            .await
            .expect("space is back");
        let image = sim.durable_image();
        assert_eq!(&image[..10_000], &model[..10_000]);
        assert_eq!(&image[10_000..15_000], &again[..]);
    });
}
