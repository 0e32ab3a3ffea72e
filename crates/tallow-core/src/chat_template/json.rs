//! The `tojson` filter as transformers defines it (chat_template_utils.py):
//!
//! ```python
//! def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
//!     return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
//! ```
//!
//! so the output is Python's `json.dumps`, not Jinja2's HTML-safe `tojson` (no `<` escaping), and
//! not serde_json's: `", "` and `": "` separators, floats as Python's `repr`, `NaN`/`Infinity`,
//! keys in insertion order unless `sort_keys`.

use super::filters::python_args;
use super::python::{charge, charge_serialized, f64_of, float_repr, MAX_DEPTH};
use minijinja::value::{Rest, Tuple, ValueKind, ValueOrKwargs};
use minijinja::{Error, ErrorKind, State, Value};
use std::fmt::Write as _;

/// `json.dumps` options, in the filter's positional order.
struct Options {
    ensure_ascii: bool,
    /// `None`: everything on one line; `Some(unit)`: one item per line, indented by `unit`.
    indent: Option<String>,
    item_separator: String,
    key_separator: String,
    sort_keys: bool,
}

/// `value | tojson(ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
pub(super) fn tojson(
    state: &State,
    value: &Value,
    args: Rest<ValueOrKwargs>,
) -> Result<Value, Error> {
    let options = parse_options(state, args)?;
    let mut writer = Writer {
        state,
        options: &options,
        out: String::new(),
        charged: 0,
    };
    writer.value(value, 0)?;
    let rest = writer.out.len() - writer.charged;
    charge_serialized(state, rest)?;
    Ok(Value::from(writer.out))
}

fn parse_options(state: &State, args: Rest<ValueOrKwargs>) -> Result<Options, Error> {
    let [ensure_ascii, indent, separators, sort_keys] = python_args(
        "tojson",
        args,
        ["ensure_ascii", "indent", "separators", "sort_keys"],
    )?;
    let present = |v: &Option<Value>| {
        v.as_ref()
            .filter(|v| !v.is_none() && !v.is_undefined())
            .cloned()
    };
    let indent = match present(&indent) {
        None => None,
        Some(v) if v.kind() == ValueKind::String => {
            Some(v.as_str().unwrap_or_default().to_string())
        }
        Some(v) if v.is_integer() || v.kind() == ValueKind::Bool => {
            // Python: `' ' * indent` (a negative count gives "", True counts as 1)
            let width = i64::try_from(v.clone()).unwrap_or(0).max(0) as usize;
            charge(state, width)?;
            Some(" ".repeat(width))
        }
        Some(v) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson indent must be an int or a string, not {}", v.kind()),
            ))
        }
    };
    let (item_separator, key_separator) = match present(&separators) {
        Some(v) => {
            let parts: Vec<Value> = v.try_iter()?.collect();
            match parts.as_slice() {
                [item, key] if item.as_str().is_some() && key.as_str().is_some() => (
                    item.as_str().unwrap_or_default().to_string(),
                    key.as_str().unwrap_or_default().to_string(),
                ),
                _ => {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson separators must be a pair of strings",
                    ))
                }
            }
        }
        // json.dumps: (', ', ': ') on one line, (',', ': ') when indenting
        None if indent.is_some() => (",".into(), ": ".into()),
        None => (", ".into(), ": ".into()),
    };
    Ok(Options {
        ensure_ascii: ensure_ascii.is_some_and(|v| v.is_true()),
        indent,
        item_separator,
        key_separator,
        sort_keys: sort_keys.is_some_and(|v| v.is_true()),
    })
}

struct Writer<'a, 's, 'env> {
    state: &'a State<'s, 'env>,
    options: &'a Options,
    out: String,
    /// Bytes of `out` already paid for with fuel.
    charged: usize,
}

impl Writer<'_, '_, '_> {
    /// Pays for the output written since the last call, so a huge result (deep indentation of a
    /// big structure) stops at the fuel limit instead of growing unbounded.
    fn pay(&mut self) -> Result<(), Error> {
        let grown = self.out.len() - self.charged;
        if grown >= 4096 {
            charge_serialized(self.state, grown)?;
            self.charged = self.out.len();
        }
        Ok(())
    }

    /// A newline and the indentation of `depth`, paid for before it is written (a long indent
    /// unit at a deep level is a lot of bytes).
    fn newline(&mut self, depth: usize) -> Result<(), Error> {
        if let Some(unit) = &self.options.indent {
            let len = 1 + depth * unit.len();
            charge_serialized(self.state, len)?;
            self.charged += len;
            self.out.push('\n');
            for _ in 0..depth {
                self.out.push_str(unit);
            }
        }
        Ok(())
    }

    fn value(&mut self, value: &Value, depth: usize) -> Result<(), Error> {
        if depth > MAX_DEPTH {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: value nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        self.pay()?;
        match value.kind() {
            ValueKind::None => self.out.push_str("null"),
            ValueKind::Bool => self
                .out
                .push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number => match f64_of(value) {
                Some(f) => self.out.push_str(&json_float(f)),
                None => {
                    let _ = write!(self.out, "{value}");
                }
            },
            ValueKind::String => self.string(value.as_str().unwrap_or_default()),
            ValueKind::Seq => {
                let items: Vec<Value> = value.try_iter()?.collect();
                self.container('[', ']', items.len(), depth, |w, i, depth| {
                    w.value(&items[i], depth)
                })?;
            }
            ValueKind::Map if value.as_object().and_then(|o| o.try_iter_pairs()).is_some() => {
                let mut pairs: Vec<(Value, Value)> = value
                    .as_object()
                    .and_then(|o| o.try_iter_pairs())
                    .into_iter()
                    .flatten()
                    .collect();
                if self.options.sort_keys {
                    sort_pairs(&mut pairs)?;
                }
                self.container('{', '}', pairs.len(), depth, |w, i, depth| {
                    let key = key_string(&pairs[i].0)?;
                    w.string(&key);
                    let separator = w.options.key_separator.clone();
                    w.out.push_str(&separator);
                    w.value(&pairs[i].1, depth)
                })?;
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "Object of type {} is not JSON serializable",
                        type_name(value)
                    ),
                ))
            }
        }
        Ok(())
    }

    fn container(
        &mut self,
        open: char,
        close: char,
        len: usize,
        depth: usize,
        mut item: impl FnMut(&mut Self, usize, usize) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.out.push(open);
        if len == 0 {
            self.out.push(close);
            return Ok(());
        }
        for i in 0..len {
            if i > 0 {
                let separator = self.options.item_separator.clone();
                self.out.push_str(&separator);
            }
            self.newline(depth + 1)?;
            item(self, i, depth + 1)?;
        }
        self.newline(depth)?;
        self.out.push(close);
        Ok(())
    }

    /// A JSON string as CPython's encoder writes it.
    fn string(&mut self, s: &str) {
        let out = &mut self.out;
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c if self.options.ensure_ascii && !c.is_ascii() => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        let _ = write!(out, "\\u{unit:04x}");
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// Python's json float: `repr`, with `NaN`, `Infinity`, `-Infinity` for the non-finite ones.
fn json_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        float_repr(f)
    }
}

/// A dict key as json.dumps writes it: strings as they are; numbers, booleans and None converted;
/// anything else is a TypeError in Python.
fn key_string(key: &Value) -> Result<String, Error> {
    Ok(match key.kind() {
        ValueKind::String => key.as_str().unwrap_or_default().to_string(),
        ValueKind::None => "null".into(),
        ValueKind::Bool => if key.is_true() { "true" } else { "false" }.into(),
        ValueKind::Number => match f64_of(key) {
            Some(f) => json_float(f),
            None => key.to_string(),
        },
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "keys must be str, int, float, bool or None, not {}",
                    type_name(key)
                ),
            ))
        }
    })
}

/// `sorted(dct.items())` on the keys: all strings or all numbers, else Python's TypeError.
fn sort_pairs(pairs: &mut [(Value, Value)]) -> Result<(), Error> {
    let all = |kind: ValueKind| pairs.iter().all(|(k, _)| k.kind() == kind);
    if !(all(ValueKind::String) || all(ValueKind::Number)) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "tojson(sort_keys=True) needs keys of one comparable type",
        ));
    }
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(())
}

/// The Python type name of a value, for error messages.
fn type_name(value: &Value) -> &'static str {
    match value.kind() {
        ValueKind::Undefined => "Undefined",
        ValueKind::None => "NoneType",
        ValueKind::Bool => "bool",
        ValueKind::Number if value.is_integer() => "int",
        ValueKind::Number => "float",
        ValueKind::String => "str",
        ValueKind::Bytes => "bytes",
        ValueKind::Seq if value.downcast_object_ref::<Tuple>().is_some() => "tuple",
        ValueKind::Seq => "list",
        ValueKind::Map => "dict",
        _ => "object",
    }
}
