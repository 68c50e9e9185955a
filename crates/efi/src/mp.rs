//! The parallel-for over the firmware's MP services.
//!
//! The application processors (APs) are started with one non-blocking
//! `StartupAllAPs` call on a worker loop: each enables its own AVX state, then
//! spins on a job slot (job pointer, generation, count of workers inside the
//! job, all atomics). A parallel-for then costs no firmware call: the
//! bootstrap processor (BSP) publishes the job, works on it too, and waits
//! for the workers still inside it.
//!
//! A worker idle for [`IDLE_EXIT_SECS`] leaves (so an idle VM does not burn a
//! host core while the user types); the next parallel-for after all have left
//! runs on the BSP alone and starts them again.
//!
//! Workers run on 32 KiB firmware stacks and may not call boot services: the
//! job closures must not use big locals; allocations there go to the
//! allocator's worker arena (see `mem`).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use kernels::exec::{Executor, Serial};
use uefi::boot::{self, EventType, ScopedProtocol, Tpl};
use uefi::proto::pi::mp::MpServices;
use uefi::Event;

use crate::{cpu, mem};

/// Seconds a worker spins without work before it leaves.
pub const IDLE_EXIT_SECS: u64 = 2;

/// One parallel-for.
struct Job {
    /// The closure; really borrowed for the duration of `run` only.
    f: *const (dyn Fn(usize) + Sync),
    n: usize,
    batch: usize,
    next: AtomicUsize,
}

// SAFETY: the closure behind `f` is `Sync`, and the other fields are
// atomics or plain values; sharing a `Job` between cores is what it is for.
unsafe impl Sync for Job {}

/// Generation (high 32 bits) and number of member workers (low 32 bits) in
/// one word, so joining/leaving and publishing a job cannot race.
static SLOT: AtomicU64 = AtomicU64::new(0);
static JOB: AtomicPtr<Job> = AtomicPtr::new(core::ptr::null_mut());
/// Who is working on the current job: generation (high 32 bits), a
/// "closed" bit (bit 31) and the number of workers inside the job (low 31
/// bits). A worker enters only while the job is open and of the generation it
/// saw; the BSP closes the job when it runs out of tasks and waits only for
/// the workers inside. A worker that was late (descheduled by a host, busy in
/// SMM) skips the job instead of holding everyone up.
static ACTIVE: AtomicU64 = AtomicU64::new(0);
const CLOSED: u64 = 1 << 31;
const COUNT_MASK: u64 = CLOSED - 1;

fn active_gen(a: u64) -> u32 {
    (a >> 32) as u32
}

/// Tries to enter job `gen`; false if it is closed or already replaced.
fn enter(gen: u32) -> bool {
    ACTIVE
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |a| {
            (active_gen(a) == gen && a & CLOSED == 0).then_some(a + 1)
        })
        .is_ok()
}

/// Leaves the job entered with [`enter`].
fn exit_job() {
    ACTIVE.fetch_sub(1, Ordering::AcqRel);
}
static TSC_HZ: AtomicU64 = AtomicU64::new(1_000_000_000);

fn gen_of(w: u64) -> u32 {
    (w >> 32) as u32
}
fn members_of(w: u64) -> u32 {
    w as u32
}
fn word(gen: u32, members: u32) -> u64 {
    (u64::from(gen) << 32) | u64::from(members)
}

/// A raw pointer to the closure with its lifetime erased, for the job slot.
fn erase<'a>(f: &'a (dyn Fn(usize) + Sync + 'a)) -> *const (dyn Fn(usize) + Sync + 'static) {
    // SAFETY: only the lifetime bound of a raw pointer changes (same layout);
    // it is dereferenced only while the borrow is alive (see `run`/`work`).
    unsafe { core::mem::transmute::<*const (dyn Fn(usize) + Sync + 'a), *const (dyn Fn(usize) + Sync + 'static)>(f) }
}

/// Runs a job's tasks until none are left.
fn work(job: &Job) {
    loop {
        let start = job.next.fetch_add(job.batch, Ordering::Relaxed);
        if start >= job.n {
            return;
        }
        let end = (start + job.batch).min(job.n);
        // SAFETY: the BSP keeps the closure alive until every member has
        // finished this job (see `MpExecutor::run`).
        let f = unsafe { &*job.f };
        for i in start..end {
            f(i);
        }
    }
}

/// The worker loop every AP runs.
extern "efiapi" fn ap_entry(_arg: *mut c_void) {
    cpu::enable_simd();
    // Join: become a member as of the current generation.
    let mut seen =
        match SLOT.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| Some(word(gen_of(w), members_of(w) + 1))) {
            Ok(w) => gen_of(w),
            Err(_) => return,
        };
    let idle_limit = TSC_HZ.load(Ordering::Relaxed).saturating_mul(IDLE_EXIT_SECS);
    let mut idle_since = cpu::ticks();
    let mut spins = 0u32;
    loop {
        let w = SLOT.load(Ordering::Acquire);
        if gen_of(w) != seen {
            seen = gen_of(w);
            if enter(seen) {
                let job = JOB.load(Ordering::Acquire);
                // SAFETY: the BSP stored the job before opening it (release
                // on ACTIVE, acquire in `enter`) and keeps it alive until no
                // worker is inside; we are inside until `exit_job`.
                work(unsafe { &*job });
                exit_job();
            }
            idle_since = cpu::ticks();
            spins = 0;
            continue;
        }
        core::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(1024) && cpu::ticks().wrapping_sub(idle_since) > idle_limit {
            // Leave, unless a job was published meanwhile (then the CAS fails
            // and we take part in it).
            let leave = word(seen, members_of(w).saturating_sub(1));
            if SLOT.compare_exchange(w, leave, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Panics on workers: the message is kept here and the BSP reports it.

static AP_PANICKED: AtomicBool = AtomicBool::new(false);
static AP_MSG_LOCK: AtomicBool = AtomicBool::new(false);
static AP_MSG_LEN: AtomicUsize = AtomicUsize::new(0);
const AP_MSG_CAP: usize = 256;
static AP_MSG: [AtomicU8; AP_MSG_CAP] = [const { AtomicU8::new(0) }; AP_MSG_CAP];

struct MsgWriter {
    len: usize,
}

impl core::fmt::Write for MsgWriter {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for &b in s.as_bytes() {
            if self.len >= AP_MSG_CAP {
                break;
            }
            AP_MSG[self.len].store(b, Ordering::Relaxed);
            self.len += 1;
        }
        Ok(())
    }
}

/// Records a panic on a worker core and parks the core for good. The BSP
/// notices in its wait loop and reports it.
pub fn ap_panicked(info: &core::panic::PanicInfo) -> ! {
    if AP_MSG_LOCK.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok() {
        let mut w = MsgWriter { len: 0 };
        let _ = core::fmt::write(&mut w, format_args!("{info}"));
        AP_MSG_LEN.store(w.len, Ordering::Release);
        AP_PANICKED.store(true, Ordering::Release);
    }
    loop {
        core::hint::spin_loop();
    }
}

fn ap_panic_message() -> String {
    let len = AP_MSG_LEN.load(Ordering::Acquire).min(AP_MSG_CAP);
    let bytes: Vec<u8> = AP_MSG[..len].iter().map(|b| b.load(Ordering::Relaxed)).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

// ---------------------------------------------------------------------------

/// The MP executor (BSP + worker APs).
pub struct MpExecutor {
    /// APs the firmware reports enabled.
    aps: usize,
    /// A parallel-for is in progress (nested or concurrent calls run serially).
    busy: AtomicBool,
    mp: ScopedProtocol<MpServices>,
    /// Signalled by the firmware when all workers have left.
    event: Event,
}

// SAFETY: `mp` and `event` are only used on the BSP (`run` checks
// `cpu::on_bsp()` before touching them, and `busy` keeps calls exclusive);
// everything else is atomics.
unsafe impl Sync for MpExecutor {}

/// Why the executor is serial.
pub enum Exec {
    Mp(MpExecutor),
    Serial(Serial),
}

impl Exec {
    /// A human-readable line for the banner.
    pub fn describe(&self) -> String {
        match self {
            Exec::Mp(m) => format!(
                "{} (bootstrap + {} of {} workers running)",
                m.aps + 1,
                members_of(SLOT.load(Ordering::Acquire)),
                m.aps
            ),
            Exec::Serial(_) => String::from("1 core"),
        }
    }
}

impl Executor for Exec {
    fn n_threads(&self) -> usize {
        match self {
            Exec::Mp(m) => m.n_threads(),
            Exec::Serial(s) => s.n_threads(),
        }
    }
    fn run(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        match self {
            Exec::Mp(m) => m.run(n_tasks, f),
            Exec::Serial(s) => s.run(n_tasks, f),
        }
    }
}

/// Starts the worker cores. `Err` says why the app runs on one core.
pub fn start(tsc_hz: u64) -> Result<MpExecutor, String> {
    let handle =
        boot::get_handle_for_protocol::<MpServices>().map_err(|_| String::from("no MP services in this firmware"))?;
    let mp = boot::open_protocol_exclusive::<MpServices>(handle)
        .map_err(|e| format!("cannot open MP services: {:?}", e.status()))?;
    let count =
        mp.get_number_of_processors().map_err(|e| format!("MP services: cannot count processors: {:?}", e.status()))?;
    if count.enabled <= 1 {
        return Err(String::from("one processor"));
    }
    let aps = count.enabled - 1;
    mem::init_ap_arena()?;
    TSC_HZ.store(tsc_hz.max(1), Ordering::Relaxed);
    cpu::mark_multicore();
    // SAFETY: a plain event (no notification function), only signalled by
    // the MP driver and checked by us.
    let event = unsafe { boot::create_event(EventType::empty(), Tpl::CALLBACK, None, None) }
        .map_err(|e| format!("cannot create an event: {:?}", e.status()))?;
    let ex = MpExecutor { aps, busy: AtomicBool::new(false), mp, event };
    ex.launch().map_err(|e| format!("cannot start the worker cores: {e}"))?;
    // Give the workers a moment to join (they normally need well under 100 ms).
    let t0 = cpu::ticks();
    let limit = tsc_hz.max(1);
    while (members_of(SLOT.load(Ordering::Acquire)) as usize) < aps && cpu::ticks().wrapping_sub(t0) < limit {
        boot::stall(core::time::Duration::from_micros(500));
    }
    // Workers that are late join when they arrive: the executor works with
    // whoever is there.
    Ok(ex)
}

impl MpExecutor {
    /// One non-blocking StartupAllAPs on the worker loop.
    fn launch(&self) -> Result<(), String> {
        // SAFETY: `unsafe_clone` makes a second handle to our event; the
        // firmware only signals it, and we never close it.
        let ev = unsafe { self.event.unsafe_clone() };
        self.mp
            .startup_all_aps(false, ap_entry, core::ptr::null_mut(), Some(ev), None)
            .map_err(|e| format!("{:?}", e.status()))
    }

    /// If all workers have left and the firmware has noticed, starts them
    /// again (they join for the next parallel-for).
    fn relaunch_if_idle(&self) {
        if let Ok(true) = boot::check_event(&self.event) {
            if self.launch().is_err() {
                // Try again on a later call.
                let _ = boot::signal_event(&self.event);
            }
        }
    }

    fn n_threads(&self) -> usize {
        self.aps + 1
    }

    fn run(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        if n_tasks == 0 {
            return;
        }
        if n_tasks == 1 || !cpu::on_bsp() || self.busy.swap(true, Ordering::Acquire) {
            return Serial.run(n_tasks, f);
        }
        // Store and open the job, then publish its generation.
        let threads = self.aps + 1;
        let job = Job {
            // The closure outlives every use: this function waits until no
            // worker is inside the job before returning.
            f: erase(f),
            n: n_tasks,
            batch: (n_tasks / (threads * 4)).max(1),
            next: AtomicUsize::new(0),
        };
        let gen = gen_of(SLOT.load(Ordering::Acquire)).wrapping_add(1);
        JOB.store(&job as *const Job as *mut Job, Ordering::Release);
        ACTIVE.store(u64::from(gen) << 32, Ordering::Release);
        let published = SLOT.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
            if members_of(w) == 0 {
                None
            } else {
                Some(word(gen, members_of(w)))
            }
        });
        match published {
            Ok(_) => {}
            Err(_) => {
                // Nobody is there: run here, and bring the workers back.
                Serial.run(n_tasks, f);
                self.relaunch_if_idle();
                self.busy.store(false, Ordering::Release);
                return;
            }
        };
        work(&job);
        // No tasks left to hand out: close the job, wait for those inside.
        ACTIVE.fetch_or(CLOSED, Ordering::AcqRel);
        while ACTIVE.load(Ordering::Acquire) & COUNT_MASK != 0 {
            if AP_PANICKED.load(Ordering::Acquire) {
                panic!("a worker core panicked: {}", ap_panic_message());
            }
            core::hint::spin_loop();
        }
        JOB.store(core::ptr::null_mut(), Ordering::Release);
        self.busy.store(false, Ordering::Release);
    }
}

/// Runs a parallel-for of `n` tasks and checks that each index ran exactly
/// once; returns how many ran on worker cores.
pub fn selftest(exec: &dyn Executor, n: usize) -> Result<usize, String> {
    let hits: Vec<AtomicU8> = (0..n).map(|_| AtomicU8::new(0)).collect();
    let on_workers = AtomicUsize::new(0);
    exec.run(n, &|i| {
        hits[i].fetch_add(1, Ordering::Relaxed);
        if !cpu::on_bsp() {
            on_workers.fetch_add(1, Ordering::Relaxed);
        }
        // A little work per task so the workers get a share.
        let mut x = i as u64;
        for _ in 0..200 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        }
        core::hint::black_box(x);
    });
    let bad: Vec<usize> = (0..n).filter(|&i| hits[i].load(Ordering::Relaxed) != 1).take(5).collect();
    if !bad.is_empty() {
        return Err(format!(
            "parallel-for self-test failed: index {} ran {} times",
            bad[0],
            hits[bad[0]].load(Ordering::Relaxed)
        ));
    }
    Ok(on_workers.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_word_packs() {
        let w = word(7, 3);
        assert_eq!(gen_of(w), 7);
        assert_eq!(members_of(w), 3);
        assert_eq!(gen_of(word(u32::MAX, 0).wrapping_add(0)), u32::MAX);
    }

    #[test]
    fn work_runs_each_index_once() {
        let hits: Vec<AtomicU8> = (0..1000).map(|_| AtomicU8::new(0)).collect();
        let f = |i: usize| {
            hits[i].fetch_add(1, Ordering::Relaxed);
        };
        let job = Job { f: erase(&f), n: 1000, batch: 7, next: AtomicUsize::new(0) };
        // Two "cores" sharing the job.
        std::thread::scope(|s| {
            s.spawn(|| work(&job));
            work(&job);
        });
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
    }

    #[test]
    fn job_entry_and_closing() {
        ACTIVE.store(5u64 << 32, Ordering::SeqCst);
        assert!(enter(5));
        assert!(!enter(4), "a stale generation must not enter");
        assert!(enter(5));
        ACTIVE.fetch_or(CLOSED, Ordering::SeqCst);
        assert!(!enter(5), "a closed job must not be entered");
        assert_eq!(ACTIVE.load(Ordering::SeqCst) & COUNT_MASK, 2);
        exit_job();
        exit_job();
        assert_eq!(ACTIVE.load(Ordering::SeqCst) & COUNT_MASK, 0);
    }

    #[test]
    fn selftest_serial() {
        assert_eq!(selftest(&Serial, 500), Ok(0));
    }
}
