//! A persistent pool of std threads implementing [`Executor`] for the host.
//!
//! The caller takes part in every job. Tasks are claimed from one atomic
//! word holding (job generation << 32 | next index), so a worker that wakes
//! late can never claim a task of a newer job with an older closure.
//!
//! A forward pass runs a hundred or so short jobs per token, so waking
//! sleeping threads for each would cost more than the work: workers spin on
//! the published generation for a while (`SPIN`) before they sleep, the
//! caller spins for the last tasks before it sleeps, and the condition
//! variables are only signalled when someone actually sleeps on them.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kernels::exec::Executor;

/// How long an idle thread polls before it sleeps.
const SPIN: Duration = Duration::from_micros(200);

/// The closure of the running job, with its lifetime erased.
#[derive(Clone, Copy)]
struct JobPtr(*const (dyn Fn(usize) + Sync + 'static));
// SAFETY: the pointee is Sync (it is `dyn Fn + Sync`), and the pointer is only
// dereferenced while `run` keeps the closure alive (see `run`).
unsafe impl Send for JobPtr {}

struct State {
    gen: u32,
    job: Option<JobPtr>,
    n_tasks: usize,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// `state.gen`, readable without the lock (for spinning workers).
    gen: AtomicU32,
    shutdown: AtomicBool,
    /// Workers waiting on `wake`.
    sleepers: AtomicUsize,
    /// (generation << 32) | next task index
    claim: AtomicU64,
    done: AtomicUsize,
    done_lock: Mutex<()>,
    all_done: Condvar,
    /// The caller is (about to be) waiting on `all_done`.
    caller_waiting: AtomicBool,
}

/// A fixed set of worker threads.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    n_threads: usize,
    /// Serialises callers of `run` (one job at a time).
    busy: Mutex<()>,
}

impl ThreadPool {
    /// A pool using `n_threads` cores in all (the caller plus n_threads - 1 workers).
    ///
    /// # Panics
    /// When a worker thread cannot be started; [`ThreadPool::try_new`] returns that as an error.
    pub fn new(n_threads: usize) -> Self {
        match Self::try_new(n_threads) {
            Ok(p) => p,
            Err(e) => panic!("spawning a worker thread: {e}"),
        }
    }

    /// [`ThreadPool::new`], or an error naming the thread that could not be
    /// started (the workers started before it are stopped and joined).
    pub fn try_new(n_threads: usize) -> std::io::Result<Self> {
        Self::build(n_threads, &mut |name, body| std::thread::Builder::new().name(name).spawn(body))
    }

    /// The pool, its workers started by `spawn(name, body)`.
    fn build(n_threads: usize, spawn: &mut Spawner<'_>) -> std::io::Result<Self> {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State { gen: 0, job: None, n_tasks: 0, shutdown: false }),
            wake: Condvar::new(),
            gen: AtomicU32::new(0),
            shutdown: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            claim: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            done_lock: Mutex::new(()),
            all_done: Condvar::new(),
            caller_waiting: AtomicBool::new(false),
        });
        // Dropping the pool on an error stops the workers already started.
        let mut pool = ThreadPool { shared, workers: Vec::new(), n_threads, busy: Mutex::new(()) };
        for i in 1..n_threads {
            let s = Arc::clone(&pool.shared);
            let handle = spawn(format!("lbm-worker-{i}"), Box::new(move || worker(&s))).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot start worker thread {i} of {} (use fewer threads): {e}", n_threads - 1),
                )
            })?;
            pool.workers.push(handle);
        }
        Ok(pool)
    }
}

/// Starts a named thread running a body.
type Spawner<'a> = dyn FnMut(String, Box<dyn FnOnce() + Send>) -> std::io::Result<JoinHandle<()>> + 'a;

/// Polls `done` for `SPIN`; true when it returned true.
fn spin_until(done: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    let mut k = 0u32;
    loop {
        if done() {
            return true;
        }
        std::hint::spin_loop();
        k = k.wrapping_add(1);
        if k.is_multiple_of(256) && start.elapsed() > SPIN {
            return false;
        }
    }
}

/// Claims and runs tasks of generation `gen` until none are left.
fn work(s: &Shared, gen: u32, job: JobPtr, n_tasks: usize) {
    loop {
        let cur = s.claim.load(Ordering::Acquire);
        if (cur >> 32) as u32 != gen || (cur & 0xffff_ffff) as usize >= n_tasks {
            return;
        }
        if s.claim.compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire).is_err() {
            continue;
        }
        let i = (cur & 0xffff_ffff) as usize;
        // SAFETY: we claimed index i < n_tasks of generation `gen`, so `run`
        // for that generation has not returned yet (it waits until `done`
        // reaches n_tasks, which needs this task), and the closure is alive.
        let f = unsafe { &*job.0 };
        f(i);
        if s.done.fetch_add(1, Ordering::SeqCst) + 1 == n_tasks && s.caller_waiting.load(Ordering::SeqCst) {
            // The caller set `caller_waiting` before its last look at `done`
            // (both under `done_lock`), so it is waiting or about to: taking
            // the lock makes sure it is waiting before we signal.
            let _g = s.done_lock.lock().unwrap_or_else(|e| e.into_inner());
            s.all_done.notify_all();
        }
    }
}

fn worker(s: &Shared) {
    let mut seen = 0u32;
    loop {
        spin_until(|| s.gen.load(Ordering::Acquire) != seen || s.shutdown.load(Ordering::Relaxed));
        let (gen, job, n) = {
            let mut st = s.state.lock().unwrap_or_else(|e| e.into_inner());
            while st.gen == seen && !st.shutdown {
                // Counted under the lock: `run` reads it under the same lock.
                s.sleepers.fetch_add(1, Ordering::SeqCst);
                st = s.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                s.sleepers.fetch_sub(1, Ordering::SeqCst);
            }
            if st.shutdown {
                return;
            }
            seen = st.gen;
            match st.job {
                Some(j) => (st.gen, j, st.n_tasks),
                None => continue,
            }
        };
        work(s, gen, job, n);
    }
}

impl Executor for ThreadPool {
    fn n_threads(&self) -> usize {
        self.n_threads
    }

    fn run(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        if n_tasks == 0 {
            return;
        }
        if self.n_threads == 1 || n_tasks == 1 {
            (0..n_tasks).for_each(f);
            return;
        }
        let _one_at_a_time = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        // SAFETY: only the lifetime is erased; the pointer is used by workers
        // only for tasks of this generation, all of which finish before this
        // function returns (we wait for done == n_tasks below).
        let job = JobPtr(unsafe {
            std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const (dyn Fn(usize) + Sync + 'static)>(f)
        });
        let gen = {
            let mut st = s.state.lock().unwrap_or_else(|e| e.into_inner());
            st.gen = st.gen.wrapping_add(1);
            st.job = Some(job);
            st.n_tasks = n_tasks;
            s.done.store(0, Ordering::SeqCst);
            s.claim.store(u64::from(st.gen) << 32, Ordering::Release);
            s.gen.store(st.gen, Ordering::Release);
            // A worker increments `sleepers` under this lock before it waits,
            // so a sleeping worker is always seen here.
            if s.sleepers.load(Ordering::SeqCst) > 0 {
                s.wake.notify_all();
            }
            st.gen
        };
        work(s, gen, job, n_tasks);
        if !spin_until(|| s.done.load(Ordering::Acquire) >= n_tasks) {
            let mut g = s.done_lock.lock().unwrap_or_else(|e| e.into_inner());
            s.caller_waiting.store(true, Ordering::SeqCst);
            while s.done.load(Ordering::SeqCst) < n_tasks {
                g = s.all_done.wait(g).unwrap_or_else(|e| e.into_inner());
            }
            s.caller_waiting.store(false, Ordering::SeqCst);
            drop(g);
        }
        s.state.lock().unwrap_or_else(|e| e.into_inner()).job = None;
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner()).shutdown = true;
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.wake.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn a_failed_spawn_is_an_error_and_stops_the_workers_already_started() {
        let exited = Arc::new(AtomicUsize::new(0));
        let mut started = 0;
        let mut spawn = |name: String, body: Box<dyn FnOnce() + Send>| {
            if started == 2 {
                return Err(std::io::Error::new(std::io::ErrorKind::WouldBlock, "no more threads"));
            }
            started += 1;
            let exited = Arc::clone(&exited);
            std::thread::Builder::new().name(name).spawn(move || {
                body();
                exited.fetch_add(1, Ordering::SeqCst);
            })
        };
        let err = match ThreadPool::build(5, &mut spawn) {
            Ok(_) => panic!("the third worker could not start, yet the pool was built"),
            Err(e) => e,
        };
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
        let msg = err.to_string();
        assert!(msg.contains("worker thread 3 of 4") && msg.contains("no more threads"), "{msg}");
        // The two workers that did start were told to stop and joined.
        assert_eq!(exited.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn try_new_builds_a_working_pool() {
        let pool = ThreadPool::try_new(3).unwrap();
        assert_eq!(pool.n_threads(), 3);
        let hits: Vec<AtomicU32> = (0..50).map(|_| AtomicU32::new(0)).collect();
        pool.run(50, &|i| {
            hits[i].fetch_add(1, Ordering::Relaxed);
        });
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        assert_eq!(ThreadPool::try_new(0).unwrap().n_threads(), 1);
    }

    #[test]
    fn every_task_runs_exactly_once_across_many_jobs() {
        let pool = ThreadPool::new(4);
        for n in [1usize, 2, 3, 7, 64, 1000] {
            for _ in 0..50 {
                let hits: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
                pool.run(n, &|i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "n={n}");
            }
        }
    }

    #[test]
    fn jobs_complete_when_threads_have_gone_to_sleep() {
        // Idle gaps longer than the spin make workers sleep; slow tasks make
        // the caller sleep waiting for them. Every job must still finish.
        let pool = ThreadPool::new(3);
        for round in 0..20 {
            let hits: Vec<AtomicU32> = (0..8).map(|_| AtomicU32::new(0)).collect();
            pool.run(8, &|i| {
                if round % 2 == 0 && i == 7 {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "round {round}");
            if round % 3 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }

    #[test]
    fn matvec_results_do_not_depend_on_thread_count() {
        let (rows, cols) = (517, 64);
        let w: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        let x: Vec<f32> = (0..cols).map(|i| i as f32 / cols as f32).collect();
        let mut xq = kernels::ops::ActScratch::new(cols, 1);
        let mut a = vec![0.0; rows];
        let mut b = vec![0.0; rows];
        kernels::ops::matvec(&kernels::exec::Serial, kernels::ops::Weights::F32(&w), cols, &x, &mut xq, &mut a);
        kernels::ops::matvec(&ThreadPool::new(3), kernels::ops::Weights::F32(&w), cols, &x, &mut xq, &mut b);
        assert_eq!(a, b);
    }
}
