//! The thread count of every command's `-t`: at least 1 and at most
//! [`MAX_PER_CORE`] per core of this machine, so that a huge `-t` neither
//! overflows an allocation sized by it nor starts thousands of threads.

use ::host::pool::ThreadPool;
use anyhow::{Context, Result};

/// Threads allowed per core the machine reports.
pub const MAX_PER_CORE: usize = 4;

/// The cores this machine reports (1 when it cannot tell).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The thread count to use for `-t requested` (all cores when not given),
/// clamped to 1..=[`MAX_PER_CORE`] x cores; says so on stderr when clamped.
pub fn count(requested: Option<usize>) -> usize {
    let cores = cores();
    let Some(n) = requested else { return cores };
    let (lo, hi) = (1, cores.saturating_mul(MAX_PER_CORE));
    let used = n.clamp(lo, hi);
    if used != n {
        eprintln!(
            "note: -t {n} is outside 1..={hi} ({MAX_PER_CORE} per core, {cores} cores here): using {used} threads"
        );
    }
    used
}

/// A pool of `n` threads, or an error saying which could not start.
pub fn pool(n: usize) -> Result<ThreadPool> {
    ThreadPool::try_new(n).with_context(|| format!("starting {n} threads"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_clamped_to_the_machine() {
        let c = cores();
        assert_eq!(count(None), c);
        assert_eq!(count(Some(1)), 1);
        assert_eq!(count(Some(0)), 1);
        assert_eq!(count(Some(usize::MAX)), c * MAX_PER_CORE);
        assert_eq!(count(Some(c * MAX_PER_CORE + 1)), c * MAX_PER_CORE);
        assert_eq!(count(Some(c * MAX_PER_CORE)), c * MAX_PER_CORE);
    }
}
