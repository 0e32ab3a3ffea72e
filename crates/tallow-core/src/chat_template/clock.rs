//! `strftime_now(format)`: the date some templates print into the system prompt (Llama 3.1's
//! "Today Date: 26 Jul 2024"). transformers calls `datetime.now().strftime(format)`, a naive local
//! time formatted by the C library; tests pin the clock to make the output reproducible.

use chrono::{Local, NaiveDateTime, TimeZone, Timelike};
use std::fmt::Write as _;

/// Where `strftime_now` gets the time from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Clock {
    /// The local wall-clock time at render time, as transformers does.
    #[default]
    Local,
    /// A fixed local time (tests, reproducible prompts).
    Fixed(NaiveDateTime),
}

impl Clock {
    fn now(self) -> NaiveDateTime {
        match self {
            Clock::Local => Local::now().naive_local(),
            Clock::Fixed(time) => time,
        }
    }

    /// `datetime.now().strftime(format)`.
    pub fn strftime_now(self, format: &str) -> String {
        strftime(self.now(), format)
    }
}

/// C `strftime` in the C locale over a naive datetime, as CPython's `datetime.strftime` does it:
/// `%f` is microseconds, `%z`/`%Z` are empty for a naive time, and a conversion the C library
/// does not know is written out as it stands.
pub fn strftime(time: NaiveDateTime, format: &str) -> String {
    let mut out = String::with_capacity(format.len() + 16);
    let mut rest = format;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let spec = conversion(rest);
        rest = &rest[spec.len()..];
        let letter = spec.chars().last().unwrap_or('%');
        match (spec.len(), letter) {
            (1, _) => out.push('%'),
            (_, '%') => out.push('%'),
            (_, 'z' | 'Z') => {}
            (2, 'f') => {
                let _ = write!(out, "{:06}", time.nanosecond() / 1000 % 1_000_000);
            }
            (2, 's') => match Local.from_local_datetime(&time).earliest() {
                Some(local) => {
                    let _ = write!(out, "{}", local.timestamp());
                }
                None => {
                    let _ = write!(out, "{}", time.and_utc().timestamp());
                }
            },
            _ => {
                // The E and O modifiers select alternative forms that the C locale lacks.
                let chrono_spec: String =
                    spec.chars().filter(|c| !matches!(c, 'E' | 'O')).collect();
                let start = out.len();
                if write!(out, "{}", time.format(&chrono_spec)).is_err() {
                    out.truncate(start);
                    out.push_str(spec);
                }
            }
        }
    }
    out.push_str(rest);
    out
}

/// The conversion at the start of `s` (which starts with `%`): `%`, an optional padding flag, an
/// optional E/O modifier and one character; just `%` at the end of the format.
fn conversion(s: &str) -> &str {
    let mut end = 1;
    let bytes = s.as_bytes();
    if matches!(bytes.get(end), Some(b'-' | b'_' | b'0')) {
        end += 1;
    }
    if matches!(bytes.get(end), Some(b'E' | b'O'))
        && bytes.get(end + 1).is_some_and(u8::is_ascii_alphabetic)
    {
        end += 1;
    }
    match s[end..].chars().next() {
        Some(c) => &s[..end + c.len_utf8()],
        None => &s[..1],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    #[test]
    fn formats_like_cpython_on_glibc() {
        let t = NaiveDate::from_ymd_opt(2024, 7, 26)
            .and_then(|d| d.and_hms_opt(9, 5, 3))
            .expect("valid date");
        // expected strings from CPython 3.11 `datetime(2024, 7, 26, 9, 5, 3).strftime(f)`
        for (f, want) in [
            ("%d %b %Y", "26 Jul 2024"),
            ("%Y-%m-%d", "2024-07-26"),
            ("%A %B %-d", "Friday July 26"),
            ("%c", "Fri Jul 26 09:05:03 2024"),
            ("%x", "07/26/24"),
            ("%X", "09:05:03"),
            ("%p %I", "AM 09"),
            ("%j %U %W %u %w", "208 29 30 5 5"),
            ("%e|%k|%l", "26| 9| 9"),
            ("%Z|%z|%%|%f", "||%|000000"),
            ("%Q", "%Q"),
            ("%G %V %g", "2024 30 24"),
            (
                "%C %y %D %F %T %R %r %h",
                "20 24 07/26/24 2024-07-26 09:05:03 09:05 09:05:03 AM Jul",
            ),
            ("%E", "%E"),
            ("%", "%"),
            ("é %Y", "é 2024"),
        ] {
            assert_eq!(strftime(t, f), want, "{f}");
        }
    }
}
