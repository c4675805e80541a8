//! An in-memory segment file that fails the way disks do, driven by a seed.
//!
//! What it models:
//! - **completion order**: every write and flush yields to the executor a seeded number of
//!   times before it takes effect, so concurrent operations complete in any order;
//! - **durability**: a flush makes durable exactly the writes completed before it started;
//!   [`SimFile::power_cut`] returns what a restart would find: the durable image plus, sector
//!   by sector, an arbitrary (seeded) subset of what was written since — torn and lost writes;
//! - **faults**, each on the Nth operation of its kind: EIO on a write or a flush, ENOSPC on a
//!   write or a pre-allocation (or whenever a capacity is exceeded), and short writes.
//!
//! It also watches every write, so a test can check that acknowledged bytes are never
//! rewritten and that no two writes to one range are ever in flight at once.

use std::cell::{Cell, RefCell};
use std::io;

use super::FileError;
pub(crate) use crate::util::rng::Rng;

/// Sector size: the unit a power cut keeps or loses.
pub(crate) const SECTOR_BYTES: usize = 512;

/// Which operation fails, counted from 1 for each kind (0 = never).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Faults {
    /// The Nth write fails with EIO (and may have written any of its sectors).
    pub eio_write: u32,
    /// The Nth flush fails with EIO (and may have made any pending sector durable).
    pub eio_flush: u32,
    /// The Nth write fails with ENOSPC, writing nothing.
    pub enospc_write: u32,
    /// The Nth pre-allocation fails with ENOSPC.
    pub enospc_allocate: u32,
    /// The Nth write writes only part of its buffer (whole sectors) and reports it.
    pub short_write: u32,
}

/// One completed write not yet made durable.
#[derive(Debug, Clone)]
struct Pending {
    pos: u64,
    bytes: Vec<u8>,
}

#[derive(Debug)]
struct State {
    rng: Rng,
    /// What reads see (every completed write).
    current: Vec<u8>,
    /// What survives a power cut for certain.
    durable: Vec<u8>,
    /// Completed writes since the last flush, in completion order.
    pending: Vec<Pending>,
    /// Bytes reserved by pre-allocation.
    allocated: u64,
    writes: u32,
    flushes: u32,
    allocations: u32,
    /// Byte ranges of writes submitted and not completed: never two overlapping.
    in_flight: Vec<(u64, u64)>,
    /// A write overlapped one in flight (a bug in the caller).
    overlap: Option<String>,
    /// A flush is in flight.
    flushing: bool,
    /// No write may start below this position (bytes the caller has acknowledged).
    floor: u64,
    /// A write started below `floor` (a rewrite of acknowledged bytes).
    rewrite: Option<String>,
}

/// The simulated file.
#[derive(Debug)]
pub(crate) struct SimFile {
    state: RefCell<State>,
    faults: Faults,
    /// Writes fail with ENOSPC once `allocated` would exceed this (0 = unlimited).
    capacity: Cell<u64>,
    /// How many more flushes may complete (None: all); the others wait in flight (a slow
    /// device, for pipeline tests).
    flush_permits: Cell<Option<u32>>,
    /// Yields every operation takes at least (a device that never answers synchronously).
    min_yields: Cell<u64>,
}

fn eio() -> FileError {
    FileError::Failed(io::Error::from_raw_os_error(libc::EIO))
}

fn enospc() -> FileError {
    FileError::NoSpace(io::Error::from_raw_os_error(libc::ENOSPC))
}

fn put(image: &mut Vec<u8>, pos: usize, bytes: &[u8]) {
    if image.len() < pos + bytes.len() {
        image.resize(pos + bytes.len(), 0);
    }
    image[pos..pos + bytes.len()].copy_from_slice(bytes);
}

impl SimFile {
    /// An empty file whose randomness comes from `seed`.
    pub(crate) fn new(seed: u64, faults: Faults) -> SimFile {
        SimFile {
            state: RefCell::new(State {
                rng: Rng::new(seed),
                current: Vec::new(),
                durable: Vec::new(),
                pending: Vec::new(),
                allocated: 0,
                writes: 0,
                flushes: 0,
                allocations: 0,
                in_flight: Vec::new(),
                overlap: None,
                flushing: false,
                floor: 0,
                rewrite: None,
            }),
            faults,
            capacity: Cell::new(0),
            flush_permits: Cell::new(None),
            min_yields: Cell::new(0),
        }
    }

    /// Limits the space the file may use (0 = unlimited): the disk filling up or being freed.
    pub(crate) fn set_capacity(&self, bytes: u64) {
        self.capacity.set(bytes);
    }

    fn out_of_space(&self, end: u64) -> bool {
        let cap = self.capacity.get();
        cap != 0 && end > cap
    }

    async fn settle(&self) {
        let yields = self.min_yields.get() + self.state.borrow_mut().rng.below(4);
        for _ in 0..yields {
            yield_now().await;
        }
    }

    pub(super) async fn write_at(&self, bytes: &[u8], pos: u64) -> Result<usize, FileError> {
        let range = (pos, pos + bytes.len() as u64);
        let n = {
            let mut st = self.state.borrow_mut();
            st.writes += 1;
            if let Some(other) = st
                .in_flight
                .iter()
                .find(|(a, b)| range.0 < *b && *a < range.1)
            {
                st.overlap = Some(format!(
                    "write {range:?} submitted while {other:?} was in flight"
                ));
            }
            st.in_flight.push(range);
            if pos < st.floor && st.rewrite.is_none() {
                st.rewrite = Some(format!(
                    "write at {pos} (len {}) below the acknowledged floor {}",
                    bytes.len(),
                    st.floor
                ));
            }
            st.writes
        };
        self.settle().await;
        let mut st = self.state.borrow_mut();
        if let Some(i) = st.in_flight.iter().position(|r| *r == range) {
            st.in_flight.swap_remove(i);
        }
        if n == self.faults.enospc_write || self.out_of_space(range.1.max(st.allocated)) {
            return Err(enospc());
        }
        let mut len = bytes.len();
        if n == self.faults.short_write && len > SECTOR_BYTES {
            len = (st.rng.below((len / SECTOR_BYTES) as u64) as usize).max(1) * SECTOR_BYTES;
        }
        if n == self.faults.eio_write {
            // Any prefix of whole sectors may have reached the medium.
            len = st.rng.below((len / SECTOR_BYTES) as u64 + 1) as usize * SECTOR_BYTES;
        }
        put(&mut st.current, pos as usize, &bytes[..len]);
        st.pending.push(Pending {
            pos,
            bytes: bytes[..len].to_vec(),
        });
        if n == self.faults.eio_write {
            return Err(eio());
        }
        Ok(len)
    }

    pub(super) async fn fdatasync(&self) -> Result<(), FileError> {
        let (n, covered) = {
            let mut st = self.state.borrow_mut();
            st.flushes += 1;
            if st.flushing && st.overlap.is_none() {
                st.overlap = Some("two flushes in flight at once".to_string());
            }
            st.flushing = true;
            (st.flushes, st.pending.len())
        };
        self.settle().await;
        loop {
            match self.flush_permits.get() {
                None => break,
                Some(n) if n > 0 => {
                    self.flush_permits.set(Some(n - 1));
                    break;
                }
                Some(_) => yield_now().await,
            }
        }
        let mut st = self.state.borrow_mut();
        st.flushing = false;
        let covered = covered.min(st.pending.len());
        let covered: Vec<Pending> = st.pending.drain(..covered).collect();
        if n == self.faults.eio_flush {
            // Some sectors made it, some did not; they stay unknown (back to pending).
            let mut back = covered;
            back.append(&mut st.pending);
            st.pending = back;
            return Err(eio());
        }
        for p in covered {
            put(&mut st.durable, p.pos as usize, &p.bytes);
        }
        Ok(())
    }

    pub(super) fn pre_allocate(&self, size: u64) -> Result<(), FileError> {
        let mut st = self.state.borrow_mut();
        st.allocations += 1;
        if st.allocations == self.faults.enospc_allocate || self.out_of_space(size) {
            return Err(enospc());
        }
        st.allocated = st.allocated.max(size);
        Ok(())
    }

    /// Reads what a read would see now (zeros beyond the data).
    pub(crate) fn read(&self, pos: u64, len: usize) -> Vec<u8> {
        let st = self.state.borrow();
        let pos = pos as usize;
        let end = (pos + len).min(st.current.len());
        if pos >= end {
            return Vec::new();
        }
        st.current[pos..end].to_vec()
    }

    /// What a restart after a power cut now would find: the durable image plus a seeded
    /// subset of the sectors written since the last flush (later writes over earlier ones).
    pub(crate) fn power_cut(&self) -> Vec<u8> {
        let mut st = self.state.borrow_mut();
        let mut image = st.durable.clone();
        let pending = st.pending.clone();
        for p in pending {
            for (i, sector) in p.bytes.chunks(SECTOR_BYTES).enumerate() {
                if st.rng.chance(1, 2) {
                    put(&mut image, p.pos as usize + i * SECTOR_BYTES, sector);
                }
            }
        }
        image
    }

    /// Declares every byte below `pos` acknowledged: a write starting below it is recorded
    /// as a rewrite (see [`SimFile::rewrite`]).
    pub(crate) fn set_floor(&self, pos: u64) {
        let mut st = self.state.borrow_mut();
        st.floor = st.floor.max(pos);
    }

    /// A description of the first write that started below the floor, if any.
    pub(crate) fn rewrite(&self) -> Option<String> {
        self.state.borrow().rewrite.clone()
    }

    /// Makes every operation yield at least `yields` times before it completes, as a real
    /// device's completion arrives only after the executor's current tasks ran.
    pub(crate) fn set_min_yields(&self, yields: u64) {
        self.min_yields.set(yields);
    }

    /// Lets only `permits` more flushes complete (None: all); the others stay in flight
    /// until allowed. A device that is slow to flush, so a test can act while one runs.
    pub(crate) fn limit_flushes(&self, permits: Option<u32>) {
        self.flush_permits.set(permits);
    }

    /// Whether a flush is in flight.
    pub(crate) fn is_flushing(&self) -> bool {
        self.state.borrow().flushing
    }

    /// Flushes issued so far.
    pub(crate) fn flushes(&self) -> u32 {
        self.state.borrow().flushes
    }

    /// What is durable for certain (no unflushed sector).
    pub(crate) fn durable_image(&self) -> Vec<u8> {
        self.state.borrow().durable.clone()
    }

    /// A description of the first write submitted over a range still being written, if any.
    pub(crate) fn overlap(&self) -> Option<String> {
        self.state.borrow().overlap.clone()
    }
}

/// Yields once to the executor (so other tasks run before this one continues).
pub(crate) async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}
