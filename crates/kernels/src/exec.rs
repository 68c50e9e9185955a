//! The executor: a parallel-for that the model calls for rows or heads.
//! The host implements it with a thread pool, the UEFI app with MP services;
//! threads never leak into the model code.

/// Runs `f(i)` for every `i` in `0..n_tasks`, possibly on several cores, and
/// returns when all calls have returned. Implementations must call `f` exactly
/// once per index; the order is unspecified.
pub trait Executor: Sync {
    /// How many cores take part (1 for [`Serial`]).
    fn n_threads(&self) -> usize;
    /// The parallel-for.
    fn run(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync));
}

/// Runs everything on the calling core.
#[derive(Debug, Default, Clone, Copy)]
pub struct Serial;

impl Executor for Serial {
    fn n_threads(&self) -> usize {
        1
    }
    fn run(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        for i in 0..n_tasks {
            f(i);
        }
    }
}
