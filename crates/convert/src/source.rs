//! The checkpoint's tensors: `model.safetensors`, or the shards listed in
//! `model.safetensors.index.json`, memory-mapped and validated by the
//! `safetensors` crate (header, offsets and sizes), then decoded to f32.

use anyhow::{bail, ensure, Context, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The mapped checkpoint files.
pub struct Files {
    files: Vec<(String, Vec<u8>)>,
    /// From the index, the tensor → shard map (to cross-check the shards).
    weight_map: Option<BTreeMap<String, String>>,
}

/// One tensor of the checkpoint.
#[derive(Clone)]
pub struct Tensor<'a> {
    pub file: &'a str,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: &'a [u8],
}

const INDEX: &str = "model.safetensors.index.json";
const SINGLE: &str = "model.safetensors";

/// Reads a checkpoint file into memory. (A memory map would need `unsafe`,
/// which this crate does not use; a converter reads every byte anyway.)
fn map_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// A shard name from the index must be a plain file name inside the model
/// folder: no directories, no `..`, nothing absolute.
fn check_shard_name(name: &str) -> Result<()> {
    let p = Path::new(name);
    ensure!(
        !name.is_empty()
            && p.components().count() == 1
            && matches!(p.components().next(), Some(std::path::Component::Normal(_))),
        "{INDEX}: shard name '{name}' is not a plain file name"
    );
    Ok(())
}

impl Files {
    /// Finds and maps the checkpoint files in `dir`.
    pub fn open(dir: &Path) -> Result<Files> {
        let index = dir.join(INDEX);
        if index.is_file() {
            let text = std::fs::read(&index).with_context(|| format!("cannot read {}", index.display()))?;
            let v: serde_json::Value =
                serde_json::from_slice(&text).with_context(|| format!("{INDEX} is not valid JSON"))?;
            let Some(wm) = v.get("weight_map").and_then(|w| w.as_object()) else {
                bail!("{INDEX}: missing 'weight_map' object");
            };
            let mut weight_map = BTreeMap::new();
            for (tensor, shard) in wm {
                let Some(shard) = shard.as_str() else {
                    bail!("{INDEX}: the shard of '{tensor}' must be a file name, found {shard}");
                };
                check_shard_name(shard)?;
                weight_map.insert(tensor.clone(), shard.to_string());
            }
            ensure!(!weight_map.is_empty(), "{INDEX}: 'weight_map' is empty");
            let shards: BTreeSet<&String> = weight_map.values().collect();
            let mut files = Vec::new();
            for s in shards {
                files.push((s.clone(), map_file(&dir.join(s)).with_context(|| format!("shard listed in {INDEX}"))?));
            }
            return Ok(Files { files, weight_map: Some(weight_map) });
        }
        let single = dir.join(SINGLE);
        if single.is_file() {
            return Ok(Files { files: vec![(SINGLE.to_string(), map_file(&single)?)], weight_map: None });
        }
        let hint = if dir.join("pytorch_model.bin").exists() || dir.join("pytorch_model.bin.index.json").exists() {
            " (PyTorch .bin checkpoints are not supported; re-save the model with safetensors)"
        } else {
            ""
        };
        bail!("no {SINGLE} or {INDEX} in {}{hint}", dir.display())
    }

    /// Parses every file's header and returns all tensors by name.
    pub fn tensors(&self) -> Result<BTreeMap<String, Tensor<'_>>> {
        let mut out = BTreeMap::new();
        for (name, map) in &self.files {
            let st = SafeTensors::deserialize(map)
                .map_err(|e| anyhow::anyhow!("{name} is not a valid safetensors file (truncated or corrupt?): {e}"))?;
            for (tname, view) in st.iter() {
                let t = Tensor { file: name, dtype: view.dtype(), shape: view.shape().to_vec(), data: view.data() };
                if let Some(prev) = out.insert(tname.to_string(), t) {
                    bail!("tensor '{tname}' is stored twice (in {} and {name})", prev.file);
                }
            }
        }
        if let Some(wm) = &self.weight_map {
            for (tensor, shard) in wm {
                match out.get(tensor) {
                    None => bail!("tensor '{tensor}' is listed in {INDEX} (in {shard}) but missing from the shards"),
                    Some(t) if t.file != shard => {
                        bail!("tensor '{tensor}' is listed in {INDEX} as in {shard} but is in {}", t.file)
                    }
                    _ => {}
                }
            }
            if let Some(extra) = out.keys().find(|k| !wm.contains_key(*k)) {
                bail!("tensor '{extra}' is in a shard but not listed in {INDEX}");
            }
        }
        Ok(out)
    }
}

/// IEEE half conversions (shared with the kernels: exact, round to nearest even).
pub use kernels::half::{f16_to_f32, f32_to_f16};

/// Decodes a tensor's elements to f32. F32, F16 and BF16 are accepted.
pub fn to_f32(name: &str, t: &Tensor<'_>) -> Result<Vec<f32>> {
    let d = t.data;
    Ok(match t.dtype {
        Dtype::F32 => d.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => d.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect(),
        Dtype::BF16 => {
            d.chunks_exact(2).map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16)).collect()
        }
        other => bail!("tensor '{name}' in {} has dtype {other:?}; only F32, F16 and BF16 are supported", t.file),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_round_trips_every_value() {
        for h in 0..=u16::MAX {
            let f = f16_to_f32(h);
            if f.is_nan() {
                assert!(f16_to_f32(f32_to_f16(f)).is_nan());
            } else {
                assert_eq!(f32_to_f16(f), h, "half {h:#06x} -> {f:e}");
            }
        }
    }

    #[test]
    fn shard_names_must_be_plain() {
        for bad in ["../x.safetensors", "/etc/passwd", "a/b.safetensors", "", ".", ".."] {
            assert!(check_shard_name(bad).is_err(), "{bad}");
        }
        check_shard_name("model-00001-of-00002.safetensors").unwrap();
    }
}
