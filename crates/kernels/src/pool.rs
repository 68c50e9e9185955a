//! A persistent pool of std threads implementing [`Executor`] for the host.
//!
//! The caller takes part in every job. Tasks are claimed from one atomic
//! word holding (job generation << 32 | next index), so a worker that wakes
//! late can never claim a task of a newer job with an older closure.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::exec::Executor;

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
    /// (generation << 32) | next task index
    claim: AtomicU64,
    done: AtomicUsize,
    done_lock: Mutex<()>,
    all_done: Condvar,
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
    pub fn new(n_threads: usize) -> Self {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State { gen: 0, job: None, n_tasks: 0, shutdown: false }),
            wake: Condvar::new(),
            claim: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            done_lock: Mutex::new(()),
            all_done: Condvar::new(),
        });
        let workers = (1..n_threads)
            .map(|i| {
                let s = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("lbm-worker-{i}"))
                    .spawn(move || worker(&s))
                    .expect("spawning a worker thread")
            })
            .collect();
        ThreadPool { shared, workers, n_threads, busy: Mutex::new(()) }
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
        if s.done.fetch_add(1, Ordering::AcqRel) + 1 == n_tasks {
            let _g = s.done_lock.lock().unwrap_or_else(|e| e.into_inner());
            s.all_done.notify_all();
        }
    }
}

fn worker(s: &Shared) {
    let mut seen = 0u32;
    loop {
        let (gen, job, n) = {
            let mut st = s.state.lock().unwrap_or_else(|e| e.into_inner());
            while st.gen == seen && !st.shutdown {
                st = s.wake.wait(st).unwrap_or_else(|e| e.into_inner());
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
        // SAFETY: only the lifetime is erased; the pointer is used by workers
        // only for tasks of this generation, all of which finish before this
        // function returns (we wait for done == n_tasks below).
        let job = JobPtr(unsafe {
            std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const (dyn Fn(usize) + Sync + 'static)>(f)
        });
        let gen = {
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            st.gen = st.gen.wrapping_add(1);
            st.job = Some(job);
            st.n_tasks = n_tasks;
            self.shared.done.store(0, Ordering::Release);
            self.shared.claim.store(u64::from(st.gen) << 32, Ordering::Release);
            self.shared.wake.notify_all();
            st.gen
        };
        work(&self.shared, gen, job, n_tasks);
        let mut g = self.shared.done_lock.lock().unwrap_or_else(|e| e.into_inner());
        while self.shared.done.load(Ordering::Acquire) < n_tasks {
            g = self.shared.all_done.wait(g).unwrap_or_else(|e| e.into_inner());
        }
        drop(g);
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner()).job = None;
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner()).shutdown = true;
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
    fn matvec_results_do_not_depend_on_thread_count() {
        let (rows, cols) = (517, 64);
        let w: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        let x: Vec<f32> = (0..cols).map(|i| i as f32 / cols as f32).collect();
        let mut xq = crate::ops::ActScratch::new(cols, 1);
        let mut a = vec![0.0; rows];
        let mut b = vec![0.0; rows];
        crate::ops::matvec(&crate::exec::Serial, crate::ops::Weights::F32(&w), cols, &x, &mut xq, &mut a);
        crate::ops::matvec(&ThreadPool::new(3), crate::ops::Weights::F32(&w), cols, &x, &mut xq, &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn matmul_of_every_type_is_identical_on_1_2_and_4_threads() {
        let (rows, cols, n) = (301, 512, 7);
        let all = crate::tests::AllTypes::new(31, rows, cols);
        let xs: Vec<f32> = (0..n * cols).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let mut scratch = crate::ops::ActScratch::new(cols, n);
        let pools = [ThreadPool::new(1), ThreadPool::new(2), ThreadPool::new(4)];
        for w in all.views() {
            let outs: Vec<Vec<f32>> = pools
                .iter()
                .map(|p| {
                    let mut out = vec![0.0f32; n * rows];
                    crate::ops::matmul(p, w, cols, &xs, n, &mut scratch, &mut out);
                    out
                })
                .collect();
            for o in &outs[1..] {
                assert!(o.iter().zip(&outs[0]).all(|(a, b)| a.to_bits() == b.to_bits()), "{}", w.type_name());
            }
            let mut mv = vec![0.0f32; rows];
            crate::ops::matvec(&pools[2], w, cols, &xs[..cols], &mut scratch, &mut mv);
            assert!(mv.iter().zip(&outs[0]).all(|(a, b)| a.to_bits() == b.to_bits()), "{} matvec", w.type_name());
        }
    }
}
