//! Diagnostics: one problem in a workflow, located by a JSON path (and, when the file's
//! front end knows it, a line and column: see [`crate::source_map`]).
//!
//! Every check (parsing, schema, semantics, templates) reports through this one type so
//! that `pflow validate`, `pflow build` and the repair loop print and serialize problems
//! the same way, and so the LLM sees exactly what a person sees.

use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// JSON path into the workflow, e.g. `nodes[2].params.command`; `root` for the document.
    pub path: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The line (1-based) in the workflow file, when it is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    #[serde(skip)]
    pub severity: Severity,
    /// A warning that `--strict` makes an error (a value pasted into shell text as code).
    #[serde(skip)]
    pub strict_error: bool,
}

impl Diagnostic {
    pub fn error(path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            path: path.into(),
            message: message.into(),
            hint: None,
            line: None,
            column: None,
            severity: Severity::Error,
            strict_error: false,
        }
    }

    pub fn warning(path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(path, message)
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_hint_opt(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    /// Placed at a line and column of the workflow file.
    pub fn at(mut self, line: usize, column: usize) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    /// `12:` or `12:3:` for messages that name a place in the file; empty when unknown.
    pub fn place(&self) -> String {
        match (self.line, self.column) {
            (Some(l), Some(c)) => format!("{l}:{c}:"),
            (Some(l), None) => format!("{l}:"),
            _ => String::new(),
        }
    }

    /// Mark a warning as one `--strict` turns into an error.
    pub fn strict_error(mut self) -> Self {
        self.strict_error = true;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// Names longer than this (in characters) get no edit-distance comparison: the cost grows
/// with the product of the lengths, and a typo suggestion for such names helps no one.
pub const MAX_SUGGEST_CHARS: usize = 64;

/// The closest candidate to `word`, if it is close enough to be a plausible typo.
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut unlimited = u64::MAX;
    did_you_mean_within(word, candidates, &mut unlimited)
}

/// [`did_you_mean`] that spends at most `budget` units of work (one unit per cell of an
/// edit-distance table) and stops comparing when it runs out, so that suggestions over
/// very many or very long names stay cheap.
pub fn did_you_mean_within<'a, I>(word: &str, candidates: I, budget: &mut u64) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    let lower = word.to_lowercase();
    let lower_len = lower.chars().count();
    let word_len = word.chars().count();
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        // One name inside the other ('path' in 'file_path') is a likely typo, but not
        // when the shorter one is a letter or two ('a' is inside 'summary').
        let c_len = c.chars().count();
        let shorter = word_len.min(c_len);
        let contains = shorter >= 3 && (c.contains(word) || word.contains(c));
        // The score is 1 - distance / longer length, and the distance is at least the
        // difference in length: skip the edit distance when it cannot reach 0.6.
        let reachable = 5 * lower_len.abs_diff(c_len) <= 2 * lower_len.max(c_len);
        let score = if !reachable || lower_len.max(c_len) > MAX_SUGGEST_CHARS || *budget == 0 {
            if contains {
                0.7
            } else {
                continue;
            }
        } else {
            let cost = (lower_len as u64 + 1) * (c_len as u64 + 1);
            *budget = budget.saturating_sub(cost);
            let score = strsim::normalized_damerau_levenshtein(&lower, &c.to_lowercase());
            if contains {
                score.max(0.7)
            } else {
                score
            }
        };
        // Ties go to the later candidate, as `max_by` does.
        if score >= 0.6 && best.is_none_or(|(b, _)| score >= b) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c.to_string())
}

/// `did you mean 'x'?` as a hint string, when there is a close candidate.
pub fn suggestion<'a, I>(word: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    did_you_mean(word, candidates).map(|c| format!("did you mean '{c}'?"))
}

/// Quote and join names for messages: `'a', 'b', 'c'`.
pub fn quoted_list<'a, I: IntoIterator<Item = &'a str>>(names: I) -> String {
    names
        .into_iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names() {
        assert_eq!(
            did_you_mean("stdot", ["stdout", "stderr"]).as_deref(),
            Some("stdout")
        );
        assert_eq!(
            did_you_mean("path", ["file_path", "encoding"]).as_deref(),
            Some("file_path")
        );
    }

    #[test]
    fn long_names_are_not_compared_by_edit_distance() {
        let long = "a".repeat(5000);
        let other = format!("{long}b");
        let start = std::time::Instant::now();
        let candidates: Vec<&str> = std::iter::repeat_n(other.as_str(), 200).collect();
        assert_eq!(
            did_you_mean(&long, candidates.iter().copied()),
            Some(other.clone())
        );
        assert_eq!(did_you_mean(&format!("{long}x"), [other.as_str()]), None);
        assert!(start.elapsed().as_secs() < 5, "{:?}", start.elapsed());
    }

    #[test]
    fn the_budget_stops_comparisons() {
        let mut budget = 10;
        assert_eq!(
            did_you_mean_within("stdot", ["stdout", "stderr"], &mut budget).as_deref(),
            Some("stdout")
        );
        assert_eq!(budget, 0);
        assert_eq!(did_you_mean_within("stdot", ["stdout"], &mut budget), None);
    }

    #[test]
    fn a_short_name_inside_a_long_one_is_no_suggestion() {
        assert_eq!(did_you_mean("summary", ["a"]), None);
        assert_eq!(did_you_mean("x", ["index"]), None);
    }
}
