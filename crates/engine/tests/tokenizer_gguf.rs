//! Tokenizers loaded from GGUF metadata against llama.cpp's own vectors and
//! the sentencepiece / tiktoken references.

mod common;
use common::*;

use engine::tokenizer::Tokenizer;

fn vectors(name: &str) -> Vec<(String, Vec<u32>)> {
    let inp = String::from_utf8(read(&format!("testdata/llamacpp-vocab/{name}.inp"))).unwrap();
    let out = String::from_utf8(read(&format!("testdata/llamacpp-vocab/{name}.out"))).unwrap();
    let texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    let texts = &texts[..texts.len() - 1]; // the file ends with the separator
    let ids: Vec<Vec<u32>> = out.lines().map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect()).collect();
    assert_eq!(texts.len(), ids.len());
    texts.iter().map(|t| t.to_string()).zip(ids).collect()
}

fn from_gguf(name: &str) -> Tokenizer {
    engine::gguf_model::tokenizer(&read(&format!("testdata/llamacpp-vocab/{name}"))).expect("tokenizer")
}

#[test]
fn llama_spm_gguf_matches_llamacpp_vectors() {
    let tok = from_gguf("ggml-vocab-llama-spm.gguf");
    assert!(matches!(tok, Tokenizer::Spm(_)));
    assert!(tok.add_bos());
    for (text, want) in vectors("ggml-vocab-llama-spm.gguf") {
        assert_eq!(tok.encode(&text, false), want, "{text:?}");
    }
}

#[test]
fn llama_spm_gguf_matches_sentencepiece_cases() {
    let tok = from_gguf("ggml-vocab-llama-spm.gguf");
    let cases = json("testdata/expected/llama2-spm-tokenizer.json");
    let mut n = 0;
    for case in cases["cases"].as_array().expect("cases array") {
        let text = case["text"].as_str().unwrap();
        assert_eq!(tok.encode(text, false), ids(&case["ids"]), "{text:?}");
        n += 1;
    }
    assert!(n >= 45);
}

#[test]
fn gpt2_gguf_matches_llamacpp_vectors_and_tiktoken_cases() {
    let tok = from_gguf("ggml-vocab-gpt-2.gguf");
    assert!(matches!(tok, Tokenizer::Bpe(_)));
    for (text, want) in vectors("ggml-vocab-gpt-2.gguf") {
        assert_eq!(tok.encode(&text, false), want, "{text:?}");
    }
    let cases = json("testdata/expected/gpt2-bpe-tokenizer.json");
    for case in cases["cases"].as_array().expect("cases array") {
        let text = case["text"].as_str().unwrap();
        assert_eq!(tok.encode(text, false), ids(&case["ids"]), "{text:?}");
        assert_eq!(tok.decode(&ids(&case["ids"])), text);
    }
    assert_eq!(tok.encode_with_special("<|endoftext|>", false), [50256]);
}
