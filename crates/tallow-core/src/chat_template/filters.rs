//! Jinja2's filters, tests and globals where minijinja's differ from them (or are missing), as
//! Jinja2 3.1 defines them (jinja2/filters.py, jinja2/tests.py) and transformers adds them
//! (`namespace`).

use super::python::{charge, charge_serialized, f64_of, invalid, repr, splitlines, strip, to_str};
use minijinja::value::{Kwargs, Rest, ValueKind, ValueOrKwargs};
use minijinja::{Error, ErrorKind, State, Value};

/// The `trim` filter: Jinja2's is `str.strip(chars)` of the value as a string.
pub(super) fn trim_filter(
    state: &State,
    value: &Value,
    chars: Option<&str>,
) -> Result<Value, Error> {
    let s = to_str(value)?;
    charge(state, s.len())?;
    Ok(Value::from(strip(&s, chars, true, true)))
}

/// The `string` filter: `str(value)`.
pub(super) fn string_filter(state: &State, value: &Value) -> Result<Value, Error> {
    let s = to_str(value)?;
    if value.as_str().is_none() {
        charge_serialized(state, s.len())?;
    }
    Ok(Value::from(s))
}

/// The `wordcount` filter (Jinja2: `len(re.findall(r"\w+", s))`).
pub(super) fn wordcount_filter(state: &State, value: &Value) -> Result<Value, Error> {
    let s = to_str(value)?;
    charge(state, s.len())?;
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut count = 0;
    let mut in_word = false;
    for c in s.chars() {
        if is_word(c) && !in_word {
            count += 1;
        }
        in_word = is_word(c);
    }
    Ok(Value::from(count))
}

/// Arguments given positionally and by keyword, in the slots of a Python signature `names`.
pub(super) fn python_args<const N: usize>(
    function: &str,
    args: Rest<ValueOrKwargs>,
    names: [&str; N],
) -> Result<[Option<Value>; N], Error> {
    let mut slots: [Option<Value>; N] = std::array::from_fn(|_| None);
    let mut positional = 0;
    for arg in args.0 {
        let arg = arg.into_value();
        if arg.is_kwargs() {
            let kwargs = <Kwargs as minijinja::value::ArgType>::from_value(Some(&arg))?;
            for name in kwargs.args() {
                let slot = names.iter().position(|n| *n == name).ok_or_else(|| {
                    Error::new(
                        ErrorKind::TooManyArguments,
                        format!("{function}() got an unexpected keyword argument '{name}'"),
                    )
                })?;
                slots[slot] = Some(kwargs.get::<Value>(name)?);
            }
        } else {
            let slot = slots.get_mut(positional).ok_or_else(|| {
                Error::new(
                    ErrorKind::TooManyArguments,
                    format!("{function}() takes at most {} arguments", N + 1),
                )
            })?;
            *slot = Some(arg);
            positional += 1;
        }
    }
    Ok(slots)
}

/// The `indent` filter, Jinja2's `do_indent(s, width=4, first=False, blank=False)`: `width` is a
/// count of spaces or the indentation string itself, lines are Python's `splitlines` (so `\r\n`
/// comes out as `\n`), and empty lines stay empty unless `blank`.
pub(super) fn indent_filter(
    state: &State,
    value: &Value,
    args: Rest<ValueOrKwargs>,
) -> Result<Value, Error> {
    let [width, first, blank] = python_args("indent", args, ["width", "first", "blank"])?;
    let first = first.is_some_and(|v| v.is_true());
    let blank = blank.is_some_and(|v| v.is_true());
    let indentation = match width {
        None => "    ".to_string(),
        Some(w) if w.kind() == ValueKind::String => w.as_str().unwrap_or_default().to_string(),
        Some(w) => {
            let n = usize::try_from(i64::try_from(w)?.max(0)).unwrap_or(0);
            charge(state, n)?;
            " ".repeat(n)
        }
    };
    let mut s = to_str(value)?;
    s.push('\n');
    let lines = splitlines(&s, false);
    charge(state, s.len() + lines.len() * indentation.len())?;
    let mut out = String::new();
    if blank {
        out = lines.join(&format!("\n{indentation}"));
    } else {
        let mut lines = lines.into_iter();
        out.push_str(&lines.next().unwrap_or_default());
        for line in lines {
            out.push('\n');
            if !line.is_empty() {
                out.push_str(&indentation);
            }
            out.push_str(&line);
        }
    }
    if first {
        out.insert_str(0, &indentation);
    }
    Ok(Value::from(out))
}

/// The `int` filter, Jinja2's `do_int(value, default=0, base=10)`: `int(value)`, else
/// `int(float(value))` for strings such as "3.7", else the default.
pub(super) fn int_filter(value: &Value, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    let [default, base] = python_args("int", args, ["default", "base"])?;
    let default = default.unwrap_or_else(|| Value::from(0));
    let base = match base {
        Some(b) => Some(u32::try_from(b)?),
        None => None,
    };
    if base.is_some_and(|b| !(2..=36).contains(&b)) {
        return Err(invalid("int() base must be >= 2 and <= 36"));
    }
    Ok(match value.kind() {
        ValueKind::Bool => Value::from(i64::from(value.is_true())),
        ValueKind::Number if value.is_integer() => value.clone(),
        ValueKind::Number => match f64_of(value) {
            Some(f) if f.is_finite() => Value::from(f.trunc() as i64),
            _ => default,
        },
        ValueKind::String => {
            let s = strip(value.as_str().unwrap_or_default(), None, true, true).replace('_', "");
            let base = base.unwrap_or(10);
            let digits = match base {
                16 => s
                    .strip_prefix("0x")
                    .or_else(|| s.strip_prefix("0X"))
                    .unwrap_or(&s),
                8 => s
                    .strip_prefix("0o")
                    .or_else(|| s.strip_prefix("0O"))
                    .unwrap_or(&s),
                2 => s
                    .strip_prefix("0b")
                    .or_else(|| s.strip_prefix("0B"))
                    .unwrap_or(&s),
                _ => &s,
            };
            if let Ok(n) = i64::from_str_radix(digits, base) {
                Value::from(n)
            } else if let Ok(n) = i128::from_str_radix(digits, base) {
                Value::from(n)
            } else {
                match s.parse::<f64>() {
                    Ok(f) if f.is_finite() => Value::from(f.trunc() as i64),
                    _ => default,
                }
            }
        }
        _ => default,
    })
}

/// The `float` filter, Jinja2's `do_float(value, default=0.0)`.
pub(super) fn float_filter(value: &Value, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    let [default] = python_args("float", args, ["default"])?;
    let default = default.unwrap_or_else(|| Value::from(0.0));
    Ok(match value.kind() {
        ValueKind::Bool => Value::from(if value.is_true() { 1.0 } else { 0.0 }),
        ValueKind::Number => f64::try_from(value.clone())
            .map(Value::from)
            .unwrap_or(default),
        ValueKind::String => {
            let s = strip(value.as_str().unwrap_or_default(), None, true, true).replace('_', "");
            s.parse::<f64>().map(Value::from).unwrap_or(default)
        }
        _ => default,
    })
}

/// The `center` filter: `str.center(width)` (Jinja2's default width is 80).
pub(super) fn center_filter(
    state: &State,
    value: &Value,
    width: Option<i64>,
) -> Result<Value, Error> {
    let s = to_str(value)?;
    let len = s.chars().count() as i64;
    let width = width.unwrap_or(80);
    if width <= len {
        return Ok(Value::from(s));
    }
    charge(state, width as usize)?;
    // CPython's pad(): the odd space goes left when both the margin and the width are odd
    let margin = width - len;
    let left = margin / 2 + (margin & width & 1);
    let mut out = " ".repeat(left as usize);
    out.push_str(&s);
    out.push_str(&" ".repeat((margin - left) as usize));
    Ok(Value::from(out))
}

/// The `sequence` test: Jinja2 accepts anything with a length and item access, so strings and
/// dicts are sequences too.
pub(super) fn is_sequence(value: &Value) -> bool {
    matches!(
        value.kind(),
        ValueKind::String | ValueKind::Seq | ValueKind::Map | ValueKind::Bytes
    )
}

/// `namespace(...)`, refusing underscore-prefixed attribute names as transformers'
/// `TemplateNamespace` does.
pub(super) fn namespace(defaults: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    let defaults = defaults.0;
    if defaults.len() > 1 {
        return Err(Error::new(
            ErrorKind::TooManyArguments,
            "namespace() takes at most one positional argument",
        ));
    }
    let defaults = defaults.into_iter().next();
    if let Some(map) = defaults.as_ref() {
        if let Ok(keys) = map.try_iter() {
            for key in keys {
                if key.as_str().is_some_and(|k| k.starts_with('_')) {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        format!(
                            "Chat templates cannot store underscore-prefixed attributes on a \
                             namespace, but got {}. Please rename the attribute.",
                            repr(&key)?
                        ),
                    ));
                }
            }
        }
    }
    minijinja::functions::namespace(defaults)
}
