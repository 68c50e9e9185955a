//! A line editor that works on any terminal: it only writes printable text,
//! `\x08` (cursor left) and spaces, so it behaves the same on the UEFI
//! console, a serial line and a tty in raw mode.

use alloc::string::String;
use alloc::vec::Vec;

use crate::console::{Console, Key};

/// What reading a line produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineEvent {
    /// Enter was pressed.
    Line(String),
    /// Ctrl-C on the line: it was abandoned.
    Cancelled,
    /// Ctrl-D on an empty line, or the input ended.
    Eof,
}

/// Earlier inputs, for Up/Down.
#[derive(Debug, Default, Clone)]
pub struct InputHistory {
    entries: Vec<String>,
}

impl InputHistory {
    const MAX: usize = 100;
    /// Remembers a line (not empty, not a repeat of the last one).
    pub fn push(&mut self, s: &str) {
        if s.trim().is_empty() || self.entries.last().is_some_and(|l| l == s) {
            return;
        }
        if self.entries.len() == Self::MAX {
            self.entries.remove(0);
        }
        self.entries.push(s.into());
    }
}

struct Editor<'a> {
    con: &'a mut dyn Console,
    buf: Vec<char>,
    cur: usize,
    echo: bool,
}

impl Editor<'_> {
    fn put(&mut self, s: &str) {
        if self.echo {
            self.con.write_str(s);
        }
    }
    fn back(&mut self, n: usize) {
        for _ in 0..n {
            self.put("\x08");
        }
    }
    /// Redraws from the cursor to the end, erasing `extra` old cells, and
    /// moves the cursor back.
    fn redraw_tail(&mut self, extra: usize) {
        let tail: String = self.buf[self.cur..].iter().collect();
        self.put(&tail);
        for _ in 0..extra {
            self.put(" ");
        }
        self.back(self.buf.len() - self.cur + extra);
    }
    fn replace(&mut self, s: &str) {
        self.back(self.cur);
        let old = self.buf.len();
        self.buf = s.chars().collect();
        self.cur = 0;
        self.redraw_tail(old.saturating_sub(self.buf.len()));
        let all: String = self.buf.iter().collect();
        self.put(&all);
        self.cur = self.buf.len();
    }
}

/// Reads one line with editing. `complete` offers Tab completions for the
/// current text (all candidates that extend it).
pub fn read_line(
    con: &mut dyn Console,
    prompt: &str,
    hist: &InputHistory,
    complete: &dyn Fn(&str) -> Vec<&'static str>,
) -> LineEvent {
    edit(con, prompt, hist, complete, None)
}

/// Reads a short answer (a menu choice) of at most `max` characters, with
/// the same editing but no history or completion. `None` if the input
/// ended; Esc or Ctrl-C give an empty answer.
pub fn read_answer(con: &mut dyn Console, prompt: &str, max: usize) -> Option<String> {
    match edit(con, prompt, &InputHistory::default(), &|_| Vec::new(), Some(max)) {
        LineEvent::Line(s) => Some(s),
        LineEvent::Cancelled => Some(String::new()),
        LineEvent::Eof => None,
    }
}

/// [`read_line`], or with `answer` set [`read_answer`] taking at most that
/// many characters.
fn edit(
    con: &mut dyn Console,
    prompt: &str,
    hist: &InputHistory,
    complete: &dyn Fn(&str) -> Vec<&'static str>,
    answer: Option<usize>,
) -> LineEvent {
    let max = answer.unwrap_or(usize::MAX);
    con.write_str(prompt);
    let echo = !con.is_interactive();
    let mut ed = Editor { con, buf: Vec::new(), cur: 0, echo };
    let mut hpos = hist.entries.len();
    loop {
        let Some(key) = ed.con.read_key() else {
            return if ed.buf.is_empty() { LineEvent::Eof } else { LineEvent::Line(ed.buf.iter().collect()) };
        };
        match key {
            Key::Enter => {
                ed.put("\n");
                return LineEvent::Line(ed.buf.iter().collect());
            }
            Key::Char(c) if !c.is_control() && ed.buf.len() < max => {
                ed.buf.insert(ed.cur, c);
                let mut s = [0u8; 4];
                ed.put(c.encode_utf8(&mut s));
                ed.cur += 1;
                if ed.cur < ed.buf.len() {
                    ed.redraw_tail(0);
                }
            }
            Key::Char(_) => {}
            Key::Backspace if ed.cur > 0 => {
                ed.cur -= 1;
                ed.buf.remove(ed.cur);
                ed.back(1);
                ed.redraw_tail(1);
            }
            Key::Delete if ed.cur < ed.buf.len() => {
                ed.buf.remove(ed.cur);
                ed.redraw_tail(1);
            }
            Key::Left if ed.cur > 0 => {
                ed.cur -= 1;
                ed.back(1);
            }
            Key::Right if ed.cur < ed.buf.len() => {
                let mut s = [0u8; 4];
                let c = ed.buf[ed.cur];
                ed.put(c.encode_utf8(&mut s));
                ed.cur += 1;
            }
            Key::Home => {
                ed.back(ed.cur);
                ed.cur = 0;
            }
            Key::End => {
                let tail: String = ed.buf[ed.cur..].iter().collect();
                ed.put(&tail);
                ed.cur = ed.buf.len();
            }
            Key::Up if hpos > 0 => {
                hpos -= 1;
                let s = hist.entries[hpos].clone();
                ed.replace(&s);
            }
            Key::Down if hpos < hist.entries.len() => {
                hpos += 1;
                let s = hist.entries.get(hpos).cloned().unwrap_or_default();
                ed.replace(&s);
            }
            Key::Tab => {
                let text: String = ed.buf.iter().collect();
                let cands = complete(&text);
                // One candidate, or an exact match: complete it and add a space.
                // Several: extend to their common prefix, or list them.
                let exact = cands.iter().find(|c| **c == text).copied();
                let common = common_prefix(&cands);
                let target = match (cands.as_slice(), exact) {
                    ([one], _) => Some(alloc::format!("{one} ")),
                    (_, Some(e)) => Some(alloc::format!("{e} ")),
                    _ if common.len() > text.len() => Some(String::from(common)),
                    _ => None,
                };
                if let Some(t) = target {
                    // Move to the end first so replace() erases everything.
                    let tail: String = ed.buf[ed.cur..].iter().collect();
                    ed.put(&tail);
                    ed.cur = ed.buf.len();
                    ed.replace(&t);
                } else if cands.len() > 1 {
                    // List the candidates, then draw the prompt and line again.
                    let list = cands.join("  ");
                    ed.put("\n");
                    ed.put(&list);
                    ed.put("\n");
                    ed.con.write_str(prompt);
                    ed.put(&text);
                    ed.cur = ed.buf.len();
                }
            }
            Key::CtrlC | Key::Esc if answer.is_some() => {
                ed.put("\n");
                return LineEvent::Cancelled;
            }
            Key::CtrlC => {
                ed.put("^C\n");
                return LineEvent::Cancelled;
            }
            Key::CtrlD if ed.buf.is_empty() => {
                ed.put("\n");
                return LineEvent::Eof;
            }
            _ => {}
        }
    }
}

/// The longest prefix all of `words` share.
fn common_prefix<'a>(words: &[&'a str]) -> &'a str {
    let Some(first) = words.first() else { return "" };
    let mut len = first.len();
    for w in &words[1..] {
        len = first.bytes().zip(w.bytes()).take(len).take_while(|(a, b)| a == b).count();
    }
    while !first.is_char_boundary(len) {
        len -= 1;
    }
    &first[..len]
}
