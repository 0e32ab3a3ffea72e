//! Python semantics that chat templates rely on and minijinja does not give by itself.
//!
//! Templates are written against Jinja2 running in CPython, so `{{ value }}` prints `str(value)`,
//! `.strip()` strips what `str.isspace` calls whitespace, and so on. minijinja 3 already prints
//! `None`/`True` and lists like Python; what differs is patched here:
//! - floats print as Python's `repr` (`1e+16`, `1e-05`), also inside lists and dicts;
//! - strings inside lists and dicts print as Python's `repr` (`'\xa0'`, `'\u200b'`);
//! - Python's whitespace (`str.isspace`) adds U+001C..U+001F to Rust's `char::is_whitespace`;
//! - `str.splitlines` splits on every line boundary Python knows, not only `\n`;
//! - the string methods minijinja-contrib's `pycompat` lacks (`rsplit`, `partition`,
//!   `removeprefix`, ...) or gets subtly different (`strip`, `split`, `title`) are implemented
//!   here; every other method falls through to `pycompat`.
//!
//! Jinja2's own filters and globals that minijinja gets different are in `filters.rs`.

use minijinja::value::{from_args, Tuple, ValueKind};
use minijinja::{Error, ErrorKind, Output, State, Value};
use std::fmt::Write as _;

/// Containers nested deeper than this are refused by `repr`, `tojson` and friends instead of
/// recursing until the stack runs out (a template can build `[[[[...]]]]` in a loop).
pub(super) const MAX_DEPTH: usize = 256;

/// `str.isspace()` for one character.
pub(super) fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Line boundaries of `str.splitlines()` (besides `\r\n`, which counts as one).
fn is_line_boundary(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r'
            | '\u{0b}'
            | '\u{0c}'
            | '\u{1c}'
            | '\u{1d}'
            | '\u{1e}'
            | '\u{85}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// `str.strip(chars)` / `lstrip` / `rstrip`: `chars = None` strips Python whitespace.
pub(super) fn strip<'a>(s: &'a str, chars: Option<&str>, left: bool, right: bool) -> &'a str {
    let strip_char = |c: char| match chars {
        Some(chars) => chars.contains(c),
        None => is_space(c),
    };
    let mut out = s;
    if left {
        out = out.trim_start_matches(strip_char);
    }
    if right {
        out = out.trim_end_matches(strip_char);
    }
    out
}

/// `str.split(sep, maxsplit)`; `sep = None` splits on runs of whitespace and drops empty parts.
fn split(s: &str, sep: Option<&str>, maxsplit: i64) -> Result<Vec<String>, Error> {
    let limit = usize::try_from(maxsplit).ok();
    let mut parts = Vec::new();
    match sep {
        Some("") => return Err(invalid("empty separator")),
        Some(sep) => {
            let mut rest = s;
            while limit.is_none_or(|n| parts.len() < n) {
                match rest.find(sep) {
                    Some(at) => {
                        parts.push(rest[..at].to_string());
                        rest = &rest[at + sep.len()..];
                    }
                    None => break,
                }
            }
            parts.push(rest.to_string());
        }
        None => {
            let mut rest = strip(s, None, true, false);
            while !rest.is_empty() {
                if limit.is_some_and(|n| parts.len() >= n) {
                    parts.push(rest.to_string());
                    break;
                }
                let end = rest.find(is_space).unwrap_or(rest.len());
                parts.push(rest[..end].to_string());
                rest = strip(&rest[end..], None, true, false);
            }
        }
    }
    Ok(parts)
}

/// `str.rsplit(sep, maxsplit)`.
fn rsplit(s: &str, sep: Option<&str>, maxsplit: i64) -> Result<Vec<String>, Error> {
    let limit = usize::try_from(maxsplit).ok();
    let mut parts = Vec::new();
    match sep {
        Some("") => return Err(invalid("empty separator")),
        Some(sep) => {
            let mut rest = s;
            while limit.is_none_or(|n| parts.len() < n) {
                match rest.rfind(sep) {
                    Some(at) => {
                        parts.push(rest[at + sep.len()..].to_string());
                        rest = &rest[..at];
                    }
                    None => break,
                }
            }
            parts.push(rest.to_string());
        }
        None => {
            let mut rest = strip(s, None, false, true);
            while !rest.is_empty() {
                if limit.is_some_and(|n| parts.len() >= n) {
                    parts.push(rest.to_string());
                    break;
                }
                let start = rest.rfind(is_space).map_or(0, |at| {
                    at + rest[at..].chars().next().map_or(1, char::len_utf8)
                });
                parts.push(rest[start..].to_string());
                rest = strip(&rest[..start], None, false, true);
            }
        }
    }
    parts.reverse();
    Ok(parts)
}

/// `str.splitlines(keepends)`.
pub(super) fn splitlines(s: &str, keepends: bool) -> Vec<String> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if !is_line_boundary(c) {
            continue;
        }
        let mut end = at + c.len_utf8();
        if c == '\r' {
            if let Some(&(_, '\n')) = chars.peek() {
                chars.next();
                end += 1;
            }
        }
        lines.push(s[start..if keepends { end } else { at }].to_string());
        start = end;
    }
    if start < s.len() {
        lines.push(s[start..].to_string());
    }
    lines
}

pub(super) fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, message.into())
}

/// Charges the fuel for `len` bytes of string data scanned or built (one fuel per 64 bytes, the
/// rate minijinja charges for data); called before building where the size is known.
pub(super) fn charge(state: &State, len: usize) -> Result<(), Error> {
    state.consume_fuel((len / 64) as u64)
}

/// Charges the fuel for `len` bytes of serialized output (`tojson`, `repr`): walking a structure
/// is slower than copying bytes, so minijinja charges its own serializers a quarter fuel a byte.
pub(super) fn charge_serialized(state: &State, len: usize) -> Result<(), Error> {
    state.consume_fuel((len / 4) as u64)
}

/// A list of strings as a template value.
fn string_list(parts: Vec<String>) -> Value {
    Value::from(parts.into_iter().map(Value::from).collect::<Vec<_>>())
}

/// minijinja's unknown-method callback: Python methods on strings that `pycompat` lacks or gets
/// wrong, then everything else through `pycompat`.
pub(super) fn call_method(
    state: &mut State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    if let Some(s) = value.as_str() {
        if let Some(result) = string_method(state, s, method, args)? {
            return Ok(result);
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

fn string_method(
    state: &State,
    s: &str,
    method: &str,
    args: &[Value],
) -> Result<Option<Value>, Error> {
    let result = match method {
        "strip" | "lstrip" | "rstrip" => {
            let (chars,): (Option<&str>,) = from_args(args)?;
            let (left, right) = match method {
                "strip" => (true, true),
                "lstrip" => (true, false),
                _ => (false, true),
            };
            Value::from(strip(s, chars, left, right))
        }
        "split" | "rsplit" => {
            let (sep, maxsplit): (Option<&str>, Option<i64>) = from_args(args)?;
            charge(state, s.len())?;
            let maxsplit = maxsplit.unwrap_or(-1);
            string_list(if method == "split" {
                split(s, sep, maxsplit)?
            } else {
                rsplit(s, sep, maxsplit)?
            })
        }
        "splitlines" => {
            let (keepends,): (Option<bool>,) = from_args(args)?;
            charge(state, s.len())?;
            string_list(splitlines(s, keepends.unwrap_or(false)))
        }
        "isspace" => {
            let () = from_args(args)?;
            charge(state, s.len())?;
            Value::from(!s.is_empty() && s.chars().all(is_space))
        }
        "partition" | "rpartition" => {
            let (sep,): (&str,) = from_args(args)?;
            if sep.is_empty() {
                return Err(invalid("empty separator"));
            }
            charge(state, s.len())?;
            let found = if method == "partition" {
                s.find(sep)
            } else {
                s.rfind(sep)
            };
            let parts: [&str; 3] = match (found, method) {
                (Some(at), _) => [&s[..at], sep, &s[at + sep.len()..]],
                (None, "partition") => [s, "", ""],
                (None, _) => ["", "", s],
            };
            Value::from(Tuple::from(parts.map(Value::from)))
        }
        "title" => {
            // Python: a cased character after a cased one is lowered, any other is title-cased
            // (minijinja's `title` is Jinja2's filter, which only starts words after spaces and
            // brackets)
            let () = from_args(args)?;
            charge(state, s.len())?;
            let mut out = String::with_capacity(s.len());
            let mut previous_cased = false;
            for c in s.chars() {
                if previous_cased {
                    out.extend(c.to_lowercase());
                } else {
                    out.extend(c.to_uppercase());
                }
                previous_cased = c.is_lowercase() || c.is_uppercase();
            }
            Value::from(out)
        }
        "removeprefix" => {
            let (prefix,): (&str,) = from_args(args)?;
            Value::from(s.strip_prefix(prefix).unwrap_or(s))
        }
        "removesuffix" => {
            let (suffix,): (&str,) = from_args(args)?;
            Value::from(s.strip_suffix(suffix).unwrap_or(s))
        }
        "index" | "rindex" => {
            let (sub,): (&str,) = from_args(args)?;
            charge(state, s.len())?;
            let found = if method == "index" {
                s.find(sub)
            } else {
                s.rfind(sub)
            };
            match found {
                Some(at) => Value::from(s[..at].chars().count()),
                None => return Err(invalid("substring not found")),
            }
        }
        "join" => {
            // `str.join` takes strings only (Python raises TypeError otherwise); printing the
            // items with `str()` keeps the output Python's for the cases that do work.
            let (items,): (&Value,) = from_args(args)?;
            let mut out = String::new();
            for (i, item) in items.try_iter()?.enumerate() {
                if i > 0 {
                    charge(state, s.len())?;
                    out.push_str(s);
                }
                match item.as_str() {
                    Some(item) => out.push_str(item),
                    None => {
                        return Err(invalid(format!(
                            "sequence item {i}: expected str instance, {} found",
                            item.kind()
                        )))
                    }
                }
            }
            Value::from(out)
        }
        _ => return Ok(None),
    };
    Ok(Some(result))
}

/// The output formatter: `{{ value }}` writes `str(value)`.
pub(super) fn format_value(
    out: &mut Output,
    _state: &mut State,
    value: &Value,
) -> Result<(), Error> {
    let written = match value.as_str() {
        Some(s) => out.write_str(s),
        None => out.write_str(&to_str(value)?),
    };
    written.map_err(|_| Error::new(ErrorKind::WriteFailure, "could not write the output"))
}

/// `str(value)`.
pub(super) fn to_str(value: &Value) -> Result<String, Error> {
    Ok(match value.kind() {
        ValueKind::String => value.as_str().unwrap_or_default().to_string(),
        ValueKind::Undefined => String::new(),
        _ => {
            let mut out = String::new();
            write_repr(&mut out, value, 0)?;
            out
        }
    })
}

/// `repr(value)`.
pub(super) fn repr(value: &Value) -> Result<String, Error> {
    let mut out = String::new();
    write_repr(&mut out, value, 0)?;
    Ok(out)
}

fn write_repr(out: &mut String, value: &Value, depth: usize) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(invalid(format!(
            "value nested deeper than {MAX_DEPTH} levels"
        )));
    }
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::String => write_str_repr(out, value.as_str().unwrap_or_default()),
        ValueKind::Number => match f64_of(value) {
            Some(f) => out.push_str(&float_repr(f)),
            None => {
                let _ = write!(out, "{value}");
            }
        },
        ValueKind::Seq => {
            let tuple = value.downcast_object_ref::<Tuple>().is_some();
            out.push(if tuple { '(' } else { '[' });
            let mut n = 0;
            for (i, item) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(out, &item, depth + 1)?;
                n += 1;
            }
            if tuple && n == 1 {
                out.push(',');
            }
            out.push(if tuple { ')' } else { ']' });
        }
        ValueKind::Map
            if value
                .as_object()
                .is_some_and(|o| o.try_iter_pairs().is_some()) =>
        {
            out.push('{');
            let pairs = value.as_object().and_then(|o| o.try_iter_pairs());
            for (i, (key, item)) in pairs.into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(out, &key, depth + 1)?;
                out.push_str(": ");
                write_repr(out, &item, depth + 1)?;
            }
            out.push('}');
        }
        _ => {
            let _ = write!(out, "{value}");
        }
    }
    Ok(())
}

/// The value as an `f64` when it is a float (integers print as integers).
pub(super) fn f64_of(value: &Value) -> Option<f64> {
    if value.kind() == ValueKind::Number && !value.is_integer() {
        f64::try_from(value.clone()).ok()
    } else {
        None
    }
}

/// Python's `repr(float)`: the shortest digits that round-trip, in positional notation when the
/// decimal exponent is in [-4, 16), else scientific with a signed two-digit exponent.
pub(super) fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "-1.2345e-7".
    let sci = format!("{f:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    // value = 0.DIGITS x 10^point
    let point = exponent + 1;
    if !(-4 < point && point <= 16) {
        let mut out = format!("{sign}{}", &digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(
            out,
            "e{}{:02}",
            if exponent < 0 { '-' } else { '+' },
            exponent.abs()
        );
        return out;
    }
    let mut out = String::from(sign);
    if point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-point) as usize));
        out.push_str(&digits);
    } else {
        let point = point as usize;
        if digits.len() <= point {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', point - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
    out
}

/// Python's `repr(str)`: single quotes unless the text holds `'` and no `"`; backslash escapes
/// for the quote, backslash, `\t \n \r`, and `\x.. \u.... \U........` for what
/// `str.isprintable` rejects.
fn write_str_repr(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            _ if c == quote || c == '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            _ if is_printable(c) => out.push(c),
            _ if (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            _ if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            _ => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push(quote);
}

/// `str.isprintable` for one character: false for control, format, separator (but the ASCII
/// space), surrogate and private-use characters. Unassigned code points (which need the Unicode
/// database to know) count as printable here, where Python escapes them.
fn is_printable(c: char) -> bool {
    let u = c as u32;
    let not_printable = matches!(u,
        // Cc
        0x00..=0x1f | 0x7f..=0x9f
        // Zs (but the space), Zl, Zp
        | 0xa0 | 0x1680 | 0x2000..=0x200a | 0x2028 | 0x2029 | 0x202f | 0x205f | 0x3000
        // Cf
        | 0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x890..=0x891 | 0x8e2 | 0x180e
        | 0x200b..=0x200f | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x206f | 0xfeff
        | 0xfff9..=0xfffb | 0x110bd | 0x110cd | 0x13430..=0x1343f | 0x1bca0..=0x1bca3
        | 0x1d173..=0x1d17a | 0xe0001 | 0xe0020..=0xe007f
        // Co
        | 0xe000..=0xf8ff | 0xf0000..=0xffffd | 0x100000..=0x10fffd
        // noncharacters (Cn)
        | 0xfdd0..=0xfdef
    ) || (u & 0xfffe) == 0xfffe;
    !not_printable
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_python_repr() {
        for (f, want) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e15, "1000000000000000.0"),
            (123456789.0, "123456789.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.234e-7, "1.234e-07"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e300 * 1e10, "inf"),
            (-0.0, "-0.0"),
            (1e100, "1e+100"),
        ] {
            assert_eq!(float_repr(f), want, "{f:e}");
        }
    }

    #[test]
    fn split_and_strip_follow_python() {
        assert_eq!(split(" a  b\u{1c}c ", None, -1).unwrap(), ["a", "b", "c"]);
        assert_eq!(split("a b c", None, 1).unwrap(), ["a", "b c"]);
        assert_eq!(split("a,,b", Some(","), -1).unwrap(), ["a", "", "b"]);
        assert_eq!(split("", Some(","), -1).unwrap(), [""]);
        assert!(split("", None, -1).unwrap().is_empty());
        assert_eq!(rsplit("a-b-c", Some("-"), 1).unwrap(), ["a-b", "c"]);
        assert_eq!(rsplit(" a b  c ", None, 1).unwrap(), [" a b", "c"]);
        assert_eq!(strip("\u{1f} x \u{a0}", None, true, true), "x");
        assert_eq!(strip("xxhixx", Some("x"), true, false), "hixx");
        assert_eq!(splitlines("a\r\nb\u{2028}c\n", false), ["a", "b", "c"]);
        assert_eq!(splitlines("a\r\nb", true), ["a\r\n", "b"]);
    }

    #[test]
    fn strings_repr_like_python() {
        let r = |s: &str| {
            let mut out = String::new();
            write_str_repr(&mut out, s);
            out
        };
        assert_eq!(r("it's"), "\"it's\"");
        assert_eq!(r("a\"b'c"), "'a\"b\\'c'");
        assert_eq!(r("é\u{a0}\u{200b}\n\u{1}"), "'é\\xa0\\u200b\\n\\x01'");
    }
}
