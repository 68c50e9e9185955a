//! Hand-written pre-tokenizers: each `match_*` function returns where the
//! leftmost-first match of its regex, anchored at `i`, ends. Every alternative
//! is worked out as the backtracking regex engine would try it.

use super::unicode_tables::{LETTER, NUMBER, RANGES, SPACE};

/// The class of a character as the pre-tokenizer regexes see it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// `\p{L}`
    Letter,
    /// `\p{N}`
    Number,
    /// `\s` (White_Space)
    Space,
    /// `[^\s\p{L}\p{N}]`
    Other,
}

fn class(c: char) -> Class {
    let cp = c as u32;
    if cp < 0x80 {
        return match c {
            'a'..='z' | 'A'..='Z' => Class::Letter,
            '0'..='9' => Class::Number,
            '\t'..='\r' | ' ' => Class::Space,
            _ => Class::Other,
        };
    }
    let i = RANGES.partition_point(|&(_, last, _)| last < cp);
    match RANGES.get(i) {
        Some(&(first, _, cls)) if first <= cp => match cls {
            LETTER => Class::Letter,
            NUMBER => Class::Number,
            SPACE => Class::Space,
            _ => Class::Other,
        },
        _ => Class::Other,
    }
}

/// The character starting at byte `i` of `s`, if any.
fn char_at(s: &str, i: usize) -> Option<char> {
    s.get(i..).and_then(|t| t.chars().next())
}

/// The end of the run of characters of class `cls` starting at `i`.
fn run(s: &str, i: usize, cls: Class) -> usize {
    s[i..].find(|c| class(c) != cls).map_or(s.len(), |n| i + n)
}

/// `\s+(?!\S)|\s+` at `i`, where `s[i]` is white space: the whole run if it
/// reaches the end of the text, else the run minus its last character (which
/// then goes with the following word), but never less than one character.
fn spaces(s: &str, i: usize) -> usize {
    let end = run(s, i, Class::Space);
    if end == s.len() {
        return end;
    }
    let last = s[i..end].char_indices().last().map_or(0, |(k, _)| k);
    if last > 0 {
        i + last
    } else {
        end
    }
}

/// A contraction `'s|'t|'re|'ve|'m|'ll|'d` at `i` (ASCII case-insensitive if
/// `fold`): its end.
fn contraction(s: &str, i: usize, fold: bool) -> Option<usize> {
    let rest = s[i..].strip_prefix('\'')?.as_bytes();
    ["s", "t", "re", "ve", "m", "ll", "d"]
        .iter()
        .find_map(|suf| {
            let head = rest.get(..suf.len())?;
            let ok = if fold {
                head.eq_ignore_ascii_case(suf.as_bytes())
            } else {
                head == suf.as_bytes()
            };
            ok.then(|| i + 1 + suf.len())
        })
}

/// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
pub(super) fn match_gpt2(s: &str, i: usize) -> usize {
    if let Some(end) = contraction(s, i, false) {
        return end;
    }
    let Some(c0) = char_at(s, i) else {
        return s.len();
    };
    if c0 == ' ' {
        // ` ?X+`: the space joins a following letter, number or symbol run.
        if let Some(c1) = char_at(s, i + 1) {
            let cls = class(c1);
            if cls != Class::Space {
                return run(s, i + 1, cls);
            }
        }
    }
    match class(c0) {
        Class::Space => spaces(s, i),
        cls => run(s, i, cls),
    }
}

/// Qwen2 (llama.cpp "qwen2", from the model's tokenizer.json):
/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
/// Case-insensitivity is ASCII only, as in llama.cpp.
pub(super) fn match_qwen2(s: &str, i: usize) -> usize {
    if let Some(end) = contraction(s, i, true) {
        return end;
    }
    let Some(c0) = char_at(s, i) else {
        return s.len();
    };
    let n0 = i + c0.len_utf8();
    let cls0 = class(c0);
    let newline = |c: char| c == '\r' || c == '\n';
    // `[^\r\n\p{L}\p{N}]?\p{L}+`
    if !matches!(cls0, Class::Letter | Class::Number)
        && !newline(c0)
        && char_at(s, n0).is_some_and(|c| class(c) == Class::Letter)
    {
        return run(s, n0, Class::Letter);
    }
    match cls0 {
        Class::Letter => run(s, i, Class::Letter),
        // `\p{N}`: one digit at a time.
        Class::Number => n0,
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        Class::Other => newlines(s, run(s, i, Class::Other)),
        Class::Space => {
            if c0 == ' ' && char_at(s, n0).is_some_and(|c| class(c) == Class::Other) {
                return newlines(s, run(s, n0, Class::Other));
            }
            // `\s*[\r\n]+`: up to and including the last line break of the run.
            let end = run(s, i, Class::Space);
            match s[i..end].rfind(newline) {
                Some(k) => i + k + 1,
                None => spaces(s, i),
            }
        }
    }
}

/// `[\r\n]*` at `i`: its end.
fn newlines(s: &str, i: usize) -> usize {
    s[i..]
        .find(|c| c != '\r' && c != '\n')
        .map_or(s.len(), |n| i + n)
}
