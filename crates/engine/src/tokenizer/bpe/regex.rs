//! A small backtracking regex engine for the pre-tokenizer patterns.
//!
//! It knows the subset the pre-tokenizer lists use: literals, `.`, classes
//! (`[...]`, `[^...]`, ranges, escapes inside), `\s \S \d \D \w \W`,
//! `\p{..}`/`\P{..}` with general categories (`L`, `Lu`, `Ll`, `Lt`, `Lm`,
//! `Lo`, `M`, `N`, `Nd`, `P`, `S`, `Z`, `C` and every other two-letter one),
//! alternation, groups (capturing ones are treated as non-capturing),
//! `(?:...)`, `(?i:...)` (ASCII case-insensitive, as llama.cpp's own
//! splitters are), lookaheads `(?=...)` and `(?!...)`, the anchors `^` and
//! `$` (start and end of the text being split), and the quantifiers
//! `? * + {n} {n,} {n,m}` with their lazy forms (`??`, `*?`, ...).
//! Possessive quantifiers, lookbehind, back-references and `\b` are refused
//! with an error when the pattern is parsed.
//!
//! Matching is leftmost-first, like the backtracking engines llama.cpp
//! relies on (ECMAScript `std::regex`): at the leftmost position where a
//! match exists, alternatives and greedy/lazy choices are tried in order and
//! the first that succeeds wins. Empty matches are never reported (none of
//! the pre-tokenizer patterns can match empty).
//!
//! The work is bounded. A pattern is compiled once into a program of at most
//! [`MAX_INSTS`] instructions. Matching is a backtracking search that records
//! every (instruction, position) state it has tried; a state that failed once
//! fails again, so each is expanded at most once per text, whichever start
//! position or earlier match led to it (the scheme of regex-automata's
//! bounded backtracker). Splitting a text of `n` bytes therefore costs
//! O(instructions x n) steps, and cannot loop. The record only keeps the
//! positions a search can still reach (from the start of the current search
//! on), so its memory is about instructions / 8 bytes per byte of the
//! longest stretch one search explores (a word, a run of spaces), not per
//! byte of the text. Lookahead bodies may not contain unbounded repetition, so each
//! lookahead test reads a bounded number of characters.

use super::unicode_tables::{gc, CATEGORY_NAMES, CATEGORY_RANGES, WHITE_SPACE};
use crate::{Error, Result};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

/// Largest compiled program (instructions, lookahead bodies included).
pub const MAX_INSTS: usize = 20_000;
/// Largest count in `{n}`, `{n,}` or `{n,m}`.
pub const MAX_REPEAT: u32 = 1_000;
/// Deepest nesting of groups.
const MAX_DEPTH: usize = 64;

/// The general category of `c`, as a number of [`CATEGORY_NAMES`].
pub(crate) fn category(c: char) -> u8 {
    let cp = c as u32;
    let i = CATEGORY_RANGES.partition_point(|&(_, last, _)| last < cp);
    match CATEGORY_RANGES.get(i) {
        Some(&(first, _, cat)) if first <= cp => cat,
        _ => gc::CN,
    }
}

/// Whether `c` has the White_Space property (what `\s` matches).
pub(crate) fn is_white_space(c: char) -> bool {
    let cp = c as u32;
    let i = WHITE_SPACE.partition_point(|&(_, last)| last < cp);
    matches!(WHITE_SPACE.get(i), Some(&(first, _)) if first <= cp)
}

/// A set of general categories, one bit per category number.
type CatMask = u32;

const fn cats(list: &[u8]) -> CatMask {
    let mut m = 0;
    let mut i = 0;
    while i < list.len() {
        m |= 1 << list[i];
        i += 1;
    }
    m
}

/// `\p{name}`: the categories `name` stands for.
fn category_mask(name: &str) -> Option<CatMask> {
    use gc::*;
    let m = match name {
        "L" | "Letter" => cats(&[LU, LL, LT, LM, LO]),
        "LC" | "L&" => cats(&[LU, LL, LT]),
        "M" | "Mark" => cats(&[MN, MC, ME]),
        "N" | "Number" => cats(&[ND, NL, NO]),
        "P" | "Punctuation" => cats(&[PC, PD, PS, PE, PI, PF, PO]),
        "S" | "Symbol" => cats(&[SM, SC, SK, SO]),
        "Z" | "Separator" => cats(&[ZS, ZL, ZP]),
        "C" | "Other" => cats(&[CC, CF, CS, CO, CN]),
        _ => {
            let i = CATEGORY_NAMES.iter().position(|&n| n == name)?;
            1 << i
        }
    };
    Some(m)
}

/// One member of a character class.
#[derive(Debug, Clone)]
enum Item {
    /// Code points `first..=last`.
    Range(u32, u32),
    /// Characters whose general category is in the mask.
    Cats(CatMask),
    /// `\s` (White_Space).
    Space,
    /// A nested set (`\S`, `\D`, `\W`, `\P{..}`).
    Set(Box<CharSet>),
}

/// A character class.
#[derive(Debug, Clone)]
struct CharSet {
    negated: bool,
    items: Vec<Item>,
    /// What the set answers for each ASCII character, worked out once.
    ascii: u128,
}

impl CharSet {
    fn new(negated: bool, items: Vec<Item>) -> Self {
        let mut s = CharSet { negated, items, ascii: 0 };
        for b in 0..128u8 {
            if s.matches_slow(char::from(b)) {
                s.ascii |= 1 << b;
            }
        }
        s
    }

    fn single(c: char, icase: bool) -> Self {
        let mut items = vec![Item::Range(c as u32, c as u32)];
        if icase {
            add_other_case(c as u32, c as u32, &mut items);
        }
        CharSet::new(false, items)
    }

    fn matches(&self, c: char) -> bool {
        if c.is_ascii() {
            self.ascii & (1 << (c as u32)) != 0
        } else {
            self.matches_slow(c)
        }
    }

    fn matches_slow(&self, c: char) -> bool {
        let cp = c as u32;
        let mut cat = None;
        let hit = self.items.iter().any(|item| match item {
            Item::Range(a, b) => (*a..=*b).contains(&cp),
            Item::Cats(mask) => mask & (1 << *cat.get_or_insert_with(|| category(c))) != 0,
            Item::Space => is_white_space(c),
            Item::Set(s) => s.matches(c),
        });
        hit != self.negated
    }
}

/// For `(?i:...)`: adds the other ASCII case of the letters in `a..=b`.
fn add_other_case(a: u32, b: u32, items: &mut Vec<Item>) {
    let (x, y) = (a.max(0x41), b.min(0x5A)); // A-Z -> a-z
    if x <= y {
        items.push(Item::Range(x + 0x20, y + 0x20));
    }
    let (x, y) = (a.max(0x61), b.min(0x7A)); // a-z -> A-Z
    if x <= y {
        items.push(Item::Range(x - 0x20, y - 0x20));
    }
}

/// The parsed pattern.
#[derive(Debug)]
enum Node {
    Set(CharSet),
    Concat(Vec<Node>),
    Alt(Vec<Node>),
    Repeat { node: Box<Node>, min: u32, max: Option<u32>, greedy: bool },
    Look { node: Box<Node>, negate: bool },
    Start,
    End,
}

impl Node {
    /// The most bytes the node can match, if bounded.
    fn max_len(&self) -> Option<usize> {
        match self {
            Node::Set(_) => Some(4),
            Node::Concat(v) => v.iter().try_fold(0usize, |a, n| a.checked_add(n.max_len()?)),
            Node::Alt(v) => v.iter().try_fold(0usize, |a, n| Some(a.max(n.max_len()?))),
            Node::Repeat { node, max, .. } => node.max_len()?.checked_mul(usize::try_from((*max)?).ok()?),
            Node::Look { .. } | Node::Start | Node::End => Some(0),
        }
    }
}

struct Parser<'p> {
    pattern: &'p str,
    chars: Vec<char>,
    i: usize,
}

impl Parser<'_> {
    fn err(&self, detail: &str) -> Error {
        Error::invalid("pre-tokenizer regex", format!("'{}' at character {}: {detail}", self.pattern, self.i))
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn peek_at(&self, k: usize) -> Option<char> {
        self.chars.get(self.i + k).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn alt(&mut self, icase: bool, depth: usize) -> Result<Node> {
        if depth > MAX_DEPTH {
            return Err(self.err("groups nested too deeply"));
        }
        let mut branches = vec![self.concat(icase, depth)?];
        while self.eat('|') {
            branches.push(self.concat(icase, depth)?);
        }
        Ok(if branches.len() == 1 { branches.pop().unwrap_or(Node::Concat(Vec::new())) } else { Node::Alt(branches) })
    }

    fn concat(&mut self, icase: bool, depth: usize) -> Result<Node> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom(icase, depth)?;
            items.push(self.quantified(atom)?);
        }
        Ok(Node::Concat(items))
    }

    /// A number of a `{n,m}` quantifier.
    fn number(&mut self) -> Option<u32> {
        let start = self.i;
        let mut n: u32 = 0;
        while let Some(d) = self.peek().and_then(|c| c.to_digit(10)) {
            n = n.checked_mul(10)?.checked_add(d)?;
            self.i += 1;
        }
        (self.i > start).then_some(n)
    }

    /// `{n}`, `{n,}` or `{n,m}` at `{`; `None` (and nothing consumed) if the
    /// brace does not start one, in which case it is a literal.
    fn braces(&mut self) -> Result<Option<(u32, Option<u32>)>> {
        let save = self.i;
        self.i += 1;
        let parsed = (|| {
            let min = self.number()?;
            let max = if self.eat(',') {
                if self.peek() == Some('}') {
                    None
                } else {
                    Some(self.number()?)
                }
            } else {
                Some(min)
            };
            self.eat('}').then_some((min, max))
        })();
        match parsed {
            None => {
                self.i = save;
                Ok(None)
            }
            Some((min, max)) => {
                if min > MAX_REPEAT || max.is_some_and(|m| m > MAX_REPEAT) {
                    return Err(self.err(&format!("repetition count above {MAX_REPEAT}")));
                }
                if max.is_some_and(|m| m < min) {
                    return Err(self.err("repetition {n,m} with m < n"));
                }
                Ok(Some((min, max)))
            }
        }
    }

    fn quantified(&mut self, atom: Node) -> Result<Node> {
        let (min, max) = match self.peek() {
            Some('?') => (0, Some(1)),
            Some('*') => (0, None),
            Some('+') => (1, None),
            Some('{') => match self.braces()? {
                Some(q) => {
                    self.i -= 1; // the '}' is consumed below like a one-character quantifier
                    q
                }
                None => return Ok(atom),
            },
            _ => return Ok(atom),
        };
        self.i += 1;
        let greedy = !self.eat('?');
        if self.peek() == Some('+') {
            return Err(self.err("possessive quantifiers are not supported"));
        }
        if matches!(self.peek(), Some('?' | '*' | '+')) {
            return Err(self.err("nothing to repeat"));
        }
        if matches!(atom, Node::Start | Node::End | Node::Look { .. }) {
            return Err(self.err("an anchor or lookahead cannot be repeated"));
        }
        Ok(Node::Repeat { node: Box::new(atom), min, max, greedy })
    }

    fn atom(&mut self, icase: bool, depth: usize) -> Result<Node> {
        let Some(c) = self.peek() else {
            return Err(self.err("unexpected end"));
        };
        self.i += 1;
        Ok(match c {
            '(' => {
                let (mut icase, mut look) = (icase, None);
                if self.eat('?') {
                    match self.peek() {
                        Some(':') => {}
                        Some('i') if self.peek_at(1) == Some(':') => {
                            icase = true;
                            self.i += 1;
                        }
                        Some('=') => look = Some(false),
                        Some('!') => look = Some(true),
                        Some('<') => return Err(self.err("lookbehind and named groups are not supported")),
                        _ => return Err(self.err("unsupported group flag")),
                    }
                    self.i += 1;
                }
                let body = self.alt(icase, depth + 1)?;
                if !self.eat(')') {
                    return Err(self.err("missing ')'"));
                }
                match look {
                    Some(negate) => {
                        if body.max_len().is_none() {
                            return Err(self.err("unbounded repetition inside a lookahead"));
                        }
                        Node::Look { node: Box::new(body), negate }
                    }
                    None => body,
                }
            }
            ')' => return Err(self.err("unmatched ')'")),
            '[' => Node::Set(self.class(icase)?),
            '.' => Node::Set(CharSet::new(
                true,
                vec![Item::Range(0x0A, 0x0A), Item::Range(0x0D, 0x0D), Item::Range(0x2028, 0x2029)],
            )),
            '^' => Node::Start,
            '$' => Node::End,
            '?' | '*' | '+' => return Err(self.err("nothing to repeat")),
            '\\' => match self.escape(false)? {
                Esc::Char(c) => Node::Set(CharSet::single(c, icase)),
                Esc::Item(item) => Node::Set(CharSet::new(false, vec![item])),
            },
            c => Node::Set(CharSet::single(c, icase)),
        })
    }

    /// The escape after a `\`.
    fn escape(&mut self, in_class: bool) -> Result<Esc> {
        let Some(c) = self.peek() else {
            return Err(self.err("'\\' at the end"));
        };
        self.i += 1;
        let set = |negated, items| Esc::Item(Item::Set(Box::new(CharSet::new(negated, items))));
        let digit = || vec![Item::Range(0x30, 0x39)];
        let word =
            || vec![Item::Range(0x30, 0x39), Item::Range(0x41, 0x5A), Item::Range(0x5F, 0x5F), Item::Range(0x61, 0x7A)];
        Ok(match c {
            's' => Esc::Item(Item::Space),
            'S' => set(true, vec![Item::Space]),
            'd' => set(false, digit()),
            'D' => set(true, digit()),
            'w' => set(false, word()),
            'W' => set(true, word()),
            'p' | 'P' => {
                let name: String = if self.eat('{') {
                    let start = self.i;
                    while self.peek().is_some_and(|c| c != '}') {
                        self.i += 1;
                    }
                    if !self.eat('}') {
                        return Err(self.err("missing '}' after \\p{"));
                    }
                    self.chars[start..self.i - 1].iter().collect()
                } else {
                    match self.peek() {
                        Some(c) => {
                            self.i += 1;
                            c.to_string()
                        }
                        None => return Err(self.err("'\\p' at the end")),
                    }
                };
                let mask =
                    category_mask(&name).ok_or_else(|| self.err(&format!("unknown Unicode category '{name}'")))?;
                if c == 'p' {
                    Esc::Item(Item::Cats(mask))
                } else {
                    set(true, vec![Item::Cats(mask)])
                }
            }
            'n' => Esc::Char('\n'),
            'r' => Esc::Char('\r'),
            't' => Esc::Char('\t'),
            'f' => Esc::Char('\x0C'),
            'v' => Esc::Char('\x0B'),
            '0' => Esc::Char('\0'),
            'b' if in_class => Esc::Char('\x08'),
            'x' => {
                let hex = self.hex(2)?;
                Esc::Char(char::from_u32(hex).ok_or_else(|| self.err("bad \\x escape"))?)
            }
            'u' => {
                let cp = if self.eat('{') {
                    let start = self.i;
                    while self.peek().is_some_and(|c| c.is_ascii_hexdigit()) && self.i - start < 6 {
                        self.i += 1;
                    }
                    let text: String = self.chars[start..self.i].iter().collect();
                    if text.is_empty() || !self.eat('}') {
                        return Err(self.err("bad \\u{...} escape"));
                    }
                    u32::from_str_radix(&text, 16).map_err(|_| self.err("bad \\u{...} escape"))?
                } else {
                    self.hex(4)?
                };
                Esc::Char(char::from_u32(cp).ok_or_else(|| self.err("\\u escape is not a character"))?)
            }
            c if c.is_ascii_alphanumeric() => {
                return Err(self.err(&format!("unsupported escape '\\{c}'")));
            }
            c => Esc::Char(c),
        })
    }

    fn hex(&mut self, n: usize) -> Result<u32> {
        let mut v = 0;
        for _ in 0..n {
            let d = self.peek().and_then(|c| c.to_digit(16)).ok_or_else(|| self.err("expected a hex digit"))?;
            v = v * 16 + d;
            self.i += 1;
        }
        Ok(v)
    }

    /// A class, after its `[`.
    fn class(&mut self, icase: bool) -> Result<CharSet> {
        let negated = self.eat('^');
        let mut items = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.err("missing ']'"));
            };
            self.i += 1;
            let first = match c {
                ']' => break,
                '\\' => self.escape(true)?,
                c => Esc::Char(c),
            };
            let Esc::Char(lo) = first else {
                if let Esc::Item(item) = first {
                    items.push(item);
                }
                continue;
            };
            if self.peek() == Some('-') && self.peek_at(1).is_some_and(|c| c != ']') {
                self.i += 1;
                let c = self.peek().unwrap_or(']');
                self.i += 1;
                let hi = match c {
                    '\\' => match self.escape(true)? {
                        Esc::Char(c) => c,
                        Esc::Item(_) => return Err(self.err("a class cannot be the end of a range")),
                    },
                    c => c,
                };
                if hi < lo {
                    return Err(self.err("range out of order"));
                }
                items.push(Item::Range(lo as u32, hi as u32));
                if icase {
                    add_other_case(lo as u32, hi as u32, &mut items);
                }
            } else {
                items.push(Item::Range(lo as u32, lo as u32));
                if icase {
                    add_other_case(lo as u32, lo as u32, &mut items);
                }
            }
        }
        Ok(CharSet::new(negated, items))
    }
}

/// What an escape stands for.
enum Esc {
    Char(char),
    Item(Item),
}

#[derive(Debug, Clone, Copy)]
enum Inst {
    /// Consume one character of the set.
    Set(u32),
    /// Try the first target, then the second.
    Split(u32, u32),
    Jmp(u32),
    /// A lookahead: program `prog` must (or, if `negate`, must not) match here.
    Look {
        prog: u32,
        negate: bool,
    },
    Start,
    End,
    Match,
}

#[derive(Debug, Clone)]
struct Prog {
    insts: Vec<Inst>,
    /// Bytes a lookahead body can read at most (0 for the main program).
    max_len: usize,
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Regex {
    pattern: String,
    /// `progs[0]` is the pattern; the others are lookahead bodies.
    progs: Vec<Prog>,
    sets: Vec<CharSet>,
}

struct Compiler<'p> {
    pattern: &'p str,
    progs: Vec<Prog>,
    sets: Vec<CharSet>,
    total: usize,
}

impl Compiler<'_> {
    fn push(&mut self, prog: &mut Vec<Inst>, inst: Inst) -> Result<u32> {
        self.total += 1;
        if self.total > MAX_INSTS {
            return Err(Error::invalid(
                "pre-tokenizer regex",
                format!("'{}': the pattern compiles to more than {MAX_INSTS} instructions", self.pattern),
            ));
        }
        prog.push(inst);
        Ok((prog.len() - 1) as u32)
    }

    fn patch(prog: &mut [Inst], at: u32, target: u32, second: bool) {
        match &mut prog[at as usize] {
            Inst::Split(a, b) => *(if second { b } else { a }) = target,
            Inst::Jmp(a) => *a = target,
            _ => {}
        }
    }

    fn emit(&mut self, node: &Node, prog: &mut Vec<Inst>) -> Result<()> {
        match node {
            Node::Set(s) => {
                self.sets.push(s.clone());
                self.push(prog, Inst::Set((self.sets.len() - 1) as u32))?;
            }
            Node::Concat(v) => {
                for n in v {
                    self.emit(n, prog)?;
                }
            }
            Node::Alt(v) => {
                let mut jumps = Vec::new();
                for (k, n) in v.iter().enumerate() {
                    if k + 1 == v.len() {
                        self.emit(n, prog)?;
                    } else {
                        let split = self.push(prog, Inst::Split(0, 0))?;
                        Self::patch(prog, split, split + 1, false);
                        self.emit(n, prog)?;
                        jumps.push(self.push(prog, Inst::Jmp(0))?);
                        let next = prog.len() as u32;
                        Self::patch(prog, split, next, true);
                    }
                }
                let end = prog.len() as u32;
                for j in jumps {
                    Self::patch(prog, j, end, false);
                }
            }
            Node::Repeat { node, min, max, greedy } => {
                for _ in 0..*min {
                    self.emit(node, prog)?;
                }
                // A split whose preferred branch (by greed) is the body.
                let split = |c: &mut Self, prog: &mut Vec<Inst>| -> Result<u32> {
                    let at = c.push(prog, Inst::Split(0, 0))?;
                    Self::patch(prog, at, at + 1, !*greedy);
                    Ok(at)
                };
                let exit = |prog: &mut [Inst], at: u32, end: u32| Self::patch(prog, at, end, *greedy);
                match max {
                    None => {
                        let top = split(self, prog)?;
                        self.emit(node, prog)?;
                        self.push(prog, Inst::Jmp(top))?;
                        let end = prog.len() as u32;
                        exit(prog, top, end);
                    }
                    Some(max) => {
                        let mut splits = Vec::new();
                        for _ in *min..*max {
                            splits.push(split(self, prog)?);
                            self.emit(node, prog)?;
                        }
                        let end = prog.len() as u32;
                        for s in splits {
                            exit(prog, s, end);
                        }
                    }
                }
            }
            Node::Look { node, negate } => {
                let id = self.compile(node)?;
                self.push(prog, Inst::Look { prog: id, negate: *negate })?;
            }
            Node::Start => {
                self.push(prog, Inst::Start)?;
            }
            Node::End => {
                self.push(prog, Inst::End)?;
            }
        }
        Ok(())
    }

    /// Compiles `node` into a new program; its index.
    fn compile(&mut self, node: &Node) -> Result<u32> {
        let id = self.progs.len();
        self.progs.push(Prog { insts: Vec::new(), max_len: node.max_len().unwrap_or(0) });
        let mut insts = Vec::new();
        self.emit(node, &mut insts)?;
        self.push(&mut insts, Inst::Match)?;
        self.progs[id].insts = insts;
        Ok(id as u32)
    }
}

/// Reusable buffers for matching.
#[derive(Default, Debug)]
pub struct Scratch {
    visited: Visited,
    stack: Vec<(u32, usize)>,
}

/// The (position, instruction) states tried so far, for the positions from
/// `base` on: a window of `cap` columns (a power of two) used as a ring, one
/// column of `stride` words per position. Positions below `base` are never
/// visited again and their columns are reused, so the memory is what the
/// search spans at once, not the whole text.
#[derive(Default, Debug)]
struct Visited {
    bits: Vec<u64>,
    stride: usize,
    cap: usize,
    base: usize,
}

impl Visited {
    /// Empties the set for a program of `n` instructions, from `base` on.
    fn reset(&mut self, n: usize, base: usize) {
        self.stride = n.div_ceil(64).max(1);
        self.base = base;
        self.cap = 0;
        self.bits.clear();
    }

    /// Marks the state; whether it was new. A position below `base`, or
    /// one the set cannot grow to hold, counts as already tried.
    fn insert(&mut self, pc: u32, pos: usize) -> bool {
        let Some(off) = pos.checked_sub(self.base) else {
            return false;
        };
        if off >= self.cap && !self.grow(off + 1) {
            return false;
        }
        let slot = pos & (self.cap - 1);
        let w = slot * self.stride + pc as usize / 64;
        let b = 1u64 << (pc % 64);
        match self.bits.get_mut(w) {
            Some(word) if *word & b == 0 => {
                *word |= b;
                true
            }
            _ => false,
        }
    }

    /// Widens the window to at least `need` columns.
    fn grow(&mut self, need: usize) -> bool {
        let Some(cap) = need.max(16).checked_next_power_of_two() else {
            return false;
        };
        let Some(words) = cap.checked_mul(self.stride) else {
            return false;
        };
        let mut bits = vec![0u64; words];
        for pos in self.base..self.base + self.cap {
            let (from, to) = ((pos & (self.cap - 1)) * self.stride, (pos & (cap - 1)) * self.stride);
            bits[to..to + self.stride].copy_from_slice(&self.bits[from..from + self.stride]);
        }
        self.bits = bits;
        self.cap = cap;
        true
    }

    /// Forgets the positions below `base` (which must not be visited again).
    fn forget_below(&mut self, base: usize) {
        if base <= self.base {
            return;
        }
        if base - self.base >= self.cap {
            self.bits.fill(0);
        } else {
            for pos in self.base..base {
                self.clear_column(pos);
            }
        }
        self.base = base;
    }

    /// Forgets every state at `pos`.
    fn clear_column(&mut self, pos: usize) {
        if self.cap == 0 || pos < self.base || pos - self.base >= self.cap {
            return;
        }
        let at = (pos & (self.cap - 1)) * self.stride;
        self.bits[at..at + self.stride].fill(0);
    }
}

impl Regex {
    /// Parses and compiles `pattern`.
    pub fn new(pattern: &str) -> Result<Self> {
        let mut p = Parser { pattern, chars: pattern.chars().collect(), i: 0 };
        let node = p.alt(false, 0)?;
        if p.i < p.chars.len() {
            return Err(p.err("unmatched ')'"));
        }
        let mut c = Compiler { pattern, progs: Vec::new(), sets: Vec::new(), total: 0 };
        c.compile(&node)?;
        Ok(Regex { pattern: pattern.to_string(), progs: c.progs, sets: c.sets })
    }

    /// The pattern it was compiled from.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// The leftmost-first non-empty match in `text` that starts at or after
    /// byte `start`: its byte range. `^` and `$` are the ends of `text`.
    pub fn find_at(&self, text: &str, start: usize) -> Option<(usize, usize)> {
        let mut v = Visited::default();
        v.reset(self.progs[0].insts.len(), start);
        let mut stack = Vec::new();
        let mut s = start;
        while s < text.len() {
            if !text.is_char_boundary(s) {
                return None;
            }
            if let Some(e) = self.run(0, text, s, false, &mut v, &mut stack) {
                return Some((s, e));
            }
            s += text[s..].chars().next().map_or(1, char::len_utf8);
            v.forget_below(s);
        }
        None
    }

    /// Splits `text[lo..hi]` the way llama.cpp applies one regex of a list:
    /// every match is a piece, and so is every non-empty stretch between
    /// matches. Appends the pieces' byte ranges (in `text`) to `out`. The
    /// piece is matched as a text of its own: `^`, `$` and lookaheads do
    /// not see past it.
    pub(crate) fn split_range(
        &self,
        text: &str,
        lo: usize,
        hi: usize,
        out: &mut Vec<(usize, usize)>,
        scratch: &mut Scratch,
    ) {
        let Some(hay) = text.get(lo..hi) else {
            return;
        };
        let len = hay.len();
        let Scratch { visited: v, stack } = scratch;
        v.reset(self.progs[0].insts.len(), 0);
        let (mut last, mut pos) = (0, 0);
        while pos < len {
            let mut s = pos;
            let found = loop {
                if s >= len {
                    break None;
                }
                if let Some(e) = self.run(0, hay, s, false, v, stack) {
                    break Some((s, e));
                }
                s += hay[s..].chars().next().map_or(1, char::len_utf8);
                // No later search starts before `s`.
                v.forget_below(s);
            };
            let Some((s, e)) = found else { break };
            if s > last {
                out.push((lo + last, lo + s));
            }
            out.push((lo + s, lo + e));
            last = e;
            pos = e;
            // States at `e` may have been on the path of this match: they
            // are not known to fail, so forget them before searching on.
            v.forget_below(e);
            v.clear_column(e);
        }
        if last < len {
            out.push((lo + last, lo + len));
        }
    }

    /// Runs program `p` anchored at `start` in `hay`; the end of the first
    /// match in priority order (non-empty unless `allow_empty`).
    fn run(
        &self,
        p: usize,
        hay: &str,
        start: usize,
        allow_empty: bool,
        v: &mut Visited,
        stack: &mut Vec<(u32, usize)>,
    ) -> Option<usize> {
        let insts = &self.progs[p].insts;
        let base = stack.len();
        stack.push((0, start));
        let mut result = None;
        'outer: while stack.len() > base {
            let Some((mut pc, mut pos)) = stack.pop() else {
                break;
            };
            loop {
                if !v.insert(pc, pos) {
                    continue 'outer;
                }
                match insts[pc as usize] {
                    Inst::Match => {
                        if pos > start || allow_empty {
                            result = Some(pos);
                            break 'outer;
                        }
                        continue 'outer;
                    }
                    Inst::Set(s) => match hay.get(pos..).and_then(|t| t.chars().next()) {
                        Some(c) if self.sets[s as usize].matches(c) => {
                            pos += c.len_utf8();
                            pc += 1;
                        }
                        _ => continue 'outer,
                    },
                    Inst::Split(a, b) => {
                        stack.push((b, pos));
                        pc = a;
                    }
                    Inst::Jmp(a) => pc = a,
                    Inst::Look { prog, negate } => {
                        if self.look(prog as usize, hay, pos) == negate {
                            continue 'outer;
                        }
                        pc += 1;
                    }
                    Inst::Start => {
                        if pos != 0 {
                            continue 'outer;
                        }
                        pc += 1;
                    }
                    Inst::End => {
                        if pos != hay.len() {
                            continue 'outer;
                        }
                        pc += 1;
                    }
                }
            }
        }
        stack.truncate(base);
        result
    }

    /// Whether lookahead body `p` matches at `pos`.
    fn look(&self, p: usize, hay: &str, pos: usize) -> bool {
        let prog = &self.progs[p];
        let mut v = Visited::default();
        v.reset(prog.insts.len(), pos);
        // The body reads at most `max_len` bytes: size the window once.
        v.grow(prog.max_len + 1);
        let mut stack = Vec::new();
        self.run(p, hay, pos, true, &mut v, &mut stack).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_visited_window_stays_small_on_a_long_text() {
        let re = Regex::new("'s|'t| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)").unwrap();
        let text = "Some words, 42 numbers and  spaces. ".repeat(30_000);
        let mut out = Vec::new();
        let mut scratch = Scratch::default();
        re.split_range(&text, 0, text.len(), &mut out, &mut scratch);
        // "Some", " words", ",", " 42", " numbers", " and", " ", " spaces",
        // "." and the space before the next "Some" joins it; the last stays.
        assert_eq!(out.len(), 9 * 30_000 + 1);
        assert_eq!(out.last(), Some(&(text.len() - 1, text.len())));
        // The window holds what one search spans (a word), not the text.
        assert!(scratch.visited.cap <= 64, "{}", scratch.visited.cap);
        assert!(scratch.visited.bits.len() <= 64 * scratch.visited.stride);
    }
}
