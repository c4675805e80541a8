//! The shard's commit pipeline: flushes of segments that ask together share one turn, the next turn's
//! writes run while a turn's flushes are in flight, and a waiter is released exactly when a
//! flush that started after its bytes were written completes.

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;

use crate::storage::appender::Appender;
use crate::storage::commit_pipeline;
use crate::storage::segment_file::sim::{yield_now, Faults, SimFile};

use super::run;

const BLOCK: u64 = 512;

fn segment(seed: u64) -> (Rc<SimFile>, Rc<Appender>) {
    let sim = Rc::new(SimFile::new(seed, Faults::default()));
    sim.set_min_yields(1);
    let appender = Rc::new(Appender::new_simulated(
        PathBuf::from(format!("pipeline-{seed}.log")),
        sim.clone(),
        BLOCK,
        64 * 1024,
        1 << 30,
    ));
    (sim, appender)
}

async fn settle() {
    for _ in 0..64 {
        yield_now().await;
    }
}

/// Spawns a wait for `pos` to be durable; the cell turns true when it succeeds.
fn wait_durable(appender: &Rc<Appender>, pos: u64) -> Rc<Cell<bool>> {
    let done = Rc::new(Cell::new(false));
    let (a, d) = (appender.clone(), done.clone());
    glommio::spawn_local(async move {
        a.wait_durable(pos, pos as i64).await.expect("durable");
        d.set(true);
    })
    .detach();
    done
}

#[test]
fn segments_that_ask_while_a_turn_runs_share_the_next_turn() {
    run(async {
        // A busy partition's flush is in flight.
        let (busy_sim, busy) = segment(9);
        busy_sim.limit_flushes(Some(0));
        let busy_end = busy.append(&[9u8; 500], 1);
        let busy_waiter = wait_durable(&busy, busy_end);
        settle().await;
        assert!(busy_sim.is_flushing());

        let segments: Vec<_> = (0..4).map(segment).collect();
        let (turns_before, files_before) = commit_pipeline::counts();
        // Meanwhile one produce request to four partitions: four appends, four acks=all
        // waiters, their bytes written while the busy partition's turn runs.
        let waiters: Vec<_> = segments
            .iter()
            .map(|(_, a)| {
                let end = a.append(&[7u8; 700], 1);
                wait_durable(a, end)
            })
            .collect();
        settle().await;
        assert!(segments.iter().all(|(sim, _)| sim.flushes() == 0));
        assert!(
            waiters.iter().all(|w| !w.get()),
            "not durable before a flush"
        );

        busy_sim.limit_flushes(None);
        settle().await;
        assert!(busy_waiter.get());
        assert!(waiters.iter().all(|w| w.get()), "every waiter is released");
        let (turns, files) = commit_pipeline::counts();
        assert_eq!(
            (turns - turns_before, files - files_before),
            (1, 4),
            "the four segments' flushes went out in one turn"
        );
        for (sim, a) in &segments {
            assert_eq!(sim.flushes(), 1, "one flush per segment");
            assert_eq!(a.durable_offset(), 1);
        }
    });
}

#[test]
fn a_waiter_is_released_by_the_first_flush_that_started_after_its_bytes_were_written() {
    run(async {
        let (sim, a) = segment(1);
        let (other_sim, other) = segment(2);
        sim.limit_flushes(Some(0));
        let first_end = a.append(&[1u8; 600], 1);
        let first = wait_durable(&a, first_end);
        settle().await;
        assert!(sim.is_flushing(), "the first turn's flush is in flight");
        assert!(!first.get());

        // More data arrives while that flush runs: it is written at once (the next turn's
        // writes overlap this turn's flush) but cannot be covered by the running flush.
        let second_end = a.append(&[2u8; 900], 2);
        let second = wait_durable(&a, second_end);
        let other_end = other.append(&[3u8; 300], 1);
        let third = wait_durable(&other, other_end);
        settle().await;
        assert_eq!(a.written_pos(), second_end, "written while the flush ran");
        assert_eq!(other.written_pos(), other_end);
        assert!(!first.get() && !second.get() && !third.get());
        assert_eq!(
            other_sim.flushes(),
            0,
            "the other segment waits for the next turn"
        );

        sim.limit_flushes(None);
        // Completes the first turn; the second starts at once with both segments.
        settle().await;
        assert!(first.get(), "released when its flush completed");
        assert!(second.get() && third.get(), "released by the next turn");
        assert_eq!(sim.flushes(), 2, "one flush per turn for the busy segment");
        assert_eq!(other_sim.flushes(), 1);
        assert_eq!(a.durable_offset(), 2, "everything is durable");
    });
}

#[test]
fn a_turn_covers_only_what_was_written_when_it_started() {
    run(async {
        let (sim, a) = segment(3);
        sim.limit_flushes(Some(0));
        let first_end = a.append(&[1u8; 600], 1);
        let first = wait_durable(&a, first_end);
        settle().await;
        let second_end = a.append(&[2u8; 600], 2);
        let second = wait_durable(&a, second_end);
        settle().await;
        // Let only the first turn's flush complete; the second turn's stays in flight.
        sim.limit_flushes(Some(1));
        settle().await;
        assert!(first.get());
        assert!(sim.is_flushing(), "the second turn started at once");
        assert_eq!(
            a.durable_offset(),
            1,
            "the first turn made only its bytes durable"
        );
        assert!(
            !second.get(),
            "not released by a flush that started before its write"
        );
        sim.limit_flushes(None);
        settle().await;
        assert!(second.get());
        assert_eq!(a.durable_offset(), 2);
    });
}
