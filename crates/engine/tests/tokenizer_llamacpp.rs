//! Every llama.cpp pre-tokenizer, as data: the vocabularies in
//! `testdata/llamacpp-vocab` against llama.cpp's vectors, SmolLM2's
//! vocabulary, the regex engine construct by construct, and splits worked
//! out by hand for the pre-tokenizers that have no vocabulary here.

mod common;
use common::*;

use engine::tokenizer::bpe::regex::Regex;
use engine::tokenizer::bpe::{BpeTokenizer, PreTokenizer, Splitter};
use engine::tokenizer::Tokenizer;

/// llama.cpp test-tokenizer-0 vectors: inputs separated by
/// `__ggml_vocab_test__` lines, one line of ids per input.
fn vectors(inp: &str, out: &str) -> Vec<(String, Vec<u32>)> {
    let inp = String::from_utf8(read(inp)).unwrap();
    let out = String::from_utf8(read(out)).unwrap();
    let texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    let texts = &texts[..texts.len() - 1]; // the file ends with the separator
    let ids: Vec<Vec<u32>> = out.lines().map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect()).collect();
    assert_eq!(texts.len(), ids.len());
    texts.iter().map(|t| t.to_string()).zip(ids).collect()
}

/// Tokenizes every vector of `ggml-vocab-<name>.gguf` without BOS and
/// without parsing special tokens; returns the tokenizer.
fn check_vocab(name: &str, pre: &PreTokenizer) -> Option<Tokenizer> {
    let file = format!("testdata/llamacpp-vocab/ggml-vocab-{name}.gguf");
    // The larger vocabularies are not in tests/data: they come from ../shared.
    testdata::optional(&format!("vocab {name}"), &file)?;
    let tok = engine::gguf_model::tokenizer(&read(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let Tokenizer::Bpe(bpe) = &tok else { panic!("{file}: not BPE") };
    assert_eq!(bpe.pre_tokenizer(), pre, "{file}");
    assert!(tok.warnings().is_empty(), "{file}: {:?}", tok.warnings());
    let cases = vectors(&format!("{file}.inp"), &format!("{file}.out"));
    assert_eq!(cases.len(), 46);
    let mut bad = Vec::new();
    for (text, want) in &cases {
        let got = tok.encode(text, false);
        if &got != want {
            bad.push(format!("{text:?}\n  got  {got:?}\n  want {want:?}\n  words {:?}", bpe.split(text)));
        }
    }
    assert!(bad.is_empty(), "{file}: {} of {} differ:\n{}", bad.len(), cases.len(), bad.join("\n"));
    Some(tok)
}

#[test]
fn vocab_gpt2() {
    check_vocab("gpt-2", &PreTokenizer::Gpt2);
}

#[test]
fn vocab_mpt() {
    check_vocab("mpt", &PreTokenizer::Mpt);
}

#[test]
fn vocab_falcon() {
    check_vocab("falcon", &PreTokenizer::Falcon);
}

#[test]
fn vocab_starcoder() {
    check_vocab("starcoder", &PreTokenizer::Starcoder);
}

#[test]
fn vocab_refact() {
    check_vocab("refact", &PreTokenizer::Refact);
}

#[test]
fn vocab_deepseek_coder() {
    check_vocab("deepseek-coder", &PreTokenizer::DeepseekCoder);
}

#[test]
fn vocab_deepseek_llm() {
    check_vocab("deepseek-llm", &PreTokenizer::DeepseekLlm);
}

#[test]
fn vocab_spm_files_still_pass() {
    for name in ["llama-spm", "phi-3"] {
        let file = format!("testdata/llamacpp-vocab/ggml-vocab-{name}.gguf");
        let tok = engine::gguf_model::tokenizer(&read(&file)).unwrap();
        assert!(matches!(tok, Tokenizer::Spm(_)));
        for (text, want) in vectors(&format!("{file}.inp"), &format!("{file}.out")) {
            assert_eq!(tok.encode(&text, false), want, "{name} {text:?}");
        }
    }
}

#[test]
fn smollm2_vocab() {
    if testdata::optional("smollm2_vocab", "testdata/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf").is_none() {
        return;
    }
    // Only the tokenizer is read from the file (its metadata), not the model.
    let tok = engine::gguf_model::tokenizer(&read("testdata/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    let Tokenizer::Bpe(bpe) = &tok else { panic!("not BPE") };
    assert_eq!(bpe.pre_tokenizer(), &PreTokenizer::Smollm);
    let cases = vectors("testdata/smollm2/vocab-tests.inp", "testdata/smollm2/vocab-tests.out");
    assert_eq!(cases.len(), 46);
    for (text, want) in cases {
        assert_eq!(tok.encode(&text, false), want, "{text:?} words {:?}", bpe.split(&text));
    }
}

// ---------------------------------------------------------------------------
// Loading: names, warnings, BOS, ignore_merges.

/// The gpt-2 vocabulary's tokenizer metadata with `tokenizer.ggml.pre` set
/// to `pre`, as a GGUF file of its own.
fn gpt2_vocab_with_pre(pre: &str) -> Vec<u8> {
    use engine::gguf::{Gguf, GgufWriter, Value};
    let v = read("testdata/llamacpp-vocab/ggml-vocab-gpt-2.gguf");
    let g = Gguf::parse(&v, v.len() as u64).unwrap();
    let mut w = GgufWriter::new();
    for (k, val) in &g.metadata {
        if k.starts_with("tokenizer.") && k != "tokenizer.ggml.pre" {
            w.add_kv(k, val.clone());
        }
    }
    w.add_kv("tokenizer.ggml.pre", Value::String(pre.into()));
    w.to_bytes().unwrap()
}

#[test]
fn unknown_pre_tokenizer_loads_with_gpt2_rules_and_a_warning() {
    let tok = engine::gguf_model::tokenizer(&gpt2_vocab_with_pre("no-such-pre")).unwrap();
    let warnings = tok.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("'no-such-pre'") && warnings[0].contains("GPT-2"), "{warnings:?}");
    let Tokenizer::Bpe(bpe) = &tok else { panic!() };
    assert_eq!(bpe.pre_tokenizer(), &PreTokenizer::Unknown("no-such-pre".into()));
    // It tokenizes exactly as the gpt-2 file does.
    let base = "testdata/llamacpp-vocab/ggml-vocab-gpt-2.gguf";
    for (text, want) in vectors(&format!("{base}.inp"), &format!("{base}.out")) {
        assert_eq!(tok.encode(&text, false), want, "{text:?}");
    }
    // A known name gives no warning.
    let known = engine::gguf_model::tokenizer(&gpt2_vocab_with_pre("starcoder")).unwrap();
    assert!(known.warnings().is_empty());
}

#[test]
fn every_llamacpp_name_is_known() {
    // The names llama.cpp c392e50 maps in llama_vocab::impl::load, with the
    // type each maps to (LLAMA_VOCAB_PRE_TYPE_*).
    let expected = [
        ("default", "DEFAULT"),
        ("llama3", "LLAMA3"),
        ("llama-v3", "LLAMA3"),
        ("llama-bpe", "LLAMA3"),
        ("falcon3", "LLAMA3"),
        ("deepseek-llm", "DEEPSEEK_LLM"),
        ("deepseek-coder", "DEEPSEEK_CODER"),
        ("deepseek-v3", "DEEPSEEK3_LLM"),
        ("falcon", "FALCON"),
        ("mpt", "MPT"),
        ("starcoder", "STARCODER"),
        ("gpt-2", "GPT2"),
        ("phi-2", "GPT2"),
        ("jina-es", "GPT2"),
        ("jina-de", "GPT2"),
        ("gigachat", "GPT2"),
        ("jina-v1-en", "GPT2"),
        ("jina-v2-es", "GPT2"),
        ("jina-v2-de", "GPT2"),
        ("jina-v2-code", "GPT2"),
        ("roberta-bpe", "GPT2"),
        ("refact", "REFACT"),
        ("command-r", "COMMAND_R"),
        ("qwen2", "QWEN2"),
        ("deepseek-r1-qwen", "QWEN2"),
        ("megrez", "QWEN2"),
        ("stablelm2", "STABLELM2"),
        ("olmo", "OLMO"),
        ("dbrx", "DBRX"),
        ("smaug-bpe", "SMAUG"),
        ("poro-chat", "PORO"),
        ("chatglm-bpe", "CHATGLM4"),
        ("viking", "VIKING"),
        ("jais", "JAIS"),
        ("tekken", "TEKKEN"),
        ("smollm", "SMOLLM"),
        ("codeshell", "CODESHELL"),
        ("bloom", "BLOOM"),
        ("gpt3-finnish", "GPT3_FINNISH"),
        ("exaone", "EXAONE"),
        ("chameleon", "CHAMELEON"),
        ("minerva-7b", "MINERVA"),
    ];
    for (name, ty) in expected {
        let pre = PreTokenizer::from_gguf_pre(name).unwrap();
        assert_eq!(pre.type_name(), ty, "{name}");
        assert_eq!(pre.warning(), None, "{name}");
    }
    assert_eq!(PreTokenizer::names().len(), expected.len());
    assert_eq!(PreTokenizer::all().len(), 28);
    // Every type's regexes compile.
    for pre in PreTokenizer::all() {
        pre.compile().unwrap_or_else(|e| panic!("{}: {e}", pre.type_name()));
    }
}

/// The 256 byte characters, then `extra`.
fn byte_vocab(extra: &[&str]) -> Vec<String> {
    (0..=255u8)
        .map(|b| engine::tokenizer::bpe::byte_to_char(b).to_string())
        .chain(extra.iter().map(|s| s.to_string()))
        .collect()
}

#[test]
fn llama3_takes_whole_words_that_are_tokens_and_wants_bos() {
    // "Ġhello" is a token no merge can build: only ignore_merges finds it.
    let vocab = || byte_vocab(&["Ġhello", "he"]);
    let llama3 = BpeTokenizer::new(vocab(), &["h e"], &[], 256, 256, PreTokenizer::Llama3).unwrap();
    let gpt2 = BpeTokenizer::new(vocab(), &["h e"], &[], 256, 256, PreTokenizer::Gpt2).unwrap();
    assert_eq!(llama3.encode(" hello", false), [256]);
    // Byte ids are the byte values here; "he" (257) is the one merge.
    assert_eq!(gpt2.encode(" hello", false), [32, 257, 108, 108, 111]);
    // Words that are not tokens still merge.
    assert_eq!(llama3.encode(" he", false), [u32::from(b' '), 257]);
    assert!(llama3.add_bos() && !gpt2.add_bos());
    let mut t = Tokenizer::Bpe(llama3);
    assert!(t.add_bos());
    if let Tokenizer::Bpe(b) = &mut t {
        b.set_add_bos(false);
    }
    assert!(!t.add_bos());
}

// ---------------------------------------------------------------------------
// The regex engine, construct by construct.

fn find(pattern: &str, text: &str) -> Option<(usize, usize)> {
    Regex::new(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}")).find_at(text, 0)
}

/// The matched text.
fn m<'t>(pattern: &str, text: &'t str) -> Option<&'t str> {
    find(pattern, text).map(|(a, b)| &text[a..b])
}

#[test]
fn regex_literals_and_concatenation() {
    assert_eq!(find("abc", "xxabcx"), Some((2, 5)));
    assert_eq!(m("abc", "ab"), None);
    assert_eq!(m("中文", "x中文y"), Some("中文"));
    assert_eq!(m("\\.\\+\\(", "a.+(b"), Some(".+("));
    assert_eq!(m("\\r\\n\\t", "a\r\n\tb"), Some("\r\n\t"));
    assert_eq!(m("\\x41\\u00e9\\u{1F600}", "Aé😀"), Some("Aé😀"));
    // A brace that does not start a quantifier is literal.
    assert_eq!(m("x{y", "ax{y"), Some("x{y"));
    assert_eq!(m(".", "\nab"), Some("a"));
}

#[test]
fn regex_alternation_is_leftmost_first() {
    assert_eq!(m("a|ab", "ab"), Some("a"));
    assert_eq!(m("ab|a", "ab"), Some("ab"));
    // Leftmost position wins over alternative order.
    assert_eq!(m("b|a", "ab"), Some("a"));
    // Backtracking into an earlier alternative's group.
    assert_eq!(m("(a|ab)c", "abc"), Some("abc"));
    assert_eq!(m("(?:ab|a)(?:bc|c)", "abc"), Some("abc"));
}

#[test]
fn regex_quantifiers() {
    assert_eq!(m("a?", "a"), Some("a"));
    assert_eq!(m("ba?", "b"), Some("b"));
    assert_eq!(m("a*b", "aaab"), Some("aaab"));
    assert_eq!(m("a+", "baaa"), Some("aaa"));
    assert_eq!(m("a{2}", "aaaa"), Some("aa"));
    assert_eq!(m("a{3}", "aa"), None);
    assert_eq!(m("a{1,3}", "aaaa"), Some("aaa"));
    assert_eq!(m("a{2,}", "aaaaa"), Some("aaaaa"));
    assert_eq!(m("a{0,1}b", "ab"), Some("ab"));
    // Lazy forms.
    assert_eq!(m("a+?", "aaa"), Some("a"));
    assert_eq!(m("a*?b", "aab"), Some("aab"));
    assert_eq!(m("a??a", "aa"), Some("a"));
    assert_eq!(m("a{1,3}?", "aaa"), Some("a"));
    // Greedy backtracks to let the rest match.
    assert_eq!(m("a+ab", "aaab"), Some("aaab"));
    assert_eq!(m("(ab)+", "ababa"), Some("abab"));
    // At 0 no count of 1..=4 letters is followed by Z; at 1, four are.
    assert_eq!(m("(A|B|C){1,4}Z", "ABCABZ"), Some("BCABZ"));
    // Empty matches are never reported.
    assert_eq!(m("a*", "bbb"), None);
    assert_eq!(m("a*", "bab"), Some("a"));
}

#[test]
fn regex_classes() {
    assert_eq!(m("[a-c]+", "xxabcd"), Some("abc"));
    assert_eq!(m("[^a-c]+", "abxyc"), Some("xy"));
    assert_eq!(m("[\\-\\]\\\\]+", "a-]\\b"), Some("-]\\"));
    assert_eq!(m("[a-]+", "b-a-"), Some("-a-"));
    assert_eq!(m("[(|.)]+", "ab(|.)c"), Some("(|.)"));
    assert_eq!(m("[\\t\\n]", "a\nb"), Some("\n"));
    // Ranges of any characters, e.g. CJK and Hangul as deepseek uses them.
    assert_eq!(m("[一-龥가-퟿]+", "x中文한국y"), Some("中文한국"));
    assert_eq!(m("[!-/:-@\\[-`{-~]", "a`"), Some("`"));
    assert_eq!(m("[^\\s\\p{L}\\p{N}]+", "ab!?€ c"), Some("!?€"));
    assert_eq!(m("[\\d]+", "x42"), Some("42"));
    assert_eq!(m("[\\S]+", "  ab "), Some("ab"));
}

#[test]
fn regex_unicode_classes() {
    assert_eq!(m("\\p{L}+", "1é中a2"), Some("é中a"));
    assert_eq!(m("\\p{Lu}", "aÉ"), Some("É"));
    assert_eq!(m("\\p{Ll}", "Aé"), Some("é"));
    assert_eq!(m("\\p{Lt}", "Aǅ"), Some("ǅ"));
    assert_eq!(m("\\p{Lm}", "aʰ"), Some("ʰ"));
    assert_eq!(m("\\p{Lo}", "a中"), Some("中"));
    assert_eq!(m("\\p{M}", "e\u{301}"), Some("\u{301}"));
    assert_eq!(m("\\p{N}+", "a²½٣5"), Some("²½٣5"));
    assert_eq!(m("\\p{P}+", "a、。!b"), Some("、。!"));
    assert_eq!(m("\\p{S}+", "a€~+b"), Some("€~+"));
    assert_eq!(m("\\P{L}+", "ab12c"), Some("12"));
    assert_eq!(m("\\pN", "a7"), Some("7"));
    // \d is ASCII only; \p{N} is not.
    assert_eq!(m("\\d", "²5"), Some("5"));
    assert_eq!(m("\\w+", "é_a1"), Some("_a1"));
    assert_eq!(m("\\W", "aé"), Some("é"));
    // \s is White_Space: U+3000 and U+0085 yes, U+001C and U+200B no.
    assert_eq!(m("\\s+", "a\u{3000}\u{85}\u{a0}b"), Some("\u{3000}\u{85}\u{a0}"));
    assert_eq!(m("\\s", "\u{1c}\u{200b}"), None);
    assert_eq!(m("\\S", " \u{200b}"), Some("\u{200b}"));
}

#[test]
fn regex_case_insensitive_groups() {
    let contractions = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
    for t in ["'s", "'S", "'Re", "'rE", "'LL", "'D"] {
        assert_eq!(m(contractions, t), Some(t));
    }
    assert_eq!(m(contractions, "'x"), None);
    assert_eq!(m("(?i:[a-c]x)", "BX"), Some("BX"));
    // Only inside the group.
    assert_eq!(m("(?i:a)b", "AB"), None);
    assert_eq!(m("(?i:a)b", "Ab"), Some("Ab"));
    // ASCII only, as llama.cpp's splitters.
    assert_eq!(m("(?i:é)", "É"), None);
}

#[test]
fn regex_lookahead_and_anchors() {
    assert_eq!(m("\\s+(?!\\S)", "a   b"), Some("  "));
    assert_eq!(m("\\s+(?!\\S)", "a b"), None);
    assert_eq!(m("\\s+(?!\\S)", "a  "), Some("  "));
    assert_eq!(m("a(?=b)", "ac ab"), Some("a"));
    assert_eq!(find("a(?=b)", "ac ab"), Some((3, 4)));
    assert_eq!(m("((?=[\\p{L}])([^a-z]))+", "1aÉB2"), Some("ÉB"));
    assert_eq!(m("\\s+$", "a  b  "), Some("  "));
    assert_eq!(find("\\s+$", "a  b  "), Some((4, 6)));
    assert_eq!(m("^a", "ba"), None);
    assert_eq!(m("^b", "ba"), Some("b"));
}

#[test]
fn regex_errors_name_what_is_wrong() {
    for (pattern, needle) in [
        ("a++", "possessive"),
        ("(?<=a)b", "lookbehind"),
        ("(?=a+)b", "unbounded"),
        ("\\p{Xx}", "'Xx'"),
        ("[b-a]", "out of order"),
        ("(a", "missing ')'"),
        ("a)", "unmatched ')'"),
        ("a{2000}", "above"),
        ("a{3,2}", "m < n"),
        ("*a", "nothing to repeat"),
        ("\\1", "unsupported escape"),
        ("\\b", "unsupported escape"),
        ("[a", "missing ']'"),
        ("(?x)", "unsupported group"),
        ("(a{1,1000}){1,1000}", "instructions"),
    ] {
        match Regex::new(pattern) {
            Err(engine::Error::Invalid { what, detail }) => {
                assert_eq!(what, "pre-tokenizer regex");
                assert!(detail.contains(needle), "{pattern}: {detail}");
                assert!(detail.contains(pattern), "{pattern}: {detail}");
            }
            other => panic!("{pattern}: {other:?}"),
        }
    }
}

#[test]
fn regex_work_is_bounded_on_pathological_input() {
    let long_a = "a".repeat(20_000);
    let long_sp = " ".repeat(20_000) + "x";
    let t = std::time::Instant::now();
    assert_eq!(find("(a*)*b", &long_a), None);
    assert_eq!(find("(a|a)*b", &long_a), None);
    assert_eq!(find("(a|aa)+$", &(long_a.clone() + "b")), None);
    assert_eq!(find("\\s+$", &long_sp), None);
    let sp = Splitter::new(&["\\s+$|\\s"]).unwrap();
    assert_eq!(sp.split(&long_sp).len(), 20_001);
    let words = PreTokenizer::Gpt2.compile().unwrap().split(&long_sp);
    assert_eq!(words, [&long_sp[..19_999], " x"]);
    assert!(t.elapsed().as_secs() < 20, "{:?}", t.elapsed());
}

// ---------------------------------------------------------------------------
// Splitting with a list, as llama.cpp applies one.

#[test]
fn a_list_splits_the_pieces_of_the_previous_regex() {
    // "\p{N}" first: "abc " is left unmatched, each digit is a piece; then
    // GPT-2's pattern splits "abc " into "abc" and " " (its final
    // `\s+(?!\S)` matches the space at the end of the piece: the lookahead
    // does not see past the piece).
    let sp = Splitter::new(&["\\p{N}", PreTokenizer::Gpt2.regexes()[0]]).unwrap();
    assert_eq!(sp.split("abc 123"), ["abc", " ", "1", "2", "3"]);
    // `$` is the end of the piece, not of the text.
    let sp = Splitter::new(&["[\r\n]", "\\s+$"]).unwrap();
    assert_eq!(sp.split("a \nb  "), ["a", " ", "\n", "b", "  "]);
    // Unmatched stretches are pieces, never dropped or merged with matches.
    let sp = Splitter::new(&["x+"]).unwrap();
    assert_eq!(sp.split("abxxcdx"), ["ab", "xx", "cd", "x"]);
    assert_eq!(sp.split(""), Vec::<&str>::new());
}

/// Each expected split below was worked out by hand from the type's regex
/// list (read left to right, leftmost-first, each regex splitting the
/// previous pieces), for the types without a vocabulary in testdata.
#[test]
fn hand_checked_splits_per_family() {
    let cases: &[(PreTokenizer, &str, &[&str])] = &[
        // Llama 3 (dbrx, smaug, chatglm4 share the pattern): the lone space
        // before a digit falls to the last `\s+`; numbers in threes;
        // punctuation takes the line breaks after it; `'[mM]`.
        (
            PreTokenizer::Llama3,
            "Hello world 12345!!\n\nI'M",
            &["Hello", " world", " ", "123", "45", "!!\n\n", "I", "'M"],
        ),
        (PreTokenizer::Dbrx, "x 1234", &["x", " ", "123", "4"]),
        // Qwen2 / stablelm2: single digits.
        (PreTokenizer::Qwen2, "Hello world 123", &["Hello", " world", " ", "1", "2", "3"]),
        (PreTokenizer::Stablelm2, "a\n\n b", &["a", "\n\n", " b"]),
        // Default: punctuation runs first, then GPT-2, then digit runs, then
        // ASCII digit triples.
        (PreTokenizer::Default, "x 1234567", &["x", " ", "123", "456", "7"]),
        (PreTokenizer::Default, "a+=b", &["a", "+=", "b"]),
        // Falcon: punctuation (with `) first, GPT-2, then triples.
        (PreTokenizer::Falcon, "a+b=12345", &["a", "+", "b", "=", "123", "45"]),
        // Starcoder family: digits first, then GPT-2.
        (PreTokenizer::CommandR, "abc 123", &["abc", " ", "1", "2", "3"]),
        (PreTokenizer::Exaone, "I'll x2", &["I", "'ll", " x", "2"]),
        // GPT-2 family.
        (PreTokenizer::Olmo, "I'm  ok", &["I", "'m", " ", " ok"]),
        // deepseek-coder: line breaks, letter runs with one space before,
        // punctuation runs, CJK runs, single digits.
        (PreTokenizer::DeepseekCoder, "Hi, 世界 42\n", &["Hi", ",", " ", "世界", " ", "4", "2", "\n"]),
        // deepseek-llm: its letter class, then `[!-/:-~...]` (which holds
        // ASCII letters too), trailing space, CJK, digit runs.
        (PreTokenizer::DeepseekLlm, "ab 42  ", &["ab", " ", "42", "  "]),
        // deepseek-v3: digit triples, CJK/kana runs, then its main pattern
        // (a punctuation character may lead ASCII letters).
        (PreTokenizer::Deepseek3Llm, "abc12345カタ.Net", &["abc", "123", "45", "カタ", ".Net"]),
        // Bloom / poro / gpt3-finnish: anything but space and the listed
        // punctuation, which (with `(`, `|`, `)`) is left in unmatched stretches.
        (PreTokenizer::Bloom, "Hi there, (you)|me.", &["Hi", " there", ", (", "you", ")|", "me", "."]),
        (PreTokenizer::Poro, "a…b", &["a", "…", "b"]),
        // Viking: the same, then single digits.
        (PreTokenizer::Viking, "a 12", &["a", " ", "1", "2"]),
        // Tekken: an upper-case run then lower case; `/` and line breaks
        // after punctuation; a `/` may lead a word.
        (PreTokenizer::Tekken, "HelloWorld ABCdef", &["Hello", "World", " ABCdef"]),
        (PreTokenizer::Tekken, "ABC a/b !!/\nx", &["ABC", " a", "/b", " !!/\n", "x"]),
        // Chameleon: sentinels and image tokens, runs of 2 or 4 spaces and
        // tabs, digits, isolated punctuation, then GPT-2.
        (
            PreTokenizer::Chameleon,
            "<sentinel:12>IMGIMGABZ  \t7x!",
            &["<", "sentinel", ":", "1", "2", ">", "IMGIMGABZ", "  ", "\t", "7", "x", "!"],
        ),
    ];
    for (pre, text, want) in cases {
        let got = pre.compile().unwrap().split(text);
        assert_eq!(&got, want, "{} split of {text:?}", pre.type_name());
    }
}

/// xorshift64
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A string of characters drawn mostly from the classes the patterns
    /// care about, sometimes from anywhere in Unicode.
    fn text(&mut self, len: usize) -> String {
        const PICK: &[char] = &[
            'a', 'Z', 's', 'I', '\'', ' ', ' ', '\n', '\r', '\t', '0', '9', '.', ',', '!', '/', '(', '|', '$', '~',
            'é', 'É', 'ǅ', 'ʰ', '中', 'カ', '한', '²', '٣', '\u{a0}', '\u{3000}', '\u{85}', '\u{301}', '😀', '€', '…',
            '、', '\u{200b}', '\u{e000}', '\u{378}', '<', '>',
        ];
        (0..len)
            .map(|_| {
                if self.below(8) == 0 {
                    loop {
                        if let Some(c) = char::from_u32(self.below(0x11_0000) as u32) {
                            break c;
                        }
                    }
                } else {
                    PICK[self.below(PICK.len())]
                }
            })
            .collect()
    }
}

#[test]
fn every_pre_tokenizer_splits_random_text_into_pieces_that_rebuild_it() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let splitters: Vec<(String, Splitter)> =
        PreTokenizer::all().iter().map(|p| (p.type_name().to_string(), p.compile().unwrap())).collect();
    for round in 0..400 {
        let text = rng.text(round % 60);
        for (name, sp) in &splitters {
            let words = sp.split(&text);
            assert!(words.iter().all(|w| !w.is_empty()), "{name} {text:?}: {words:?}");
            assert_eq!(words.concat(), text, "{name} {text:?}");
        }
    }
    // Random bytes, made into a string the lossy way.
    for _ in 0..200 {
        let n = rng.below(80);
        let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        let text = String::from_utf8_lossy(&bytes);
        for (name, sp) in &splitters {
            assert_eq!(sp.split(&text).concat(), text, "{name} {bytes:?}");
        }
    }
}

/// The gpt-2 vocabulary's tokenizer metadata, with `set` added (replacing
/// keys of the same name) and the keys in `drop` left out.
fn gpt2_metadata(set: &[(&str, engine::gguf::Value)], drop: &[&str]) -> engine::gguf::Gguf {
    use engine::gguf::{Gguf, GgufWriter};
    let v = read("testdata/llamacpp-vocab/ggml-vocab-gpt-2.gguf");
    let g = Gguf::parse(&v, v.len() as u64).unwrap();
    let mut w = GgufWriter::new();
    for (k, val) in &g.metadata {
        if k.starts_with("tokenizer.") && !drop.contains(&k.as_str()) && !set.iter().any(|(s, _)| s == k) {
            w.add_kv(k, val.clone());
        }
    }
    for (k, val) in set {
        w.add_kv(k, val.clone());
    }
    let bytes = w.to_bytes().unwrap();
    Gguf::parse(&bytes, bytes.len() as u64).unwrap()
}

#[test]
fn bpe_from_gguf_reads_add_bos_and_defaults_a_missing_pre() {
    use engine::gguf::Value;
    // As the engine's loader for a file that has everything.
    let g = gpt2_metadata(&[], &[]);
    let tok = BpeTokenizer::from_gguf(&g).unwrap();
    assert_eq!(tok.pre_tokenizer(), &PreTokenizer::Gpt2);
    assert!(tok.warnings().is_empty() && !tok.add_bos());
    let base = "testdata/llamacpp-vocab/ggml-vocab-gpt-2.gguf";
    for (text, want) in vectors(&format!("{base}.inp"), &format!("{base}.out")) {
        assert_eq!(tok.encode(&text, false), want, "{text:?}");
    }
    // add_bos_token overrides the pre-tokenizer's default both ways.
    let on = gpt2_metadata(&[("tokenizer.ggml.add_bos_token", Value::Bool(true))], &[]);
    assert!(BpeTokenizer::from_gguf(&on).unwrap().add_bos());
    let llama3 = gpt2_metadata(&[("tokenizer.ggml.pre", Value::String("llama-bpe".into()))], &[]);
    assert!(BpeTokenizer::from_gguf(&llama3).unwrap().add_bos());
    let off = gpt2_metadata(
        &[
            ("tokenizer.ggml.pre", Value::String("llama-bpe".into())),
            ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
        ],
        &[],
    );
    assert!(!BpeTokenizer::from_gguf(&off).unwrap().add_bos());
    // No pre-tokenizer: llama.cpp's default list, with a warning.
    let none = BpeTokenizer::from_gguf(&gpt2_metadata(&[], &["tokenizer.ggml.pre"])).unwrap();
    assert_eq!(none.pre_tokenizer(), &PreTokenizer::Default);
    assert_eq!(none.warnings().len(), 1);
    assert!(none.warnings()[0].contains("tokenizer.ggml.pre"));
    // A pre-tokenizer that is not a string is an error naming the key.
    let bad = gpt2_metadata(&[("tokenizer.ggml.pre", Value::U32(7))], &[]);
    let err = BpeTokenizer::from_gguf(&bad).unwrap_err().to_string();
    assert!(err.contains("tokenizer.ggml.pre"), "{err}");
}
