//! Where each part of a workflow came from in its file.
//!
//! Checks report problems by JSON path (`nodes[2].params.command`), whatever format the
//! workflow was written in. A front end that reads a file records, for the paths it
//! produced, the byte span and line of the text they came from; a diagnostic is then
//! placed at its path, or at the nearest enclosing path that has a place (a missing
//! param is shown at its node). The spans also say which bytes to change to rewrite one
//! value in place.

use crate::diagnostic::Diagnostic;
use std::collections::HashMap;

/// A stretch of the source text: byte offsets, and the 1-based line and column (in
/// characters) where it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub line: usize,
    pub column: usize,
}

impl Span {
    /// The span `start..end` of `text`, with its line and column worked out.
    pub fn of(text: &str, start: usize, end: usize) -> Span {
        LineIndex::new(text).span(start, end)
    }
}

/// Where each line of a text starts, to place many spans in it cheaply.
pub struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> LineIndex<'a> {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    /// The span `start..end`, with its line and column.
    pub fn span(&self, start: usize, end: usize) -> Span {
        let start = start.min(self.text.len());
        let end = end.clamp(start, self.text.len());
        let line = self.starts.partition_point(|&s| s <= start).max(1);
        let line_start = self.starts.get(line - 1).copied().unwrap_or(0);
        let column = self
            .text
            .get(line_start..start)
            .map_or(0, |s| s.chars().count())
            + 1;
        Span {
            start,
            end,
            line,
            column,
        }
    }
}

/// JSON path → the span it came from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceMap {
    spans: HashMap<String, Span>,
}

impl SourceMap {
    pub fn new() -> SourceMap {
        SourceMap::default()
    }

    pub fn insert(&mut self, path: impl Into<String>, span: Span) {
        self.spans.insert(path.into(), span);
    }

    /// The span recorded for exactly this path.
    pub fn get(&self, path: &str) -> Option<&Span> {
        self.spans.get(path)
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The span of `path`, else of the nearest enclosing path that has one.
    pub fn locate(&self, path: &str) -> Option<&Span> {
        let mut p = path;
        loop {
            if let Some(s) = self.spans.get(p) {
                return Some(s);
            }
            p = parent(p)?;
        }
    }

    /// Give each diagnostic that has no place yet the line and column of its path.
    pub fn place(&self, diags: &mut [Diagnostic]) {
        for d in diags.iter_mut().filter(|d| d.line.is_none()) {
            if let Some(s) = self.locate(&d.path) {
                d.line = Some(s.line);
                d.column = Some(s.column);
            }
        }
    }
}

/// `nodes[0].params` for `nodes[0].params.command`, `nodes[0]` for `nodes[0].id`,
/// `nodes` for `nodes[0]`; None at the top.
fn parent(path: &str) -> Option<&str> {
    if let Some(head) = path.strip_suffix(']') {
        // `x["a.b"]` or `x[3]`: the bracket that opens the last segment.
        let open = if head.ends_with('"') {
            head.get(..head.len() - 1)?.rfind("[\"")?
        } else {
            head.rfind('[')?
        };
        return (open > 0).then(|| &path[..open]);
    }
    path.rfind(['.', '[']).map(|i| &path[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_falls_back_to_what_encloses_it() {
        let text = "one\ntwo\n  three\n";
        let mut m = SourceMap::new();
        m.insert("nodes[0]", Span::of(text, 4, 7));
        m.insert("nodes[0].params.command", Span::of(text, 10, 15));
        assert_eq!(m.locate("nodes[0].params.command").unwrap().line, 3);
        assert_eq!(m.locate("nodes[0].params.command").unwrap().column, 3);
        assert_eq!(m.locate("nodes[0].params.stdin").unwrap().line, 2);
        assert_eq!(m.locate("nodes[0][\"a.b\"]").unwrap().line, 2);
        assert_eq!(m.locate("nodes[0].batch.items[2]").unwrap().line, 2);
        assert!(m.locate("nodes[1].id").is_none());
        assert!(m.locate("root").is_none());
    }

    #[test]
    fn diagnostics_get_a_line() {
        let text = "a\nb\n";
        let mut m = SourceMap::new();
        m.insert("edges[0]", Span::of(text, 2, 3));
        let mut ds = vec![
            Diagnostic::error("edges[0].to", "x"),
            Diagnostic::error("nodes", "y"),
        ];
        m.place(&mut ds);
        assert_eq!((ds[0].line, ds[0].column), (Some(2), Some(1)));
        assert_eq!(ds[1].line, None);
    }
}
