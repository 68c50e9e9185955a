//! [`Vm`]: a running QEMU with its serial console on pipes, for programs and
//! tests that drive the guest.
//!
//! ```ignore
//! let mut vm = qemu::Vm::boot(&image)?;
//! vm.expect("Pick a model", Duration::from_secs(60))?;
//! vm.send_line("1")?;
//! let reply = vm.expect("> ", Duration::from_secs(120))?;
//! ```
//!
//! A reader thread collects everything the guest prints into a shared buffer,
//! raw and also with ANSI escape sequences, carriage returns and NULs removed
//! (so matching sees plain text lines ending in `\n`), and echoes it to stderr
//! prefixed `[vm] ` (the test harness shows it when a test fails). Every VM
//! has a global deadline: a watchdog thread kills QEMU when it passes,
//! whatever the caller is doing, and dropping the `Vm` kills QEMU too, so a
//! caller can never leave one running.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, ExitStatus};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};

use crate::{command, Disk, Exit, Ovmf, Serial, VmConfig};

/// Delay between characters sent by `send_line`: OVMF's ConIn takes about
/// 100 characters a second from the serial port and drops the excess.
pub const CHAR_DELAY: Duration = Duration::from_millis(15);

/// One exclusive VM at a time in this process (see [`VmConfig::exclusive`]).
struct Turn;

static TURN_TAKEN: Mutex<bool> = Mutex::new(false);
static TURN_FREED: Condvar = Condvar::new();

impl Turn {
    fn take() -> Turn {
        let mut taken = TURN_TAKEN.lock().unwrap_or_else(|e| e.into_inner());
        while *taken {
            taken = TURN_FREED.wait(taken).unwrap_or_else(|e| e.into_inner());
        }
        *taken = true;
        Turn
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        *TURN_TAKEN.lock().unwrap_or_else(|e| e.into_inner()) = false;
        TURN_FREED.notify_one();
    }
}

#[derive(Default)]
struct State {
    /// Guest output, cleaned and decoded (invalid UTF-8, such as the CP437
    /// box drawing of OVMF's menus, becomes U+FFFD).
    text: String,
    /// Guest output as it came.
    raw: Vec<u8>,
    /// QEMU's own stderr.
    stderr: Vec<u8>,
    stdout_closed: bool,
    stop_watchdog: bool,
    killed_at_deadline: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running QEMU with its serial console on pipes.
pub struct Vm {
    child: Arc<Mutex<Child>>,
    pid: u32,
    stdin: Option<ChildStdin>,
    shared: Arc<Shared>,
    /// Offset in the cleaned text up to which `expect` has consumed.
    seen: usize,
    started: Instant,
    deadline: Instant,
    threads: Vec<JoinHandle<()>>,
    exit: Option<ExitStatus>,
    turn: Option<Turn>,
    _dir: tempfile::TempDir,
}

/// Removes ANSI escape sequences, `\r` and NUL bytes from a byte stream.
#[derive(Debug, Default)]
pub struct AnsiStripper {
    state: Seq,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Seq {
    #[default]
    Text,
    Esc,
    Csi,
    Osc,
    OscEsc,
    OneMore,
}

impl AnsiStripper {
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            self.state = match (self.state, b) {
                (Seq::Text, 0x1b) => Seq::Esc,
                (Seq::Text, b'\r' | 0) => Seq::Text,
                (Seq::Text, _) => {
                    out.push(b);
                    Seq::Text
                }
                (Seq::Esc, b'[') => Seq::Csi,
                (Seq::Esc, b']') => Seq::Osc,
                (Seq::Esc, b'(' | b')' | b'*' | b'+' | b'#' | b'%') => Seq::OneMore,
                (Seq::Esc, _) => Seq::Text,
                (Seq::Csi, 0x40..=0x7e) => Seq::Text,
                (Seq::Csi, _) => Seq::Csi,
                (Seq::Osc, 0x07) => Seq::Text,
                (Seq::Osc, 0x1b) => Seq::OscEsc,
                (Seq::Osc, _) => Seq::Osc,
                (Seq::OscEsc, b'\\') => Seq::Text,
                (Seq::OscEsc, _) => Seq::Osc,
                (Seq::OneMore, _) => Seq::Text,
            };
        }
    }
}

/// Strips ANSI escape sequences, `\r` and NULs from `s`.
pub fn strip_ansi(s: &[u8]) -> String {
    let mut out = Vec::new();
    AnsiStripper::default().feed(s, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn tail_of(bytes: &[u8], max: usize) -> String {
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

impl Vm {
    /// Boots `disk` (an image path, or a [`Disk`]) with the default
    /// [`VmConfig`].
    pub fn boot(disk: impl Into<Disk>) -> Result<Vm> {
        Vm::boot_with(disk, VmConfig::default())
    }

    /// Boots `disk` with `config`, the console on pipes.
    pub fn boot_with(disk: impl Into<Disk>, config: VmConfig) -> Result<Vm> {
        let disk = disk.into();
        let turn = config.exclusive.then(Turn::take);
        let dir = tempfile::Builder::new()
            .prefix("lbm-vm-")
            .tempdir()
            .map_err(|e| anyhow!("cannot create a temporary directory: {e}"))?;
        let vars = Ovmf::find_for(config.arch)?.fresh_vars(dir.path())?;
        let mut cmd = command(&disk, &config, Serial::Pipe, &vars)?;
        eprintln!("[vm] starting {cmd:?}");
        let mut child = cmd.spawn().map_err(|e| anyhow!("cannot start QEMU: {e}"))?;
        let started = Instant::now();
        let pid = child.id();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("QEMU's stdout is not a pipe"))?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("QEMU's stderr is not a pipe"))?;
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), changed: Condvar::new() });
        let child = Arc::new(Mutex::new(child));
        let deadline = started + config.deadline;

        let mut threads = Vec::new();
        {
            let shared = shared.clone();
            threads.push(std::thread::spawn(move || read_console(stdout, &shared)));
        }
        {
            let shared = shared.clone();
            threads.push(std::thread::spawn(move || read_stderr(stderr, &shared)));
        }
        {
            let shared = shared.clone();
            let child = child.clone();
            threads.push(std::thread::spawn(move || watchdog(&shared, &child, deadline)));
        }
        Ok(Vm { child, pid, stdin, shared, seen: 0, started, deadline, threads, exit: None, turn, _dir: dir })
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Time since QEMU started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Everything the guest printed so far (cleaned).
    pub fn output(&self) -> String {
        self.shared.lock().text.clone()
    }

    /// Everything the guest printed so far, as it came.
    pub fn raw_output(&self) -> Vec<u8> {
        self.shared.lock().raw.clone()
    }

    /// What QEMU itself wrote to stderr.
    pub fn qemu_stderr(&self) -> String {
        String::from_utf8_lossy(&self.shared.lock().stderr).into_owned()
    }

    fn failure(&self, st: &State, what: String) -> anyhow::Error {
        let mut msg = format!(
            "{what} (after {:.1} s)\n--- last guest output ---\n{}\n---",
            self.started.elapsed().as_secs_f64(),
            tail_of(st.text.as_bytes(), 3000)
        );
        if !st.stderr.is_empty() {
            msg.push_str(&format!("\n--- QEMU stderr ---\n{}\n---", tail_of(&st.stderr, 2000)));
        }
        anyhow!(msg)
    }

    /// Waits until `needle` appears in the output after the previous match,
    /// and returns the output from there up to and including it.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        self.expect_any(&[needle], timeout).map(|(_, text)| text)
    }

    /// Like [`Vm::expect`] for several needles: returns the index of the one
    /// that appears first and the output up to and including it.
    pub fn expect_any(&mut self, needles: &[&str], timeout: Duration) -> Result<(usize, String)> {
        let mut which = 0;
        let text = self.wait_for(&format!("{needles:?}"), timeout, |hay| {
            let best = needles.iter().enumerate().filter_map(|(i, n)| hay.find(n).map(|at| (at + n.len(), i))).min();
            best.map(|(end, i)| {
                which = i;
                end
            })
        })?;
        Ok((which, text))
    }

    /// The general form of `expect`: `matcher` sees the (cleaned) output
    /// since the last match each time more arrives, and returns where the
    /// match ends (a byte offset in what it saw) once there is one. Returns
    /// the output up to there. `what` names the awaited thing in errors.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut matcher: impl FnMut(&str) -> Option<usize>,
    ) -> Result<String> {
        let until = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            let hay = &st.text[self.seen..];
            if let Some(end) = matcher(hay) {
                let mut end = end.min(hay.len());
                while !hay.is_char_boundary(end) {
                    end += 1;
                }
                let text = hay[..end].to_string();
                self.seen += end;
                return Ok(text);
            }
            let now = Instant::now();
            if st.killed_at_deadline || now >= self.deadline {
                drop(st);
                self.kill();
                let st = self.shared.lock();
                return Err(
                    self.failure(&st, format!("global VM deadline passed while waiting for {what}; QEMU was killed"))
                );
            }
            if st.stdout_closed {
                drop(st);
                let status = self.wait_exit(Duration::from_secs(5));
                let st = self.shared.lock();
                return Err(self.failure(&st, format!("QEMU exited (status {status:?}) before {what} appeared")));
            }
            if now >= until {
                return Err(
                    self.failure(&st, format!("timed out after {:.1} s waiting for {what}", timeout.as_secs_f64()))
                );
            }
            let wait = until.min(self.deadline) - now;
            st = self
                .shared
                .changed
                .wait_timeout(st, wait.min(Duration::from_millis(500)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if Instant::now() >= self.deadline {
            self.kill();
            bail!("global VM deadline passed; QEMU was killed");
        }
        let Some(stdin) = self.stdin.as_mut() else {
            bail!("the console input is closed");
        };
        stdin
            .write_all(bytes)
            .and_then(|()| stdin.flush())
            .map_err(|e| anyhow!("cannot write to the console (QEMU gone?): {e}"))
    }

    /// Types `text` then Enter (`\r`), one byte every [`CHAR_DELAY`].
    pub fn send_line(&mut self, text: &str) -> Result<()> {
        self.send_slowly(text.as_bytes())?;
        self.send_slowly(b"\r")
    }

    /// Types `bytes` one every [`CHAR_DELAY`].
    pub fn send_slowly(&mut self, bytes: &[u8]) -> Result<()> {
        for &b in bytes {
            self.write(&[b])?;
            std::thread::sleep(CHAR_DELAY);
        }
        Ok(())
    }

    /// Writes `bytes` to the console at once (escape sequences, Ctrl-C, ...).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.write(bytes)
    }

    /// Waits up to `timeout` (and never past the deadline) for QEMU to end.
    /// Returns its exit code, or `None` if it is still running or was ended
    /// by a signal (e.g. killed).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let until = (Instant::now() + timeout).min(self.deadline);
        loop {
            if let Some(status) = self.try_status() {
                return status.code();
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Like [`Vm::wait_exit`], mapped: `None` while QEMU still runs.
    pub fn wait_end(&mut self, timeout: Duration) -> Option<Exit> {
        self.wait_exit(timeout);
        self.try_status().map(|s| Exit::from_code(s.code()))
    }

    fn try_status(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
            if let Ok(Some(status)) = child.try_wait() {
                self.exit = Some(status);
            }
        }
        self.exit
    }

    /// Whether QEMU is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Kills QEMU (if running) and reaps it.
    pub fn kill(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if self.exit.is_none() {
            let _ = child.kill();
            if let Ok(status) = child.wait() {
                self.exit = Some(status);
            }
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.stdin = None;
        self.kill();
        {
            let mut st = self.shared.lock();
            st.stop_watchdog = true;
        }
        self.shared.changed.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.turn = None;
    }
}

/// Appends the UTF-8 in `pending` to `out`, keeping an incomplete sequence
/// at its end for the next call and replacing invalid bytes with U+FFFD.
fn decode_utf8(pending: &mut Vec<u8>, out: &mut String) {
    loop {
        match std::str::from_utf8(pending) {
            Ok(s) => {
                out.push_str(s);
                pending.clear();
                return;
            }
            Err(e) => {
                let valid = e.valid_up_to();
                out.push_str(std::str::from_utf8(&pending[..valid]).expect("valid prefix"));
                match e.error_len() {
                    None => {
                        pending.drain(..valid);
                        return;
                    }
                    Some(n) => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        pending.drain(..valid + n);
                    }
                }
            }
        }
    }
}

fn read_console(mut out: impl Read, shared: &Shared) {
    let mut buf = [0u8; 4096];
    let mut stripper = AnsiStripper::default();
    let mut pending = Vec::new();
    let mut line = String::new();
    loop {
        let n = match out.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        stripper.feed(&buf[..n], &mut pending);
        let mut text = String::new();
        decode_utf8(&mut pending, &mut text);
        for c in text.chars() {
            if c == '\n' {
                eprintln!("[vm] {line}");
                line.clear();
            } else {
                line.push(c);
            }
        }
        {
            let mut st = shared.lock();
            st.raw.extend_from_slice(&buf[..n]);
            st.text.push_str(&text);
        }
        shared.changed.notify_all();
    }
    if !pending.is_empty() {
        let text = String::from_utf8_lossy(&pending).into_owned();
        line.push_str(&text);
        shared.lock().text.push_str(&text);
    }
    if !line.is_empty() {
        eprintln!("[vm] {line}");
    }
    shared.lock().stdout_closed = true;
    shared.changed.notify_all();
}

fn read_stderr(mut err: impl Read, shared: &Shared) {
    let mut buf = [0u8; 4096];
    loop {
        let n = match err.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        eprint!("[qemu stderr] {}", String::from_utf8_lossy(&buf[..n]));
        shared.lock().stderr.extend_from_slice(&buf[..n]);
        shared.changed.notify_all();
    }
}

fn watchdog(shared: &Shared, child: &Mutex<Child>, deadline: Instant) {
    let mut st = shared.lock();
    loop {
        if st.stop_watchdog {
            return;
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        st = shared.changed.wait_timeout(st, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
    }
    st.killed_at_deadline = true;
    drop(st);
    let mut child = child.lock().unwrap_or_else(|e| e.into_inner());
    if let Ok(None) = child.try_wait() {
        eprintln!("[vm] global deadline passed: killing QEMU (pid {})", child.id());
        let _ = child.kill();
    }
    drop(child);
    shared.changed.notify_all();
}
