//! A progress bar on stderr: bytes, percentage, MB/s and time left,
//! redrawn in place on a terminal (at most ten times a second), one line
//! per tenth of the file otherwise (logs, CI).

use super::{human, Event};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct StderrProgress {
    tty: bool,
    /// When the current file started, and from which byte (resumed bytes
    /// do not count in the speed).
    started: Instant,
    resumed: u64,
    last_draw: Option<Instant>,
    last_tenth: u64,
    /// A bar is on screen without its newline.
    open: bool,
    /// Bytes of the current file are coming.
    active: bool,
}

impl Default for StderrProgress {
    fn default() -> Self {
        Self::new()
    }
}

fn rate(bytes: u64, secs: f64) -> String {
    // The first moments give no speed worth showing.
    if secs < 0.25 {
        return "-- MB/s".into();
    }
    format!("{:.1} MB/s", bytes as f64 / secs / 1e6)
}

fn clock(secs: f64) -> String {
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

impl StderrProgress {
    pub fn new() -> Self {
        StderrProgress {
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
            resumed: 0,
            last_draw: None,
            last_tenth: 0,
            open: false,
            active: false,
        }
    }

    fn close_line(&mut self, err: &mut impl Write) {
        if self.open {
            let _ = writeln!(err);
            self.open = false;
        }
    }

    /// Shows one event.
    pub fn event(&mut self, ev: &Event) {
        let mut err = std::io::stderr().lock();
        match *ev {
            Event::Start { file, total, resumed } => {
                self.close_line(&mut err);
                self.started = Instant::now();
                self.resumed = resumed;
                self.last_draw = None;
                self.last_tenth = (resumed * 10).checked_div(total).unwrap_or(0);
                self.active = true;
                if resumed > 0 {
                    let _ = writeln!(err, "{file}: resuming at {} of {}", human(resumed), human(total));
                } else {
                    let _ = writeln!(err, "{file}: downloading {}", human(total));
                }
            }
            Event::Bytes { file, done, total } => {
                let secs = self.started.elapsed().as_secs_f64();
                let moved = done.saturating_sub(self.resumed);
                let pct = (done * 100).checked_div(total).unwrap_or(100);
                if self.tty {
                    let due = self.last_draw.is_none_or(|t| t.elapsed() >= Duration::from_millis(100));
                    if due || done == total {
                        self.last_draw = Some(Instant::now());
                        let left = if moved > 0 && secs > 0.0 {
                            clock(total.saturating_sub(done) as f64 * secs / moved as f64)
                        } else {
                            "--:--".into()
                        };
                        let width = 24usize;
                        let filled = (pct as usize * width / 100).min(width);
                        let _ = write!(
                            err,
                            "\r\x1b[K[{}{}] {pct:>3}%  {} / {}  {}  {left} left",
                            "#".repeat(filled),
                            "-".repeat(width - filled),
                            human(done),
                            human(total),
                            rate(moved, secs),
                        );
                        let _ = err.flush();
                        self.open = true;
                    }
                } else if total > 0 && done * 10 / total > self.last_tenth {
                    self.last_tenth = done * 10 / total;
                    let _ =
                        writeln!(err, "{file}: {pct}% ({} of {}, {})", human(done), human(total), rate(moved, secs));
                }
            }
            Event::Done { file, path, cached } => {
                self.close_line(&mut err);
                if cached {
                    let _ = writeln!(err, "{file}: in the cache ({})", path.display());
                } else if self.active {
                    let secs = self.started.elapsed().as_secs_f64();
                    let moved = std::fs::metadata(path).map_or(0, |m| m.len()).saturating_sub(self.resumed);
                    let _ = writeln!(
                        err,
                        "{file}: downloaded in {} ({}), {}",
                        clock(secs),
                        rate(moved, secs),
                        path.display()
                    );
                } else {
                    let _ = writeln!(err, "{file}: {}", path.display());
                }
                self.active = false;
            }
            Event::Log(m) => {
                self.close_line(&mut err);
                let _ = writeln!(err, "{m}");
            }
        }
    }
}
