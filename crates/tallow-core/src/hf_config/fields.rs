//! Typed, bounded reads of config.json fields. config.json is untrusted input: every field is
//! type-checked, sizes are bounded, and each problem names the field and the value.

use crate::error::{Error, ErrorCode, Result};
use serde_json::{Map, Value};

/// Upper bound on any size read from config.json, so a hostile file cannot ask for absurd
/// allocations before the weights are even looked at.
const MAX_DIM: u64 = 1 << 24;

/// A JSON object of config.json (the whole file or a nested one such as `rope_scaling`),
/// with `path` naming it in messages (`""` for the top level, `"rope_scaling."` inside).
#[derive(Clone, Copy)]
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    path: &'a str,
}

pub fn invalid(message: String) -> Error {
    Error::new(ErrorCode::InvalidConfig, message)
}

pub fn unsupported(field: &str, value: &str) -> Error {
    Error::new(
        ErrorCode::UnsupportedConfig,
        format!("config.json: {field} = '{value}' is not supported"),
    )
}

impl<'a> Fields<'a> {
    pub fn new(map: &'a Map<String, Value>, path: &'a str) -> Self {
        Fields { map, path }
    }

    pub fn name(&self, field: &str) -> String {
        format!("{}{field}", self.path)
    }

    pub fn has(&self, field: &str) -> bool {
        !matches!(self.map.get(field), None | Some(Value::Null))
    }

    fn get(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    /// A nested object, if present.
    pub fn object(&self, field: &str) -> Result<Option<&'a Map<String, Value>>> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(v) => Err(invalid(format!(
                "config.json field '{}' must be an object, got {v}",
                self.name(field)
            ))),
        }
    }

    /// A required positive integer size.
    pub fn dim(&self, field: &str) -> Result<usize> {
        self.opt_dim(field)?.ok_or_else(|| self.missing(field))
    }

    pub fn opt_dim(&self, field: &str) -> Result<Option<usize>> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 && n <= MAX_DIM => Ok(Some(n as usize)),
                _ => Err(invalid(format!(
                    "config.json field '{}' must be an integer in 1..={MAX_DIM}, got {v}",
                    self.name(field)
                ))),
            },
        }
    }

    /// An integer that may be zero (e.g. a count of experts).
    pub fn opt_count(&self, field: &str) -> Result<Option<usize>> {
        match self.get(field) {
            Some(v) if v.as_u64() == Some(0) => Ok(Some(0)),
            _ => self.opt_dim(field),
        }
    }

    pub fn opt_f64(&self, field: &str) -> Result<Option<f64>> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() => Ok(Some(x)),
                _ => Err(invalid(format!(
                    "config.json field '{}' must be a finite number, got {v}",
                    self.name(field)
                ))),
            },
        }
    }

    /// A required number > 0.
    pub fn positive(&self, field: &str) -> Result<f64> {
        self.opt_positive(field)?.ok_or_else(|| self.missing(field))
    }

    pub fn opt_positive(&self, field: &str) -> Result<Option<f64>> {
        match self.opt_f64(field)? {
            Some(x) if x > 0.0 => Ok(Some(x)),
            Some(x) => Err(invalid(format!(
                "config.json field '{}' must be > 0, got {x}",
                self.name(field)
            ))),
            None => Ok(None),
        }
    }

    pub fn opt_bool(&self, field: &str) -> Result<Option<bool>> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| {
                invalid(format!(
                    "config.json field '{}' must be true or false, got {v}",
                    self.name(field)
                ))
            }),
        }
    }

    pub fn opt_str(&self, field: &str) -> Result<Option<&'a str>> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(invalid(format!(
                "config.json field '{}' must be a string, got {v}",
                self.name(field)
            ))),
        }
    }

    /// A list of positive numbers (e.g. LongRoPE factors).
    pub fn positive_list(&self, field: &str) -> Result<Vec<f64>> {
        let list = match self.get(field) {
            Some(Value::Array(items)) => items,
            Some(v) => {
                return Err(invalid(format!(
                    "config.json field '{}' must be a list of numbers, got {v}",
                    self.name(field)
                )))
            }
            None => return Err(self.missing(field)),
        };
        list.iter()
            .map(|v| match v.as_f64() {
                Some(x) if x.is_finite() && x > 0.0 => Ok(x),
                _ => Err(invalid(format!(
                    "config.json field '{}' must hold positive numbers, got {v}",
                    self.name(field)
                ))),
            })
            .collect()
    }

    /// A list of strings (e.g. `layer_types`), if present.
    pub fn opt_str_list(&self, field: &str) -> Result<Option<Vec<&'a str>>> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str().ok_or_else(|| {
                        invalid(format!(
                            "config.json field '{}' must hold strings, got {v}",
                            self.name(field)
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(v) => Err(invalid(format!(
                "config.json field '{}' must be a list, got {v}",
                self.name(field)
            ))),
        }
    }

    /// A list of layer indices (e.g. `mlp_only_layers`); absent is empty.
    pub fn index_list(&self, field: &str) -> Result<Vec<usize>> {
        match self.get(field) {
            None => Ok(vec![]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_u64()
                        .filter(|&n| n < MAX_DIM)
                        .map(|n| n as usize)
                        .ok_or_else(|| {
                            invalid(format!(
                                "config.json field '{}' must hold layer indices, got {v}",
                                self.name(field)
                            ))
                        })
                })
                .collect(),
            Some(v) => Err(invalid(format!(
                "config.json field '{}' must be a list, got {v}",
                self.name(field)
            ))),
        }
    }

    /// A token id field that may be a single id or a list of ids (as eos_token_id often is).
    pub fn token_ids(&self, field: &str) -> Result<Vec<u32>> {
        let as_id = |v: &Value| -> Result<u32> {
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    invalid(format!(
                        "'{}' must hold token ids, got {v}",
                        self.name(field)
                    ))
                })
        };
        match self.get(field) {
            None => Ok(vec![]),
            Some(Value::Array(items)) => items.iter().map(as_id).collect(),
            Some(v) => Ok(vec![as_id(v)?]),
        }
    }

    fn missing(&self, field: &str) -> Error {
        invalid(format!(
            "config.json is missing required field '{}'",
            self.name(field)
        ))
    }
}
