//! Idle strategies for threads that poll rings: what a thread does when it
//! found no work.
//!
//! `Spin` keeps the core hot (the lowest latency, one core burnt); `Yield`
//! gives the core to other threads between polls (for machines with too few
//! cores to pin); `Park` backs off from spinning to yielding to short sleeps,
//! for idle partitions where a few tens of microseconds of wake-up latency do
//! not matter. None of them ever blocks forever: every poll loop re-checks its
//! shutdown flag after at most `Park`'s longest sleep.

use std::str::FromStr;
use std::time::Duration;

/// What a polling thread does when a poll found nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleStrategy {
    /// Busy-spin (`spin_loop` hint).
    Spin,
    /// `thread::yield_now` between polls.
    Yield,
    /// Spin, then yield, then sleep up to `max_sleep_us`, doubling.
    Park {
        /// Longest sleep between polls, in microseconds.
        max_sleep_us: u32,
    },
}

impl FromStr for IdleStrategy {
    type Err = engine::UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "spin" => Ok(IdleStrategy::Spin),
            "yield" => Ok(IdleStrategy::Yield),
            "park" => Ok(IdleStrategy::Park { max_sleep_us: 1000 }),
            other => Err(engine::UnknownName::new(
                "idle strategy",
                other,
                "spin, yield or park",
            )),
        }
    }
}

impl std::fmt::Display for IdleStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdleStrategy::Spin => f.write_str("spin"),
            IdleStrategy::Yield => f.write_str("yield"),
            IdleStrategy::Park { .. } => f.write_str("park"),
        }
    }
}

/// Per-thread idle state (the backoff step).
#[derive(Debug)]
pub struct Idler {
    strategy: IdleStrategy,
    step: u32,
}

impl Idler {
    /// A fresh idler.
    pub fn new(strategy: IdleStrategy) -> Self {
        Idler { strategy, step: 0 }
    }

    /// Call after every poll: `worked` resets the backoff.
    #[inline]
    pub fn idle(&mut self, worked: bool) {
        if worked {
            self.step = 0;
            return;
        }
        match self.strategy {
            IdleStrategy::Spin => std::hint::spin_loop(),
            IdleStrategy::Yield => std::thread::yield_now(),
            IdleStrategy::Park { max_sleep_us } => {
                self.step = self.step.saturating_add(1);
                if self.step < 100 {
                    std::hint::spin_loop();
                } else if self.step < 200 {
                    std::thread::yield_now();
                } else {
                    let shift = (self.step - 200).min(16);
                    let us = (1u32 << shift).min(max_sleep_us.max(1));
                    std::thread::sleep(Duration::from_micros(us as u64));
                }
            }
        }
    }
}
