//! Typed, validated access to a Hugging Face `config.json`.
//!
//! Every getter names the key it read in its error, and refuses values that
//! are the wrong JSON type, negative, zero, absurdly large or not finite.
//! A JSON `null` counts as absent (transformers writes `null` for unset
//! optional fields).

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use std::path::Path;

/// A parsed JSON object file (config.json, tokenizer_config.json, ...).
pub struct JsonFile {
    pub name: String,
    pub map: Map<String, Value>,
}

impl JsonFile {
    /// Reads and parses `path`, which must hold a JSON object.
    pub fn load(path: &Path) -> Result<JsonFile> {
        let name =
            path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string());
        let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let v: Value = serde_json::from_slice(&text).with_context(|| format!("{name} is not valid JSON"))?;
        match v {
            Value::Object(map) => Ok(JsonFile { name, map }),
            _ => bail!("{name} must hold a JSON object"),
        }
    }

    /// Reads `path` if it exists; `None` if it does not.
    pub fn load_optional(path: &Path) -> Result<Option<JsonFile>> {
        if path.is_file() {
            Ok(Some(JsonFile::load(path)?))
        } else {
            Ok(None)
        }
    }

    /// Looks a key up; `a.b` descends into nested objects. `null` is absent.
    pub fn get(&self, key: &str) -> Option<&Value> {
        let mut parts = key.split('.');
        let mut v = self.map.get(parts.next()?)?;
        for p in parts {
            v = v.as_object()?.get(p)?;
        }
        (!v.is_null()).then_some(v)
    }

    /// The first of `keys` that is present, with its name.
    fn first<'k>(&self, keys: &[&'k str]) -> Option<(&'k str, &Value)> {
        keys.iter().find_map(|k| self.get(k).map(|v| (*k, v)))
    }

    /// A positive integer no larger than `max`, from the first present key.
    pub fn uint(&self, keys: &[&str], max: u64) -> Result<Option<u64>> {
        let Some((k, v)) = self.first(keys) else {
            return Ok(None);
        };
        match v.as_u64() {
            Some(n) if n >= 1 && n <= max => Ok(Some(n)),
            Some(n) if n >= 1 => {
                bail!("{}: '{k}' = {n} is absurdly large (limit {max})", self.name)
            }
            _ => bail!("{}: '{k}' must be a positive integer, found {v}", self.name),
        }
    }

    /// Like [`JsonFile::uint`], but the key must be present.
    pub fn req_uint(&self, keys: &[&str], max: u64) -> Result<u64> {
        self.uint(keys, max)?.ok_or_else(|| self.missing(keys))
    }

    /// A finite number from the first present key.
    pub fn float(&self, keys: &[&str]) -> Result<Option<f64>> {
        let Some((k, v)) = self.first(keys) else {
            return Ok(None);
        };
        match v.as_f64() {
            Some(x) if x.is_finite() => Ok(Some(x)),
            _ => bail!("{}: '{k}' must be a number, found {v}", self.name),
        }
    }

    /// A string from the first present key.
    pub fn str(&self, keys: &[&str]) -> Result<Option<&str>> {
        let Some((k, v)) = self.first(keys) else {
            return Ok(None);
        };
        match v.as_str() {
            Some(s) => Ok(Some(s)),
            None => bail!("{}: '{k}' must be a string, found {v}", self.name),
        }
    }

    /// A boolean from the first present key.
    pub fn bool(&self, keys: &[&str]) -> Result<Option<bool>> {
        let Some((k, v)) = self.first(keys) else {
            return Ok(None);
        };
        match v.as_bool() {
            Some(b) => Ok(Some(b)),
            None => bail!("{}: '{k}' must be true or false, found {v}", self.name),
        }
    }

    /// A token id: a non-negative integer, or a list of them (the first one
    /// is taken, as several chat models list more than one end token).
    pub fn token_id(&self, key: &str) -> Result<Option<u64>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let first = match v {
            Value::Array(a) => match a.first() {
                Some(x) => x,
                None => return Ok(None),
            },
            x => x,
        };
        match first.as_u64() {
            Some(n) if n <= u64::from(u32::MAX) => Ok(Some(n)),
            _ => bail!("{}: '{key}' must be a token id, found {v}", self.name),
        }
    }

    pub fn missing(&self, keys: &[&str]) -> anyhow::Error {
        if keys.len() == 1 {
            anyhow::anyhow!("{}: missing '{}'", self.name, keys[0])
        } else {
            anyhow::anyhow!("{}: missing '{}' (also looked for {})", self.name, keys[0], keys[1..].join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> JsonFile {
        let Value::Object(map) = serde_json::from_str(text).unwrap() else { panic!() };
        JsonFile { name: "config.json".into(), map }
    }

    #[test]
    fn getters_validate_and_name_keys() {
        let c = cfg(r#"{"a": 5, "b": -1, "c": 1e30, "d": "x", "e": null, "n": {"t": 2.5},
                         "big": 99999999999, "ids": [7, 8], "f": 1.5}"#);
        assert_eq!(c.req_uint(&["a"], 10).unwrap(), 5);
        assert_eq!(c.uint(&["e", "a"], 10).unwrap(), Some(5), "null counts as absent");
        let e = c.req_uint(&["b"], 10).unwrap_err().to_string();
        assert!(e.contains("'b'") && e.contains("positive integer"), "{e}");
        let e = c.req_uint(&["big"], 1 << 20).unwrap_err().to_string();
        assert!(e.contains("'big'") && e.contains("absurdly large"), "{e}");
        let e = c.req_uint(&["f"], 10).unwrap_err().to_string();
        assert!(e.contains("'f'"), "{e}");
        let e = c.req_uint(&["zz", "yy"], 10).unwrap_err().to_string();
        assert!(e.contains("missing 'zz'") && e.contains("yy"), "{e}");
        assert_eq!(c.float(&["n.t"]).unwrap(), Some(2.5));
        assert!(c.float(&["d"]).unwrap_err().to_string().contains("'d'"));
        assert_eq!(c.str(&["d"]).unwrap(), Some("x"));
        assert!(c.bool(&["a"]).is_err());
        assert_eq!(c.token_id("ids").unwrap(), Some(7));
        assert!(c.token_id("b").is_err());
    }
}
