//! Byte-level BPE tokenizer against the GPT-2 reference data (see the testdata crate).

use engine::tokenizer::bpe::{byte_to_char, char_to_byte, BpeTokenizer, PreTokenizer};
use engine::Error;
use std::sync::OnceLock;

fn read(path: &str) -> Vec<u8> {
    testdata::read(&format!("testdata/{path}"))
}

fn gpt2_files() -> (Vec<u8>, Vec<u8>) {
    (read("gpt2-bpe/encoder.json"), read("gpt2-bpe/vocab.bpe"))
}

fn gpt2() -> &'static BpeTokenizer {
    static TOK: OnceLock<BpeTokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let (enc, bpe) = gpt2_files();
        BpeTokenizer::from_encoder_json(&enc, &bpe).expect("GPT-2 tokenizer")
    })
}

fn expected_cases() -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_slice(&read("expected/gpt2-bpe-tokenizer.json")).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn check_expected(tok: &BpeTokenizer) {
    let cases = expected_cases();
    assert_eq!(cases.len(), 53);
    for case in &cases {
        let text = case["text"].as_str().unwrap();
        let want = ids_of(&case["ids"]);
        let got = tok.encode(text, false);
        assert_eq!(got, want, "ids of {text:?}");
        let pieces: Vec<&str> = got.iter().map(|&id| tok.piece(id).unwrap()).collect();
        let tokens: Vec<&str> = case["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        assert_eq!(pieces, tokens, "tokens of {text:?}");
        assert_eq!(tok.decode(&got), case["decoded"].as_str().unwrap(), "decode of {text:?}");
    }
}

#[test]
fn gpt2_expected_cases() {
    let tok = gpt2();
    assert_eq!(tok.vocab_size(), 50257);
    assert_eq!((tok.bos(), tok.eos()), (50256, 50256));
    assert_eq!(tok.token_id("Ġthe"), Some(262));
    assert_eq!(tok.piece(15496), Some("Hello"));
    assert_eq!(tok.token_id("not a token"), None);
    check_expected(tok);
}

/// The same vocabulary given the GGUF way: tokens by id, merge lines, types.
#[test]
fn gpt2_through_new() {
    let g = gpt2();
    let tokens: Vec<String> = (0..g.vocab_size() as u32).map(|id| g.piece(id).unwrap().to_string()).collect();
    let (_, bpe) = gpt2_files();
    let bpe = String::from_utf8(bpe).unwrap();
    let merges: Vec<&str> = bpe.lines().skip(1).filter(|l| !l.is_empty()).collect();
    assert_eq!(merges.len(), 50000);
    // As in ggml-vocab-gpt-2.gguf's tokenizer.ggml.token_type: all normal but 50256 (control).
    let mut types = vec![1; tokens.len()];
    types[50256] = 3;
    let tok = BpeTokenizer::new(tokens, &merges, &types, 50256, 50256, PreTokenizer::Gpt2).unwrap();
    check_expected(&tok);
    assert_eq!(tok.encode_with_special("a<|endoftext|>", false), [64, 50256]);
}

#[test]
fn llamacpp_gpt2_vectors() {
    let tok = gpt2();
    let inp = String::from_utf8(read("llamacpp-vocab/ggml-vocab-gpt-2.gguf.inp")).unwrap();
    let out = String::from_utf8(read("llamacpp-vocab/ggml-vocab-gpt-2.gguf.out")).unwrap();
    let texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    let (last, texts) = texts.split_last().unwrap();
    assert_eq!(*last, "", "the file ends with the separator");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!((texts.len(), lines.len()), (46, 46));
    for (text, line) in texts.iter().zip(lines) {
        let want: Vec<u32> = line.split_whitespace().map(|n| n.parse().unwrap()).collect();
        let got = tok.encode(text, false);
        assert_eq!(got, want, "ids of {text:?}");
        assert_eq!(tok.decode(&got), *text);
    }
}

#[test]
fn special_tokens_only_when_asked() {
    let tok = gpt2();
    let plain = tok.encode("<|endoftext|>", false);
    assert!(plain.len() > 1 && !plain.contains(&50256), "{plain:?}");
    assert_eq!(tok.decode(&plain), "<|endoftext|>");
    assert_eq!(tok.encode_with_special("<|endoftext|>", false), [50256]);

    let text = "Hello<|endoftext|>world";
    let mut want = tok.encode("Hello", false);
    want.push(50256);
    want.extend(tok.encode("world", false));
    assert_eq!(tok.encode_with_special(text, false), want);
    assert!(!tok.encode(text, false).contains(&50256));
    // Control tokens decode to nothing.
    assert_eq!(tok.token_type(50256), Some(3));
    assert_eq!(tok.decode_token(50256), b"");
    assert_eq!(tok.decode(&want), "Helloworld");

    // Text without specials is unchanged; a partial match is ordinary text.
    for t in ["Hello world", "<|endoftext|", "<<|endoftext|>>"] {
        let with = tok.encode_with_special(t, false);
        if t.contains("<|endoftext|>") {
            assert_eq!(with.iter().filter(|&&id| id == 50256).count(), 1);
        } else {
            assert_eq!(with, tok.encode(t, false));
        }
    }
    assert_eq!(tok.encode_with_special("<<|endoftext|>>", false), [27, 50256, 29]);

    // BOS only on request.
    assert_eq!(tok.encode("Hello", true), [50256, 15496]);
    assert_eq!(tok.encode_with_special("", true), [50256]);
}

#[test]
fn streaming_decode_of_multibyte_text() {
    let tok = gpt2();
    let mut split_chars = 0;
    for text in ["日本語のテキスト", "emoji 🦙 😀👍🏽", "한국어 텍스트", "Cửa Việt", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢"]
    {
        let mut bytes = Vec::new();
        for id in tok.encode(text, false) {
            let piece = tok.decode_token(id);
            split_chars += usize::from(std::str::from_utf8(&piece).is_err());
            bytes.extend(piece);
        }
        assert_eq!(bytes, text.as_bytes());
    }
    assert!(split_chars > 5, "these texts have characters split across tokens");
}

#[test]
fn byte_level_alphabet() {
    let mut seen = std::collections::HashSet::new();
    for b in 0..=255u8 {
        let c = byte_to_char(b);
        assert!(seen.insert(c));
        assert_eq!(char_to_byte(c), Some(b));
        let printable = (0x21..=0x7E).contains(&b) || (0xA1..=0xFF).contains(&b) && b != 0xAD;
        assert_eq!(c as u32 == u32::from(b), printable, "byte {b:#x}");
        assert!(printable || (0x100..0x144).contains(&(c as u32)));
        // Every byte is a GPT-2 token of its own.
        assert!(gpt2().token_id(c.encode_utf8(&mut [0; 4])).is_some());
    }
    assert_eq!(byte_to_char(b' '), 'Ġ');
    assert_eq!(byte_to_char(b'\n'), 'Ċ');
    assert_eq!(byte_to_char(0xAD), '\u{143}');
    assert_eq!(char_to_byte('\u{144}'), None);
    assert_eq!(char_to_byte(' '), None);
}

#[test]
fn long_inputs() {
    let tok = gpt2();
    let text = "a".repeat(100_000);
    let ids = tok.encode(&text, false);
    // OpenAI's encoder.py bpe() gives 25,000 x "aaaa" (id 24794) here.
    assert_eq!(ids, vec![24794; 25_000]);
    assert_eq!(tok.decode(&ids), text);
    let text = "🦙x ".repeat(20_000) + &"\n".repeat(1000);
    assert_eq!(tok.decode(&tok.encode(&text, false)), text);
}

/// Splits worked out by hand from the regexes, and confirmed with the Python
/// `regex` module (2026.11.19) running the original patterns.
#[test]
fn gpt2_pre_tokenizer() {
    let cases: &[(&str, &[&str])] = &[
        ("Hello world", &["Hello", " world"]),
        ("  leading", &[" ", " leading"]),
        ("trailing  ", &["trailing", "  "]),
        ("a   b", &["a", "  ", " b"]),
        ("x\n\ny", &["x", "\n", "\n", "y"]),
        ("x \n y", &["x", " \n", " y"]),
        ("tab\there", &["tab", "\t", "here"]),
        (
            "I'M DON'T it's we'Re they'LL 'sa",
            &["I", "'", "M", " DON", "'", "T", " it", "'s", " we", "'", "Re", " they", "'", "LL", " '", "sa"],
        ),
        ("price: $12,345.67!", &["price", ":", " $", "12", ",", "345", ".", "67", "!"]),
        ("2024年5月", &["2024", "年", "5", "月"]),
        ("(hello) \"quoted\"", &["(", "hello", ")", " \"", "quoted", "\""]),
        ("...\n\nNext", &["...", "\n", "\n", "Next"]),
        ("a!\r\nb", &["a", "!", "\r", "\n", "b"]),
        ("\u{3000}全角\u{3000}space", &["\u{3000}", "全角", "\u{3000}", "space"]),
        ("½ and ٣", &["½", " and", " ٣"]),
        ("e\u{301} café", &["e", "\u{301}", " café"]),
        ("🦙🦙 llama", &["🦙🦙", " llama"]),
        ("x\u{a0}y", &["x", "\u{a0}", "y"]),
        ("end\n", &["end", "\n"]),
        (" \n \n", &[" \n \n"]),
        ("a'b", &["a", "'", "b"]),
        ("''s", &["''", "s"]),
        // U+001C..U+001F are not White_Space (Python's str.isspace() says they are).
        ("a\u{1c}b", &["a", "\u{1c}", "b"]),
        ("", &[]),
    ];
    for (text, want) in cases {
        let got: Vec<&str> = PreTokenizer::Gpt2.compile().unwrap().split(text);
        assert_eq!(&got, want, "GPT-2 split of {text:?}");
    }
}

/// As above, for `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|
/// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
#[test]
fn qwen2_pre_tokenizer() {
    let cases: &[(&str, &[&str])] = &[
        ("Hello world", &["Hello", " world"]),
        ("  leading", &[" ", " leading"]),
        ("trailing  ", &["trailing", "  "]),
        ("a   b", &["a", "  ", " b"]),
        // `\s*[\r\n]+` takes whitespace up to the last line break.
        ("x\n\ny", &["x", "\n\n", "y"]),
        ("x \n y", &["x", " \n", " y"]),
        ("a \n\t\n  b", &["a", " \n\t\n", " ", " b"]),
        // Any one non-letter, non-digit, non-newline character joins a word.
        ("tab\there", &["tab", "\there"]),
        ("(hello) \"quoted\"", &["(hello", ")", " \"", "quoted", "\""]),
        ("a'b", &["a", "'b"]),
        ("x\u{a0}y", &["x", "\u{a0}y"]),
        ("\u{3000}全角\u{3000}space", &["\u{3000}全角", "\u{3000}space"]),
        ("line\nnext", &["line", "\n", "next"]),
        // Contractions in any ASCII case.
        (
            "I'M DON'T it's we'Re they'LL 'sa",
            &["I", "'M", " DON", "'T", " it", "'s", " we", "'Re", " they", "'LL", " '", "sa"],
        ),
        // Digits one at a time.
        ("price: $12,345.67!", &["price", ":", " $", "1", "2", ",", "3", "4", "5", ".", "6", "7", "!"]),
        ("2024年5月", &["2", "0", "2", "4", "年", "5", "月"]),
        ("½ and ٣", &["½", " and", " ", "٣"]),
        // Symbols keep the line breaks that follow them.
        ("...\n\nNext", &["...\n\n", "Next"]),
        ("a!\r\nb", &["a", "!\r\n", "b"]),
        ("e\u{301} café", &["e", "\u{301}", " café"]),
        ("🦙🦙 llama", &["🦙🦙", " llama"]),
        ("end\n", &["end", "\n"]),
        (" \n \n", &[" \n \n"]),
        ("''s", &["''", "s"]),
        ("", &[]),
    ];
    for (text, want) in cases {
        let got: Vec<&str> = PreTokenizer::Qwen2.compile().unwrap().split(text);
        assert_eq!(&got, want, "Qwen2 split of {text:?}");
    }
}

#[test]
fn qwen2_pre_tokenizer_in_encode() {
    let g = gpt2();
    let tokens: Vec<String> = (0..g.vocab_size() as u32).map(|id| g.piece(id).unwrap().to_string()).collect();
    let (_, bpe) = gpt2_files();
    let bpe = String::from_utf8(bpe).unwrap();
    let merges: Vec<&str> = bpe.lines().skip(1).collect();
    let tok = BpeTokenizer::new(tokens, &merges, &[], 0, 0, PreTokenizer::Qwen2).unwrap();
    let digits: Vec<u32> = "2024".chars().map(|c| g.token_id(&c.to_string()).unwrap()).collect();
    assert_eq!(tok.encode("2024", false), digits);
    // With all types normal there are no special tokens.
    assert_eq!(tok.encode_with_special("<|endoftext|>", false), g.encode("<|endoftext|>", false));
}

#[test]
fn pre_tokenizer_names() {
    // As llama.cpp maps them: "default" is its own list, not GPT-2's.
    for name in ["gpt-2", "phi-2", "roberta-bpe"] {
        assert_eq!(PreTokenizer::from_gguf_pre(name), Ok(PreTokenizer::Gpt2));
    }
    assert_eq!(PreTokenizer::from_gguf_pre("default"), Ok(PreTokenizer::Default));
    assert_eq!(PreTokenizer::from_gguf_pre("qwen2"), Ok(PreTokenizer::Qwen2));
    assert_eq!(PreTokenizer::from_gguf_pre("llama-bpe"), Ok(PreTokenizer::Llama3));
    // Unknown names (llama.cpp has no "gpt2") load with GPT-2's rules and a warning.
    let unknown = PreTokenizer::from_gguf_pre("gpt2").unwrap();
    assert_eq!(unknown, PreTokenizer::Unknown("gpt2".into()));
    assert_eq!(unknown.regexes(), PreTokenizer::Gpt2.regexes());
    assert!(unknown.warning().unwrap().contains("'gpt2'"));
    assert_eq!(PreTokenizer::Gpt2.warning(), None);
}

/// A tiny vocabulary: the 256 byte characters, then `extra`.
fn byte_vocab(extra: &[&str]) -> Vec<String> {
    (0..=255u8).map(|b| byte_to_char(b).to_string()).chain(extra.iter().map(|s| s.to_string())).collect()
}

#[test]
fn merges_apply_by_rank_then_leftmost() {
    // ab=256 bc=257 abc=258 aa=259
    let vocab = || byte_vocab(&["ab", "bc", "abc", "aa"]);
    let pre = PreTokenizer::Gpt2;
    let a = BpeTokenizer::new(vocab(), &["a b", "b c", "ab c"], &[], 0, 0, pre.clone()).unwrap();
    assert_eq!(a.encode("abc", false), [258]);
    // With "b c" first, "ab c" never applies and "a bc" is not a merge.
    let b = BpeTokenizer::new(vocab(), &["b c", "a b", "ab c"], &[], 0, 0, pre.clone()).unwrap();
    assert_eq!(b.encode("abc", false), [u32::from(b'a'), 257]);
    // Equal ranks: the leftmost pair merges first.
    let c = BpeTokenizer::new(vocab(), &["a a"], &[], 0, 0, pre.clone()).unwrap();
    assert_eq!(c.encode("aaa", false), [259, u32::from(b'a')]);
    assert_eq!(c.encode("aaaa", false), [259, 259]);
    // A repeated merge keeps its first rank.
    let d = BpeTokenizer::new(vocab(), &["b c", "a b", "ab c", "b c"], &[], 0, 0, pre.clone()).unwrap();
    assert_eq!(d.encode("abc", false), b.encode("abc", false));
}

#[test]
fn token_types_in_new() {
    let vocab = byte_vocab(&["<|im_start|>", "<|im", "<tool>", "ab"]);
    let mut types = vec![1; vocab.len()];
    types[256] = 3;
    types[257] = 3;
    types[258] = 4;
    let tok = BpeTokenizer::new(vocab, &["a b"], &types, 256, 256, PreTokenizer::Qwen2).unwrap();
    // The longest special token wins where several match.
    assert_eq!(tok.encode_with_special("<|im_start|>ab", true), [256, 256, 259]);
    assert_eq!(tok.encode_with_special("x<|im", false), [u32::from(b'x'), 257]);
    assert_eq!(tok.encode_with_special("<tool>", false), [258]);
    // Plain encode: control tokens are text, but user-defined ones are split
    // off (as llama.cpp does with parse_special = false).
    assert_eq!(tok.encode("<|im<tool>", false), "<|im".bytes().map(u32::from).chain([258]).collect::<Vec<_>>());
    // Control decodes to nothing, user-defined to its raw text.
    assert_eq!(tok.decode(&[256, 258, 259]), "<tool>ab");
    assert_eq!(tok.decode_token(258), b"<tool>");
}

#[test]
fn bad_vocabularies() {
    let pre = PreTokenizer::Gpt2;
    let v = || byte_vocab(&["ab"]);
    let invalid = |r: Result<BpeTokenizer, Error>, needle: &str| match r {
        Err(e @ Error::Invalid { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(needle), "{msg:?} should name {needle:?}");
        }
        other => panic!("expected Invalid naming {needle:?}, got {other:?}"),
    };
    invalid(BpeTokenizer::new(vec![], &[], &[], 0, 0, pre.clone()), "no tokens");
    invalid(BpeTokenizer::new(v(), &["a c"], &[], 0, 0, pre.clone()), "a c");
    invalid(BpeTokenizer::new(v(), &["a x"], &[], 0, 0, pre.clone()), "'ax' is not in the vocabulary");
    invalid(BpeTokenizer::new(v(), &["a zzz"], &[], 0, 0, pre.clone()), "'zzz'");
    invalid(BpeTokenizer::new(v(), &["ab"], &[], 0, 0, pre.clone()), "'ab'");
    invalid(BpeTokenizer::new(v(), &[""], &[], 0, 0, pre.clone()), "merge 0");
    invalid(BpeTokenizer::new(v(), &["a b", "a "], &[], 0, 0, pre.clone()), "merge 1");
    invalid(BpeTokenizer::new(v(), &[], &[1, 1], 0, 0, pre.clone()), "2 types for 257 tokens");
    invalid(BpeTokenizer::new(v(), &[], &[9; 257], 0, 0, pre.clone()), "unknown type 9");
    assert_eq!(
        BpeTokenizer::new(v(), &[], &[], 0, 257, pre.clone()).unwrap_err(),
        Error::TokenOutOfRange { id: 257, vocab: 257 }
    );
    let tok = BpeTokenizer::new(v(), &["a b"], &[], 0, 0, pre.clone()).unwrap();
    assert_eq!(tok.clone().with_bos_eos(256, 1).map(|t| (t.bos(), t.eos())), Ok((256, 1)));
    assert_eq!(tok.with_bos_eos(300, 0).unwrap_err(), Error::TokenOutOfRange { id: 300, vocab: 257 });
}

#[test]
fn unknown_merge_in_vocab_bpe() {
    let (enc, bpe) = gpt2_files();
    let mut bpe = bpe;
    bpe.extend_from_slice("Ġthe zzqqxx\n".as_bytes());
    let err = BpeTokenizer::from_encoder_json(&enc, &bpe).unwrap_err().to_string();
    assert!(err.contains("merge 50000 'Ġthe zzqqxx'") && err.contains("'zzqqxx'"), "{err}");
}

#[test]
fn ids_out_of_range() {
    let tok = gpt2();
    assert_eq!(tok.decode_token(50257), b"");
    assert_eq!(tok.decode_token(u32::MAX), b"");
    assert_eq!(tok.piece(50257), None);
    assert_eq!(tok.token_type(50257), None);
    assert_eq!(tok.decode(&[15496, 50257, u32::MAX, 995]), "Hello world");
    // encoder.json ids must be exactly 0..n.
    let bpe = b"#version: 0.2\n";
    let err = BpeTokenizer::from_encoder_json(br#"{"a": 0, "b": 7}"#, bpe).unwrap_err();
    assert!(err.to_string().contains("id 7"), "{err}");
}

#[test]
fn decode_is_lossy_only_for_invalid_utf8() {
    let tok = gpt2();
    let ids = tok.encode("🦙", false);
    assert!(ids.len() > 1);
    assert_eq!(tok.decode(&ids), "🦙");
    assert_eq!(tok.decode(&ids[..1]), "\u{fffd}");
}

/// A small valid encoder.json (with `\u` escapes) and vocab.bpe.
fn small_files() -> (String, String) {
    let mut json = String::from("{\n");
    for (id, piece) in byte_vocab(&["Ġt", "he", "Ġthe", "<|endoftext|>"]).iter().enumerate() {
        let mut key = String::new();
        for c in piece.chars() {
            match c {
                '"' | '\\' => key.extend(['\\', c]),
                ' '..='~' => key.push(c),
                _ => key += &format!("\\u{:04x}", c as u32),
            }
        }
        json += &format!("{}\"{key}\": {id}", if id == 0 { "" } else { ", " });
    }
    json += "\n}\n";
    (json, "#version: 0.2\nĠ t\nh e\nĠt he\n".to_string())
}

#[test]
fn small_encoder_json() {
    let (json, bpe) = small_files();
    assert!(json.contains("\\u0120") && json.contains(r#""\"": 34"#) && json.contains(r#""\\": 92"#));
    let tok = BpeTokenizer::from_encoder_json(json.as_bytes(), bpe.as_bytes()).unwrap();
    assert_eq!(tok.vocab_size(), 260);
    assert_eq!((tok.bos(), tok.eos()), (259, 259));
    assert_eq!(tok.encode(" the", false), [258]);
    assert_eq!(tok.encode("the the", false), [u32::from(b't'), 257, 258]);
    assert_eq!(tok.encode_with_special("<|endoftext|>", false), [259]);
    assert_eq!(tok.token_type(259), Some(3));
    assert_eq!(tok.token_type(258), Some(1));
    // Hugging Face merges.txt may use \r\n.
    let crlf = bpe.replace('\n', "\r\n");
    let tok2 = BpeTokenizer::from_encoder_json(json.as_bytes(), crlf.as_bytes()).unwrap();
    assert_eq!(tok2.encode(" the", false), [258]);
}

#[test]
fn no_panic_on_truncated_files() {
    let (json, bpe) = small_files();
    let (json, bpe) = (json.as_bytes(), bpe.as_bytes());
    let whole = std::str::from_utf8(json).unwrap().trim_end().len();
    for n in 0..=json.len() {
        let r = BpeTokenizer::from_encoder_json(&json[..n], bpe);
        assert_eq!(r.is_ok(), n >= whole, "prefix of {n} bytes: {r:?}");
    }
    for n in 0..=bpe.len() {
        // Some prefixes are valid shorter merge lists; none may panic.
        let _ = BpeTokenizer::from_encoder_json(json, &bpe[..n]);
    }
    assert!(BpeTokenizer::from_encoder_json(json, &bpe[..0]).is_err());
    // Cut inside the two bytes of 'Ġ': not UTF-8.
    assert!(BpeTokenizer::from_encoder_json(json, &bpe[..15]).is_err());
    // Cut after "Ġ ": the empty right half is not a token.
    assert!(BpeTokenizer::from_encoder_json(json, &bpe[..17]).is_err());
    assert!(BpeTokenizer::from_encoder_json(json, &bpe[..18]).is_ok());
}

#[test]
fn bad_encoder_json() {
    let bpe = b"#version: 0.2\n";
    let bad: &[&[u8]] = &[
        b"",
        b"   ",
        b"[]",
        b"{",
        b"{}",
        br#"{"a": 0"#,
        br#"{"a": 0,}"#,
        br#"{"a" 0}"#,
        br#"{"a": -1}"#,
        br#"{"a": 1.5}"#,
        br#"{"a": 01}"#,
        br#"{"a": "0"}"#,
        br#"{"a": 4294967296}"#,
        br#"{"a": 0} x"#,
        br#"{"a": 0, "b": 0}"#,
        br#"{"a": 0, "a": 1}"#,
        br#"{"\ud800": 0}"#,
        br#"{"\udc00": 0}"#,
        br#"{"\u12": 0}"#,
        br#"{"\x": 0}"#,
        b"{\"a\nb\": 0}",
        b"{\"\xff\": 0}",
        b"{'a': 0}",
    ];
    for json in bad {
        let r = BpeTokenizer::from_encoder_json(json, bpe);
        assert!(r.is_err(), "{:?} was accepted", String::from_utf8_lossy(json));
    }
    let dup = BpeTokenizer::from_encoder_json(br#"{"a": 0, "a": 1}"#, bpe).unwrap_err();
    assert!(dup.to_string().contains("'a' appears twice"), "{dup}");
    assert!(matches!(BpeTokenizer::from_encoder_json(b"", bpe), Err(Error::Truncated { .. })));
    // Valid: escapes, a surrogate pair, a BOM, and white space anywhere.
    let ok =
        BpeTokenizer::from_encoder_json(b"\xEF\xBB\xBF { \"\\ud83e\\udd99\" : 0 ,\"\\n\\t\\/\\b\\f\\r\":1 } ", bpe)
            .unwrap();
    assert_eq!(ok.piece(0), Some("🦙"));
    assert_eq!(ok.piece(1), Some("\n\t/\u{8}\u{c}\r"));
    // Empty and non-UTF-8 vocab.bpe.
    let (enc, _) = gpt2_files();
    assert!(BpeTokenizer::from_encoder_json(&enc, b"").is_err());
    assert!(BpeTokenizer::from_encoder_json(&enc, b"\n\n").is_err());
    assert!(BpeTokenizer::from_encoder_json(&enc, b"#version: 0.2\n\xff\xfe\n").is_err());
    // Zero merges are valid: every byte is its own token.
    let bytes_only = BpeTokenizer::from_encoder_json(&enc, b"#version: 0.2\n").unwrap();
    assert_eq!(bytes_only.encode("hi", false), [71, 72]);
}
