//! SentencePiece-style BPE tokenizer against the independent references in
//! the reference data (testdata crate; sentencepiece, llama.cpp, llama2.c, transformers).

use engine::tokenizer::spm::{SpmTokenizer, TokenType};
use engine::Error;
use serde_json::Value;
use std::sync::OnceLock;
use std::time::Instant;

fn read(path: &str) -> Vec<u8> {
    std::fs::read(testdata::path(&format!("testdata/{path}"))).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json(path: &str) -> Value {
    serde_json::from_slice(&read(path)).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// The Llama 2 vocabulary from llama2.c's tokenizer.bin (loaded once).
fn llama() -> &'static SpmTokenizer {
    static TOK: OnceLock<SpmTokenizer> = OnceLock::new();
    TOK.get_or_init(|| SpmTokenizer::from_llama2c(&read("llama2c-tokenizer/tokenizer.bin"), 32000).unwrap())
}

fn tok512_bytes() -> Vec<u8> {
    read("stories260K/tok512.bin")
}

fn tok512() -> SpmTokenizer {
    SpmTokenizer::from_llama2c(&tok512_bytes(), 512).unwrap()
}

/// Concatenated `decode_token` outputs, as a streaming chat front end would print them.
fn stream(tok: &SpmTokenizer, ids: &[u32]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut prev = None;
    for &id in ids {
        out.extend(tok.decode_token(prev, id));
        prev = Some(id);
    }
    out
}

#[test]
fn llama2_loads_with_expected_metadata() {
    let tok = llama();
    let r = json("expected/llama2-spm-tokenizer.json");
    assert_eq!(tok.vocab_size(), 32000);
    assert_eq!(u64::from(tok.bos()), r["bos_id"].as_u64().unwrap());
    assert_eq!(u64::from(tok.eos()), r["eos_id"].as_u64().unwrap());
    assert_eq!(u64::from(tok.unk()), r["unk_id"].as_u64().unwrap());
    assert!(tok.add_bos());
    assert_eq!(tok.piece(1), Some("<s>"));
    assert_eq!(tok.piece(2), Some("</s>"));
    assert_eq!(tok.token_type(0), Some(TokenType::Unknown));
    assert_eq!(tok.token_type(1), Some(TokenType::Control));
    assert_eq!(tok.token_type(2), Some(TokenType::Control));
    assert_eq!(tok.token_type(3), Some(TokenType::Byte));
    assert_eq!(tok.piece(13), Some("<0x0A>"));
    assert_eq!(tok.token_type(258), Some(TokenType::Byte));
    assert_eq!(tok.token_type(259), Some(TokenType::Normal));
    assert_eq!(tok.token_type(32000), None);
    assert_eq!(tok.piece(32000), None);
    assert_eq!(tok.score(32000), None);
}

#[test]
fn llama2_reference_cases() {
    let tok = llama();
    let r = json("expected/llama2-spm-tokenizer.json");
    let cases = r["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 45);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["ids"]);
        assert_eq!(tok.encode(text, false), want, "ids of {text:?}");
        let mut with_bos = vec![1];
        with_bos.extend(&want);
        assert_eq!(tok.encode(text, true), with_bos, "ids with BOS of {text:?}");
        // encode_with_special equals encode when the text has no special pieces.
        if !text.contains("<s>") && !text.contains("</s>") {
            assert_eq!(tok.encode_with_special(text, false), want, "special ids of {text:?}");
        }
        for (&id, piece) in want.iter().zip(case["pieces"].as_array().unwrap()) {
            let piece = piece.as_str().unwrap();
            assert_eq!(tok.piece(id), Some(piece), "piece of {id} in {text:?}");
            assert_eq!(tok.token_id(piece), Some(id), "id of {piece:?}");
        }
        let decoded = case["decoded"].as_str().unwrap();
        assert_eq!(tok.decode(&want), decoded, "decode of {text:?}");
        assert_eq!(tok.decode(&with_bos), decoded, "decode with BOS of {text:?}");
    }
}

#[test]
fn llama2c_test_c_vectors() {
    let tok = llama();
    let r = json("expected/llama2-spm-tokenizer.json");
    let vectors = r["llama2c_test_c_vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 5);
    for v in vectors {
        let text = v["text"].as_str().unwrap();
        let want = ids(&v["ids_with_bos"]);
        assert_eq!(tok.encode(text, true), want, "{text:?}");
        assert_eq!(tok.decode(&want), text);
    }
}

#[test]
fn tok512_reference_cases() {
    let tok = tok512();
    let r = json("expected/tok512-tokenizer.json");
    let cases = r["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 45);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["ids"]);
        assert_eq!(tok.encode(text, false), want, "ids of {text:?}");
        // The reference writes pieces with llama2.c's plain spaces.
        for (&id, piece) in want.iter().zip(case["pieces"].as_array().unwrap()) {
            let piece = piece.as_str().unwrap().replace(' ', "\u{2581}");
            assert_eq!(tok.piece(id), Some(piece.as_str()), "piece of {id} in {text:?}");
        }
        // Every byte has a byte token and there is no normalization: lossless.
        assert_eq!(tok.decode(&want), text, "decode of {text:?}");
        assert_eq!(stream(&tok, &want), text.as_bytes(), "streamed decode of {text:?}");
    }
}

#[test]
fn llamacpp_vocab_vectors() {
    let tok = llama();
    let inp = String::from_utf8(read("llamacpp-vocab/ggml-vocab-llama-spm.gguf.inp")).unwrap();
    let out = String::from_utf8(read("llamacpp-vocab/ggml-vocab-llama-spm.gguf.out")).unwrap();
    let texts: Vec<&str> =
        inp.strip_suffix("\n__ggml_vocab_test__\n").unwrap().split("\n__ggml_vocab_test__\n").collect();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(texts.len(), 46);
    assert_eq!(lines.len(), 46);
    for (text, line) in texts.iter().zip(&lines) {
        let want: Vec<u32> = line.split_whitespace().map(|s| s.parse().unwrap()).collect();
        assert_eq!(tok.encode(text, false), want, "ids of {text:?}");
        assert_eq!(tok.decode(&want), *text, "decode of {text:?}");
    }
}

#[test]
fn chat_templates_parse_special_tokens() {
    let tok = llama();
    let r = json("expected/chat-templates.json");
    let mut n = 0;
    for (template, bos) in [("zephyr", true), ("llama-2", false)] {
        for (name, case) in r[template]["cases"].as_object().unwrap() {
            assert_eq!(case["bos_added_by_tokenizer"].as_bool(), Some(bos));
            let text = case["text"].as_str().unwrap();
            let want = ids(&case["ids"]);
            assert_eq!(tok.encode_with_special(text, bos), want, "{template}/{name}");
            // Plain encode must not turn the template's "<s>"/"</s>" into control ids.
            assert!(!tok.encode(text, false).iter().any(|&id| id == 1 || id == 2));
            n += 1;
        }
    }
    assert_eq!(n, 6);
}

#[test]
fn new_matches_from_llama2c() {
    // The GGUF path builds the tokenizer with `new`; rebuilding from the loaded
    // vocabulary must encode the same way.
    let tok = llama();
    let n = tok.vocab_size() as u32;
    let pieces = (0..n).map(|i| tok.piece(i).unwrap().to_string()).collect();
    let scores = (0..n).map(|i| tok.score(i).unwrap()).collect();
    let types = (0..n).map(|i| tok.token_type(i).unwrap()).collect();
    let rebuilt = SpmTokenizer::new(pieces, scores, types, 1, 2, 0).unwrap();
    let r = json("expected/llama2-spm-tokenizer.json");
    for case in r["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(rebuilt.encode(text, true), tok.encode(text, true), "{text:?}");
    }
}

#[test]
fn token_type_from_gguf() {
    use TokenType::*;
    let want = [(1, Normal), (2, Unknown), (3, Control), (4, UserDefined), (5, Unused), (6, Byte)];
    for (v, ty) in want {
        assert_eq!(TokenType::from_gguf(v), ty);
    }
    for v in [0, 7, -1, i32::MAX, i32::MIN] {
        assert_eq!(TokenType::from_gguf(v), Normal);
    }
}

#[test]
fn streaming_multibyte_text() {
    let tok = llama();
    for text in [
        "日本語のテキスト",
        "한국어 텍스트",
        "emoji 🦙 😀👍🏽 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
        "Cửa Việt — “quotes” ½",
        " leading space, tabs\tand\nnewlines\n",
    ] {
        let ids = tok.encode(text, true);
        assert!(ids.iter().any(|&id| tok.token_type(id) == Some(TokenType::Byte)) || !text.contains('🦙'));
        assert_eq!(stream(tok, &ids), text.as_bytes(), "{text:?}");
        // Without BOS the first piece's dummy prefix is dropped the same way.
        assert_eq!(stream(tok, &ids[1..]), text.as_bytes(), "{text:?}");
    }
}

#[test]
fn decode_token_details() {
    let tok = llama();
    let the = tok.token_id("\u{2581}the").unwrap();
    assert_eq!(tok.decode_token(None, the), b"the");
    assert_eq!(tok.decode_token(Some(1), the), b"the");
    assert_eq!(tok.decode_token(Some(the), the), b" the");
    assert_eq!(tok.decode_token(Some(the), 13), b"\n"); // <0x0A>
    assert_eq!(tok.decode_token(None, 3 + 0xF0), [0xF0]);
    // Byte tokens keep a leading 0x20 even at the start (only the dummy prefix is dropped).
    assert_eq!(tok.decode_token(None, 3 + 0x20), b" ");
    for id in [0, 1, 2, 32000, u32::MAX] {
        assert!(tok.decode_token(Some(the), id).is_empty(), "{id}");
    }
    assert_eq!(tok.decode(&[1, the, the, 2]), "the the");
}

#[test]
fn special_text_is_literal_in_plain_encode() {
    let tok = llama();
    let text = "<s>hi</s>";
    let plain = tok.encode(text, false);
    assert!(!plain.contains(&1) && !plain.contains(&2));
    assert_eq!(tok.decode(&plain), text);
    // With special parsing: ids 1 and 2, and no dummy prefix after "<s>".
    let mut want = vec![1];
    let mut no_prefix = tok.clone();
    no_prefix.set_add_space_prefix(false);
    assert!(!no_prefix.add_space_prefix());
    want.extend(no_prefix.encode("hi", false));
    want.push(2);
    assert_eq!(tok.encode_with_special(text, false), want);
    assert_eq!(tok.encode_with_special("", true), vec![1]);
    assert_eq!(tok.encode_with_special("</s>", false), vec![2]);
    // "<unk>" is Unknown, not Control: it stays text.
    assert_eq!(tok.encode_with_special("<unk>", false), tok.encode("<unk>", false));
}

#[test]
fn user_defined_tokens_are_special() {
    // tok512 plus two user-defined chat markers, one a prefix of the other.
    let base = tok512();
    let n = base.vocab_size() as u32;
    let mut pieces: Vec<String> = (0..n).map(|i| base.piece(i).unwrap().to_string()).collect();
    let mut scores: Vec<f32> = (0..n).map(|i| base.score(i).unwrap()).collect();
    let mut types: Vec<TokenType> = (0..n).map(|i| base.token_type(i).unwrap()).collect();
    for p in ["<|user|>", "<|user|>!"] {
        pieces.push(p.to_string());
        scores.push(0.0);
        types.push(TokenType::UserDefined);
    }
    let tok = SpmTokenizer::new(pieces, scores, types, 1, 2, 0).unwrap();
    let mut bare = base.clone();
    bare.set_add_space_prefix(false);
    let mut want = base.encode("Hi ", true);
    want.push(n + 1); // longest match
    want.extend(bare.encode(" there", false));
    want.push(n);
    assert_eq!(tok.encode_with_special("Hi <|user|>! there<|user|>", true), want);
    // User-defined pieces decode as text.
    assert_eq!(tok.decode(&want), "Hi <|user|>! there<|user|>");
    // Plain encode never matches them as a whole.
    assert!(!tok.encode("<|user|>!", false).iter().any(|&id| id >= n));
}

/// A toy vocabulary: pieces with scores, everything Normal except ids 0..3.
fn toy(pieces: &[(&str, f32)]) -> SpmTokenizer {
    let mut all = vec![("<unk>", 0.0), ("<s>", 0.0), ("</s>", 0.0)];
    all.extend_from_slice(pieces);
    let types = (0..all.len())
        .map(|i| match i {
            0 => TokenType::Unknown,
            1 | 2 => TokenType::Control,
            _ => TokenType::Normal,
        })
        .collect();
    let mut tok = SpmTokenizer::new(
        all.iter().map(|p| p.0.to_string()).collect(),
        all.iter().map(|p| p.1).collect(),
        types,
        1,
        2,
        0,
    )
    .unwrap();
    tok.set_add_space_prefix(false);
    tok
}

#[test]
fn merge_order_score_then_leftmost() {
    // ids: a=3 b=4 ab=5 ba=6
    let tie = toy(&[("a", 0.0), ("b", 0.0), ("ab", -1.0), ("ba", -1.0)]);
    assert_eq!(tie.encode("aba", false), vec![5, 3]);
    assert_eq!(tie.encode("bab", false), vec![6, 4]);
    let ba_wins = toy(&[("a", 0.0), ("b", 0.0), ("ab", -2.0), ("ba", -1.0)]);
    assert_eq!(ba_wins.encode("aba", false), vec![3, 6]);
    // "abc" is reachable only through a piece for one of its halves.
    let chain = toy(&[("a", 0.0), ("b", 0.0), ("c", 0.0), ("bc", -1.0), ("abc", -0.5)]);
    assert_eq!(chain.encode("abc", false), vec![7]);
    let gap = toy(&[("a", 0.0), ("b", 0.0), ("c", 0.0), ("abc", -0.5)]);
    assert_eq!(gap.encode("abc", false), vec![3, 4, 5]);
}

#[test]
fn unknown_without_byte_tokens() {
    // No byte tokens: characters outside the vocabulary become <unk>, one per character.
    let mut tok = toy(&[("\u{2581}", 0.0), ("a", 0.0), ("\u{2581}a", -1.0)]);
    tok.set_add_space_prefix(true);
    assert_eq!(tok.encode("a é!", false), vec![5, 3, 0, 0]);
    assert_eq!(tok.decode(&[5, 3, 0, 0]), "a ");
}

#[test]
fn long_prompt_is_fast() {
    let tok = llama();
    let chunk = "Once upon a time, in a land far away, a small robot learned to boot without an OS.\n\
                 fn main() { println!(\"hello, world\"); } // 1234567890\n\
                 日本語のテキスト、한국어 텍스트, emoji 🦙😀👍🏽, Ελληνικά, Русский текст.\n    \
                 indented   spaces\tand tabs, café naïve résumé über — “quotes”…\n";
    let mut text = String::new();
    while text.len() < 4096 {
        text.push_str(chunk);
    }
    // A long run of one character makes the most stale heap entries.
    text.push_str(&" ".repeat(512));
    tok.encode(&text, true); // warm-up
    let start = Instant::now();
    let ids = tok.encode(&text, true);
    let elapsed = start.elapsed();
    eprintln!("encoded {} bytes into {} ids in {elapsed:?}", text.len(), ids.len());
    assert!(elapsed.as_millis() < 500, "encoding {} bytes took {elapsed:?}", text.len());
    assert_eq!(tok.decode(&ids), text);
    // The text is a repetition, so its chunks encode alike wherever a chunk
    // starts after a newline (no cross-chunk merges across "\n").
    let one = tok.encode(chunk, false);
    assert_eq!(&ids[1..1 + one.len()], &one[..]);
}

#[test]
fn new_rejects_bad_vocabularies() {
    let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let t = |n| vec![TokenType::Normal; n];
    assert!(matches!(SpmTokenizer::new(vec![], vec![], vec![], 0, 0, 0), Err(Error::Invalid { .. })));
    assert!(matches!(SpmTokenizer::new(p(&["a", "b"]), vec![0.0], t(2), 0, 1, 0), Err(Error::Invalid { .. })));
    assert!(matches!(SpmTokenizer::new(p(&["a", "b"]), vec![0.0; 2], t(3), 0, 1, 0), Err(Error::Invalid { .. })));
    for (bos, eos, unk) in [(2, 1, 0), (0, 7, 0), (0, 1, u32::MAX)] {
        assert!(matches!(
            SpmTokenizer::new(p(&["a", "b"]), vec![0.0; 2], t(2), bos, eos, unk),
            Err(Error::TokenOutOfRange { vocab: 2, .. })
        ));
    }
    // NaN scores are rejected (a corrupt file); infinities are allowed.
    assert!(matches!(
        SpmTokenizer::new(p(&["a", "b"]), vec![0.0, f32::NAN], t(2), 0, 1, 0),
        Err(Error::Invalid { .. })
    ));
    assert!(SpmTokenizer::new(p(&["a", "b"]), vec![0.0, f32::NEG_INFINITY], t(2), 0, 1, 0).is_ok());
    // Byte tokens must be <0xXX>.
    for bad in ["<0x1>", "<0xGG>", "0x41", "<0x411>", ""] {
        let types = vec![TokenType::Normal, TokenType::Byte];
        assert!(
            matches!(SpmTokenizer::new(p(&["a", bad]), vec![0.0; 2], types, 0, 0, 0), Err(Error::Invalid { .. })),
            "{bad:?}"
        );
    }
    // Empty and duplicate pieces are tolerated: the lowest id wins.
    let tok = SpmTokenizer::new(p(&["", "x", "x", ""]), vec![0.0; 4], t(4), 0, 0, 0).unwrap();
    assert_eq!(tok.token_id("x"), Some(1));
    assert_eq!(tok.token_id(""), Some(0));
    assert_eq!(tok.token_id("y"), None);
    let types = vec![TokenType::Control; 4];
    let tok = SpmTokenizer::new(p(&["", "x", "x", ""]), vec![0.0; 4], types, 0, 0, 0).unwrap();
    assert_eq!(tok.encode_with_special("xx", false), vec![1, 1]);
}

/// Serializes a llama2.c tokenizer file.
fn llama2c_file(max_len: i32, tokens: &[(f32, i32, &[u8])]) -> Vec<u8> {
    let mut out = max_len.to_le_bytes().to_vec();
    for (score, len, bytes) in tokens {
        out.extend(score.to_le_bytes());
        out.extend(len.to_le_bytes());
        out.extend(*bytes);
    }
    out
}

#[test]
fn from_llama2c_rejects_bad_files() {
    let good: [(f32, i32, &[u8]); 3] = [(0.0, 5, b"<unk>"), (0.0, 5, b"\n<s>\n"), (0.0, 6, b"\n</s>\n")];
    let ok = SpmTokenizer::from_llama2c(&llama2c_file(6, &good), 3).unwrap();
    assert_eq!(ok.piece(1), Some("<s>"));
    assert!(matches!(SpmTokenizer::from_llama2c(&[], 3), Err(Error::Truncated { .. })));
    assert!(matches!(SpmTokenizer::from_llama2c(&[7, 0], 3), Err(Error::Truncated { .. })));
    // Count does not match the model's vocabulary.
    for vocab in [2, 4, 32000] {
        assert_eq!(
            SpmTokenizer::from_llama2c(&llama2c_file(6, &good), vocab).unwrap_err(),
            Error::VocabMismatch { model: vocab, tokenizer: 3 }
        );
    }
    // Header only: zero tokens.
    assert_eq!(
        SpmTokenizer::from_llama2c(&llama2c_file(6, &[]), 3).unwrap_err(),
        Error::VocabMismatch { model: 3, tokenizer: 0 }
    );
    assert!(SpmTokenizer::from_llama2c(&llama2c_file(6, &[]), 0).is_err());
    // Negative and huge lengths.
    for len in [-1, i32::MIN, i32::MAX, 7] {
        let mut bad = good;
        bad[2].1 = len;
        let r = SpmTokenizer::from_llama2c(&llama2c_file(6, &bad), 3);
        if len < 0 {
            assert!(matches!(r, Err(Error::Invalid { .. })), "{len}: {r:?}");
        } else {
            assert!(matches!(r, Err(Error::Truncated { .. })), "{len}: {r:?}");
        }
    }
    let mut bad = good;
    bad[1].1 = 6; // swallows the next entry's score, leaving garbage
    assert!(SpmTokenizer::from_llama2c(&llama2c_file(6, &bad), 3).is_err());
    assert!(matches!(SpmTokenizer::from_llama2c(&llama2c_file(-1, &good), 3), Err(Error::Invalid { .. })));
    // Invalid UTF-8 and NaN scores.
    let mut bad = good;
    bad[0].2 = b"\xff<unk";
    assert!(matches!(SpmTokenizer::from_llama2c(&llama2c_file(6, &bad), 3), Err(Error::Invalid { .. })));
    let mut bad = good;
    bad[0].0 = f32::NAN;
    assert!(matches!(SpmTokenizer::from_llama2c(&llama2c_file(6, &bad), 3), Err(Error::Invalid { .. })));
}

#[test]
fn every_prefix_of_tok512_is_an_error() {
    let bytes = tok512_bytes();
    assert!(SpmTokenizer::from_llama2c(&bytes, 512).is_ok());
    for len in 0..bytes.len() {
        let r = SpmTokenizer::from_llama2c(&bytes[..len], 512);
        assert!(matches!(r, Err(Error::Truncated { .. } | Error::VocabMismatch { .. })), "prefix {len}: {r:?}");
    }
    // Trailing bytes after the last token are not a token.
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(SpmTokenizer::from_llama2c(&longer, 512).is_err());
}
