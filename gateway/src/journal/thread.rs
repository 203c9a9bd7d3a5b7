//! `JournalThread`: the journal writer on its own thread, doing adaptive
//! group commit.
//!
//! Loop: take everything pending from the bounded queue (at most
//! `max_batch` records), write it as one block with one write and one
//! fdatasync, then publish the block's last seq in `durable_seq`. While a
//! sync runs, new records pile up in the queue and the next round takes
//! them all: the batch size adapts to the load with no timer.
//!
//! Invariants: `durable_seq` only grows, and only to a seq whose block
//! `append_batch` returned `Ok` for; the queue is bounded (a full queue is
//! back-pressure for the single producer, never a drop); on any journal
//! error the fatal hook runs (by default: print the error and
//! `std::process::abort()`) and nothing is retried.

use super::{JournalError, JournalWriter, Storage};
use crate::record::InputRecord;
use crossbeam::queue::ArrayQueue;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// What to do when the journal fails; must not return to retry.
pub type FatalHook = Box<dyn Fn(&JournalError) + Send>;

/// The default fatal hook: print and abort the process.
pub fn abort_on_error(e: &JournalError) {
    eprintln!("FATAL: journal: {e}; fdatasync is never retried; aborting the process");
    std::process::abort();
}

/// A running journal thread.
#[derive(Debug)]
pub struct JournalThread<S: Storage + 'static> {
    queue: Arc<ArrayQueue<InputRecord>>,
    durable: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<JournalWriter<S>, JournalError>>>,
}

impl<S: Storage + 'static> JournalThread<S> {
    /// Starts the thread with a queue of `capacity` records; aborts the
    /// process on a journal error.
    pub fn spawn(writer: JournalWriter<S>, capacity: usize) -> Self {
        Self::spawn_with(writer, capacity, Box::new(abort_on_error))
    }

    /// Starts the thread with a custom fatal hook (tests): after the hook
    /// returns, the thread stops and `durable_seq` never moves again.
    pub fn spawn_with(writer: JournalWriter<S>, capacity: usize, fatal: FatalHook) -> Self {
        let queue = Arc::new(ArrayQueue::new(capacity.max(1)));
        let durable = Arc::new(AtomicU64::new(writer.last_seq().unwrap_or(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let (q, d, s) = (queue.clone(), durable.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || run(writer, &q, &d, &s, fatal))
            .expect("spawn the journal thread");
        JournalThread {
            queue,
            durable,
            stop,
            handle: Some(handle),
        }
    }

    /// Offers one record (the single producer, in seq order). `Err` gives it
    /// back when the queue is full: back-pressure.
    // The record comes back by value on purpose: no allocation on this path.
    #[allow(clippy::result_large_err)]
    pub fn try_push(&self, rec: InputRecord) -> Result<(), InputRecord> {
        self.queue.push(rec)
    }

    /// Pushes one record, spinning (then yielding) while the queue is full.
    pub fn push(&self, mut rec: InputRecord) {
        let mut spins = 0u32;
        while let Err(r) = self.queue.push(rec) {
            rec = r;
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// The last seq that is durable (per the writer's mode).
    pub fn durable_seq(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// A handle on `durable_seq` for the output stage.
    pub fn durable_handle(&self) -> Arc<AtomicU64> {
        self.durable.clone()
    }

    /// Drains the queue, stops the thread and gives the writer back (or the
    /// error that stopped it).
    pub fn shutdown(mut self) -> Result<JournalWriter<S>, JournalError> {
        self.stop.store(true, Ordering::Release);
        let h = self.handle.take().expect("joined once");
        h.join().expect("journal thread panicked")
    }
}

impl<S: Storage + 'static> Drop for JournalThread<S> {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.stop.store(true, Ordering::Release);
            let _ = h.join();
        }
    }
}

fn run<S: Storage>(
    mut writer: JournalWriter<S>,
    queue: &ArrayQueue<InputRecord>,
    durable: &AtomicU64,
    stop: &AtomicBool,
    fatal: FatalHook,
) -> Result<JournalWriter<S>, JournalError> {
    let max = writer.config().max_batch;
    let mut batch: Vec<InputRecord> = Vec::with_capacity(max);
    let mut idle = 0u32;
    loop {
        while batch.len() < max {
            match queue.pop() {
                Some(r) => batch.push(r),
                None => break,
            }
        }
        if batch.is_empty() {
            if stop.load(Ordering::Acquire) && queue.is_empty() {
                return Ok(writer);
            }
            // Idle: spin, then yield, then nap (waking costs ~25 µs, small
            // beside the ~100 µs fdatasync that follows).
            idle += 1;
            if idle < 128 {
                std::hint::spin_loop();
            } else if idle < 4096 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
            continue;
        }
        idle = 0;
        match writer.append_batch(&batch) {
            Ok(seq) => durable.store(seq, Ordering::Release),
            Err(e) => {
                fatal(&e);
                return Err(e);
            }
        }
        batch.clear();
    }
}
