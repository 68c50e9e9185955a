//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use engine::load::Blob;

/// `../shared` beside the repository.
pub fn shared(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared")).join(rel)
}

pub fn read(rel: &str) -> Vec<u8> {
    let p = shared(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

pub fn json(rel: &str) -> serde_json::Value {
    serde_json::from_slice(&read(rel)).expect("valid JSON")
}

pub fn blob(bytes: Vec<u8>) -> Blob {
    Box::new(bytes)
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().expect("array").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}
