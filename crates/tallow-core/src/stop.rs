//! Stop strings: ends generation when the text contains one, across chunk boundaries, without
//! ever emitting part of a stop string. Text that could still become a stop string is held back
//! until it either completes one or cannot.

/// What a chunk of text produced.
#[derive(Debug, PartialEq, Eq)]
pub enum StopOutcome {
    /// Text safe to emit now (possibly empty).
    Continue(String),
    /// A stop string matched; the text before it not yet emitted (and the stop string itself
    /// when the matcher includes stops).
    Stopped(String),
}

pub struct StopMatcher {
    stops: Vec<String>,
    /// Whether the matched stop string is part of the output.
    include: bool,
    pending: String,
    /// The stop string that matched, once one has.
    matched: Option<String>,
}

impl StopMatcher {
    pub fn new(stops: Vec<String>, include: bool) -> Self {
        StopMatcher {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            include,
            pending: String::new(),
            matched: None,
        }
    }

    pub fn push(&mut self, text: &str) -> StopOutcome {
        self.pending.push_str(text);
        // The earliest match; at one position the longest stop string.
        let earliest = self
            .stops
            .iter()
            .filter_map(|stop| self.pending.find(stop.as_str()).map(|at| (at, stop)))
            .min_by(|(a, x), (b, y)| a.cmp(b).then(y.len().cmp(&x.len())));
        if let Some((at, stop)) = earliest {
            let end = if self.include { at + stop.len() } else { at };
            let before = self.pending[..end].to_string();
            self.matched = Some(stop.clone());
            self.pending.clear();
            return StopOutcome::Stopped(before);
        }
        let hold = self.held_suffix_len();
        let emit_to = self.pending.len() - hold;
        let emitted = self.pending[..emit_to].to_string();
        self.pending.drain(..emit_to);
        StopOutcome::Continue(emitted)
    }

    /// The stop string that ended the text, once one has.
    pub fn matched(&self) -> Option<&str> {
        self.matched.as_deref()
    }

    /// Whatever is still held back, at the end of generation.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }

    /// Length of the longest suffix of `pending` that is a proper prefix of some stop string.
    fn held_suffix_len(&self) -> usize {
        self.pending
            .char_indices()
            .map(|(i, _)| &self.pending[i..])
            .find(|suffix| self.stops.iter().any(|s| s.starts_with(suffix)))
            .map_or(0, str::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], chunks: &[&str]) -> (String, bool) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect(), false);
        let mut out = String::new();
        for c in chunks {
            match m.push(c) {
                StopOutcome::Continue(t) => out.push_str(&t),
                StopOutcome::Stopped(t) => return (out + &t, true),
            }
        }
        (out + &m.flush(), false)
    }

    #[test]
    fn matches_across_chunks_and_excludes_the_stop() {
        assert_eq!(
            run(&["END"], &["hello E", "N", "D more"]),
            ("hello ".into(), true)
        );
    }

    #[test]
    fn never_emits_a_partial_stop() {
        let mut m = StopMatcher::new(vec!["\n\n".into()], false);
        assert_eq!(m.push("a\n"), StopOutcome::Continue("a".into()));
        assert_eq!(m.push("b"), StopOutcome::Continue("\nb".into()));
    }

    #[test]
    fn an_included_stop_ends_the_output() {
        let mut m = StopMatcher::new(vec!["END".into(), "ENDING".into()], true);
        assert_eq!(m.push("a EN"), StopOutcome::Continue("a ".into()));
        assert_eq!(m.matched(), None);
        assert_eq!(m.push("Dx"), StopOutcome::Stopped("END".into()));
        assert_eq!(m.matched(), Some("END"));
    }

    #[test]
    fn the_earliest_stop_wins_and_multibyte_text_is_safe() {
        assert_eq!(run(&["é!", "b"], &["aé", "!b"]), ("a".into(), true));
        assert_eq!(run(&["zz"], &["日本", "語"]), ("日本語".into(), false));
    }
}
