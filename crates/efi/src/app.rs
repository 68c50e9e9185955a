//! The app's flow: banner, worker cores, settings, model menu, loading, chat.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use kernels::exec::{Executor, Serial};
use repl::{format_size, Chat, ChatSettings, Console, Key, ReplExit};
use uefi::runtime::{self, ResetType};
use uefi::{boot, Status};

use crate::console::{self, UefiConsole};
use crate::fs::Esp;
use crate::menu::{self, Entry};
use crate::mp::{self, Exec};
use crate::{cpu, mem};

/// The settings file on the ESP.
pub const CFG_PATH: &str = "\\lbm.cfg";
/// Largest settings file accepted.
const CFG_MAX: u64 = 1 << 20;
/// Largest tokenizer file accepted.
const TOKENIZER_MAX: u64 = 512 << 20;

fn say(s: &str) {
    console::conout_write(s);
}

fn sayln(s: &str) {
    console::conout_write(s);
    console::conout_write("\n");
}

/// Powers the machine off.
pub fn shutdown(status: Status) -> ! {
    runtime::reset(ResetType::SHUTDOWN, status, None)
}

/// Shows a fatal problem, waits for a key, powers off.
fn fatal(con: &mut UefiConsole, msg: &str) -> ! {
    sayln(&format!("error: {msg}"));
    sayln("Press any key to shut down.");
    let _ = con.read_key();
    shutdown(Status::ABORTED)
}

/// Entry point after the firmware hands over.
pub fn run() -> Status {
    // The firmware's 5-minute watchdog would reset us mid-chat.
    let _ = boot::set_watchdog_timer(0, 0x10000, None);
    let simd_state = cpu::enable_simd();

    sayln(&format!("llm-baremetal {}", env!("CARGO_PKG_VERSION")));
    sayln(&format!("CPU:    {} ({})", cpu::brand_string(), cpu::ARCH));
    let level = kernels::cpu::level().name();
    let mut simd_line = format!("SIMD:   {level} ({})", simd_state.describe());
    if let Some((name, fast, slow)) = cpu::simd_selftest() {
        let ok = (fast - slow).abs() <= 1e-4 * slow.abs().max(1.0);
        simd_line
            .push_str(&format!("; {name} check: {fast:.6} vs scalar {slow:.6} {}", if ok { "ok" } else { "MISMATCH" }));
        if !ok {
            // Never run kernels that compute wrong numbers.
            kernels::cpu::force_level(kernels::cpu::SimdLevel::Scalar);
            simd_line.push_str(" (using scalar kernels)");
        }
    }
    sayln(&simd_line);
    match mem::mem_summary() {
        Ok(m) => {
            sayln(&format!("Memory: {} free, largest free block {}", format_size(m.free), format_size(m.largest_free)))
        }
        Err(e) => sayln(&format!("Memory: unknown ({e})")),
    }

    let tsc_hz = console::calibrate_tsc();
    let exec = match mp::start(tsc_hz) {
        Ok(m) => Exec::Mp(m),
        Err(why) => {
            sayln(&format!("Cores:  1 ({why})"));
            Exec::Serial(Serial)
        }
    };
    if let Exec::Mp(_) = &exec {
        let mut line = format!("Cores:  {}", exec.describe());
        match mp::selftest(&exec, 4096) {
            Ok(on_workers) => {
                line.push_str(&format!("; parallel-for check: 4096 tasks ran once each, {on_workers} on workers"))
            }
            Err(e) => line.push_str(&format!("; {e}")),
        }
        sayln(&line);
    }
    let mut con = UefiConsole::new(tsc_hz, kernels::cpu::level().name(), exec.n_threads());

    let mut esp = match Esp::open() {
        Ok(e) => e,
        Err(e) => fatal(&mut con, &e),
    };

    #[cfg(feature = "hwtest")]
    hwtest(&mut esp, &mut con, &exec);

    let settings = load_settings(&mut esp);
    if let Some(cap) = settings.simd {
        let level = kernels::cpu::force_level(cap);
        sayln(&format!("SIMD:   {} (capped by simd = {} in {CFG_PATH})", level.name(), cap.name()));
        con.set_simd(level.name());
    }
    menu_loop(&mut esp, &mut con, &exec, &settings)
}

/// Reads `\lbm.cfg` if present; a bad file is reported and the defaults used.
fn load_settings(esp: &mut Esp) -> ChatSettings {
    if !esp.exists(CFG_PATH) {
        return ChatSettings::default();
    }
    let parsed = esp.read_small(CFG_PATH, CFG_MAX).and_then(|bytes| {
        let text = core::str::from_utf8(&bytes).map_err(|e| format!("not UTF-8 text ({e})"))?;
        ChatSettings::parse_cfg(text).map_err(|e| format!("{e}"))
    });
    match parsed {
        Ok(s) => {
            sayln(&format!("Settings: {CFG_PATH}"));
            s
        }
        Err(e) => {
            sayln(&format!("{CFG_PATH}: error: {e}"));
            sayln("Using the default settings.");
            ChatSettings::default()
        }
    }
}

/// What the menu decided.
enum Pick {
    Model(usize),
    Rescan,
    Quit,
}

fn menu_loop(esp: &mut Esp, con: &mut UefiConsole, exec: &Exec, settings: &ChatSettings) -> ! {
    let mut first = true;
    loop {
        sayln("");
        sayln("Models:");
        let entries = menu::scan(esp, &mut |l| sayln(l));
        let usable: Vec<usize> = (0..entries.len()).filter(|&i| entries[i].usable()).collect();
        for (i, e) in entries.iter().enumerate() {
            let n = usable.iter().position(|&u| u == i).map(|p| p + 1);
            sayln(&menu::entry_line(e, n));
        }
        let pick = choose(con, &entries, &usable, settings, first);
        first = false;
        let idx = match pick {
            Pick::Model(i) => i,
            Pick::Rescan => continue,
            Pick::Quit => {
                sayln("Bye.");
                shutdown(Status::SUCCESS)
            }
        };
        match load_and_chat(esp, con, exec, settings, &entries[idx]) {
            Ok(ReplExit::Exit) => {
                sayln("Bye.");
                shutdown(Status::SUCCESS)
            }
            Ok(ReplExit::ChangeModel) => {}
            Err(e) => sayln(&format!("error: {e}")),
        }
    }
}

fn choose(con: &mut UefiConsole, entries: &[Entry], usable: &[usize], settings: &ChatSettings, first: bool) -> Pick {
    if usable.is_empty() {
        if entries.is_empty() {
            sayln("  (none)");
        }
        sayln("No usable model found. Put a .gguf file, or a llama2.c .bin file with its");
        sayln("tokenizer (tokenizer.bin), in the root of this disk or in \\models\\.");
        sayln("Press Enter to scan again or Esc to shut down.");
        loop {
            match con.read_key() {
                Some(Key::Enter) => return Pick::Rescan,
                Some(Key::Esc) | Some(Key::CtrlC) | Some(Key::CtrlD) | None => return Pick::Quit,
                _ => {}
            }
        }
    }
    if first {
        if let Some(wanted) = settings.default_model.as_deref().filter(|w| !w.trim().is_empty()) {
            match usable.iter().find(|&&i| entries[i].matches(wanted)) {
                Some(&i) => {
                    sayln(&format!("Default model from {CFG_PATH}: {}", entries[i].name));
                    return Pick::Model(i);
                }
                None => sayln(&format!("{CFG_PATH}: the default model '{wanted}' is not among the usable models")),
            }
        }
        if usable.len() == 1 {
            sayln(&format!("Only one model: {}", entries[usable[0]].name));
            return Pick::Model(usable[0]);
        }
    }
    sayln("(type q to shut down)");
    loop {
        let prompt = format!("Select a model [1-{}]: ", usable.len());
        let Some(line) = repl::read_answer(con, &prompt, 16) else { return Pick::Quit };
        let t = line.trim();
        if t.eq_ignore_ascii_case("q") || t.eq_ignore_ascii_case("quit") {
            return Pick::Quit;
        }
        if let Some(n) = menu::parse_choice(t, usable.len()) {
            return Pick::Model(usable[n - 1]);
        }
    }
}

/// The progress line: bar, MB done / total, MB/s.
fn progress_line(done: u64, total: u64, elapsed_us: u64) -> String {
    const WIDTH: u64 = 30;
    let filled = (done.min(total) * WIDTH).checked_div(total).unwrap_or(WIDTH);
    let mut bar = String::new();
    for i in 0..WIDTH {
        bar.push(if i < filled { '#' } else { '.' });
    }
    let mb = |b: u64| b as f64 / 1e6;
    let rate = if elapsed_us == 0 { 0.0 } else { done as f64 / elapsed_us as f64 };
    format!("\r  [{bar}] {:.1} / {:.1} MB  {:.1} MB/s ", mb(done), mb(total), rate)
}

fn load_and_chat(
    esp: &mut Esp,
    con: &mut UefiConsole,
    exec: &Exec,
    settings: &ChatSettings,
    entry: &Entry,
) -> Result<ReplExit, String> {
    let summary = entry.summary.as_ref().map_err(|e| e.clone())?;
    let mem_now = mem::mem_summary()?;
    if summary.mem_needed > mem_now.largest_free {
        return Err(format!(
            "{} does not fit in memory: it needs {}, but the largest free block is {} ({} free in all)",
            entry.name,
            format_size(summary.mem_needed),
            format_size(mem_now.largest_free),
            format_size(mem_now.free)
        ));
    }
    match &entry.split {
        Some(set) => {
            sayln(&format!("Loading {} ({}, {} shards)", entry.name, format_size(summary.file_size), set.paths.len()))
        }
        None => sayln(&format!("Loading {} ({})", entry.name, format_size(summary.file_size))),
    }
    let t0 = con.now_us();
    let mut last_draw = 0u64;
    let pages = {
        let con_ref = &mut *con;
        let mut draw = |done: u64, total: u64| {
            let now = con_ref.now_us();
            if done == 0 || done == total || now.saturating_sub(last_draw) >= 100_000 {
                last_draw = now;
                say(&progress_line(done, total, now.saturating_sub(t0)));
            }
        };
        match &entry.split {
            // A split set: every shard's tensors read into one merged file.
            Some(set) => esp.read_split_to_pages(&set.paths, &set.plan, &mut draw),
            None => esp.read_to_pages(&entry.path, &mut draw),
        }
    };
    sayln("");
    let pages = pages?;

    let tokenizer = if summary.needs_tokenizer {
        let path =
            entry.tokenizer.as_deref().ok_or_else(|| format!("{} needs a tokenizer file next to it", entry.name))?;
        sayln(&format!("Tokenizer: {}", path.trim_start_matches('\\')));
        Some(esp.read_small(path, TOKENIZER_MAX)?)
    } else {
        None
    };

    let blob: engine::load::Blob = Box::new(pages);
    let (model, tok) = engine::load::load(blob, tokenizer.as_deref()).map_err(|e| format!("{e}"))?;
    drop(tokenizer);
    for w in tok.warnings() {
        sayln(&format!("warning: {w}"));
    }
    let secs = con.now_us().saturating_sub(t0) as f64 / 1e6;
    sayln(&format!("Loaded {} in {secs:.1} s.", entry.name));
    let mut chat = Chat::new(model, tok, settings.clone(), entry.model_name(), engine::load::DEFAULT_CTX)
        .map_err(|e| format!("{e}"))?;
    sayln("LBM-READY");
    let exit = chat.run(con, exec);
    drop(chat);
    Ok(exit)
}

/// Hardware test build (`--features hwtest`): lists the ESP, checks the
/// worker cores leave when idle and come back, then echoes decoded keys until
/// `q` (`p` panics on this core, `w` on a worker core); the normal flow
/// follows.
#[cfg(feature = "hwtest")]
fn hwtest(esp: &mut Esp, con: &mut UefiConsole, exec: &Exec) {
    for dir in menu::MODEL_DIRS {
        match esp.list(dir) {
            Ok(list) => {
                for e in list {
                    sayln(&format!(
                        "file: {} {} {} {:?}",
                        menu::join(dir, &e.name),
                        if e.is_dir { "dir" } else { "file" },
                        e.size,
                        menu::classify(&e.name)
                    ));
                }
            }
            Err(e) => sayln(&format!("list {dir}: error: {e}")),
        }
    }
    let t0 = con.now_us();
    boot::stall(core::time::Duration::from_millis(500));
    sayln(&format!("now_us over a 500 ms stall: {}", con.now_us() - t0));
    if let Exec::Mp(_) = exec {
        boot::stall(core::time::Duration::from_secs(mp::IDLE_EXIT_SECS + 1));
        sayln(&format!("after idle: {}", exec.describe()));
        for round in 0..8 {
            match mp::selftest(exec, 4096) {
                Ok(w) => sayln(&format!("parallel-for round {round}: ok, {w} on workers; {}", exec.describe())),
                Err(e) => sayln(&format!("parallel-for round {round}: {e}")),
            }
            boot::stall(core::time::Duration::from_millis(200));
        }
    }
    sayln("HWTEST-KEYS (type keys, q ends)");
    loop {
        match con.read_key() {
            Some(Key::Char('q')) | None => break,
            Some(Key::Char('p')) => panic!("hwtest: panic on the bootstrap core"),
            Some(Key::Char('w')) => exec.run(64, &|i| {
                if !cpu::on_bsp() {
                    panic!("hwtest: panic on a worker core at task {i}");
                }
                for _ in 0..100_000 {
                    core::hint::spin_loop();
                }
            }),
            Some(Key::Char(c)) => sayln(&format!("key: Char({:?} {})", c, c.escape_unicode())),
            Some(k) => sayln(&format!("key: {k:?}")),
        }
    }
    sayln("HWTEST-DONE");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_line_format() {
        assert_eq!(progress_line(0, 58_000_000, 0), "\r  [..............................] 0.0 / 58.0 MB  0.0 MB/s ");
        assert_eq!(
            progress_line(29_000_000, 58_000_000, 1_000_000),
            "\r  [###############...............] 29.0 / 58.0 MB  29.0 MB/s "
        );
        assert!(progress_line(5, 0, 1).contains("[##############################]"));
    }
}
