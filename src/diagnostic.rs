//! Diagnostics: one problem in a workflow, located by a JSON path.
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
    #[serde(skip)]
    pub severity: Severity,
}

impl Diagnostic {
    pub fn error(path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            path: path.into(),
            message: message.into(),
            hint: None,
            severity: Severity::Error,
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

/// The closest candidate to `word`, if it is close enough to be a plausible typo.
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    let lower = word.to_lowercase();
    let lower_len = lower.chars().count();
    let word_len = word.chars().count();
    candidates
        .into_iter()
        .filter_map(|c| {
            // One name inside the other ('path' in 'file_path') is a likely typo, but not
            // when the shorter one is a letter or two ('a' is inside 'summary').
            let shorter = word_len.min(c.chars().count());
            let contains = shorter >= 3 && (c.contains(word) || word.contains(c));
            let c_lower = c.to_lowercase();
            let c_len = c_lower.chars().count();
            // The score is 1 - distance / longer length, and the distance is at least the
            // difference in length: skip the edit distance when it cannot reach 0.6.
            if !contains && 5 * lower_len.abs_diff(c_len) > 2 * lower_len.max(c_len) {
                return None;
            }
            let score = strsim::normalized_damerau_levenshtein(&lower, &c_lower);
            Some((if contains { score.max(0.7) } else { score }, c))
        })
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_string())
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
    fn a_short_name_inside_a_long_one_is_no_suggestion() {
        assert_eq!(did_you_mean("summary", ["a"]), None);
        assert_eq!(did_you_mean("x", ["index"]), None);
    }
}
