//! The block structure of a `.pflow.md` body, as line ranges.
//!
//! pulldown-cmark finds the blocks (ATX headings, `-` lists and their items, fenced code,
//! everything else); the front end then reads the lines of each block as the original
//! pflow does, so values keep the exact text the author wrote.

use crate::source_map::{LineIndex, Span};
use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};

/// Lines `first..=last` (0-based, of the whole file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lines {
    pub first: usize,
    pub last: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// `#`, `##`, `###` ... at the start of a line.
    Heading { level: usize, line: usize },
    /// A `-` list: each item, with the fenced code blocks nested in it.
    Items(Vec<(Lines, Vec<Lines>)>),
    /// A fenced code block (its fences included; it may be unclosed).
    Fenced(Lines),
    /// Anything else: paragraphs, `*` lists, quotes, rules, indented code, HTML.
    Other(Lines),
}

/// The file's lines: where each starts, in bytes.
pub struct Text<'a> {
    pub text: &'a str,
    starts: Vec<usize>,
    index: LineIndex<'a>,
}

impl<'a> Text<'a> {
    pub fn new(text: &'a str) -> Text<'a> {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        if starts.last() == Some(&text.len()) && !text.is_empty() {
            starts.pop();
        }
        Text {
            text,
            starts,
            index: LineIndex::new(text),
        }
    }

    /// The span of bytes `start..end`, placed.
    pub fn span(&self, start: usize, end: usize) -> Span {
        self.index.span(start, end)
    }

    pub fn count(&self) -> usize {
        self.starts.len()
    }

    /// Line `i` without its line ending.
    pub fn line(&self, i: usize) -> &'a str {
        let (start, end) = self.bounds(i);
        self.text.get(start..end).unwrap_or("")
    }

    /// Byte range of line `i`, without its line ending.
    pub fn bounds(&self, i: usize) -> (usize, usize) {
        let Some(&start) = self.starts.get(i) else {
            return (self.text.len(), self.text.len());
        };
        let mut end = self.starts.get(i + 1).map_or(self.text.len(), |n| n - 1);
        if self.text.as_bytes().get(end.wrapping_sub(1)) == Some(&b'\r') && end > start {
            end -= 1;
        }
        (start, end)
    }

    /// The line holding byte `offset`.
    pub fn line_of(&self, offset: usize) -> usize {
        self.starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1)
    }

    /// Lines holding bytes `start..end` (an empty range is its start's line).
    fn lines(&self, start: usize, end: usize) -> Lines {
        let first = self.line_of(start);
        let last = self.line_of(end.saturating_sub(1).max(start));
        Lines { first, last }
    }
}

/// The top-level blocks of `text[from..]`, in order.
pub fn blocks(text: &Text, from: usize) -> Vec<Block> {
    let body = text.text.get(from..).unwrap_or("");
    let mut out = Vec::new();
    let mut depth = 0usize;
    // Inside a top-level `-` list: its items; the item being read and its fences.
    let mut list: Option<Vec<(Lines, Vec<Lines>)>> = None;
    let mut item: Option<(Lines, Vec<Lines>)> = None;
    for (event, range) in Parser::new_ext(body, Options::empty()).into_offset_iter() {
        let (start, end) = (range.start + from, range.end + from);
        match event {
            Event::Start(tag) => {
                if depth == 0 {
                    let lines = text.lines(start, end);
                    match &tag {
                        Tag::Heading { level, .. }
                            if text.line(lines.first).trim_start().starts_with('#') =>
                        {
                            out.push(Block::Heading {
                                level: *level as usize,
                                line: lines.first,
                            })
                        }
                        Tag::List(None) if text.line(lines.first).trim_start().starts_with('-') => {
                            list = Some(Vec::new())
                        }
                        Tag::CodeBlock(CodeBlockKind::Fenced(_)) => out.push(Block::Fenced(lines)),
                        _ => out.push(Block::Other(lines)),
                    }
                } else if depth == 1 && list.is_some() && matches!(tag, Tag::Item) {
                    item = Some((text.lines(start, end), Vec::new()));
                } else if let (Some((_, fences)), Tag::CodeBlock(CodeBlockKind::Fenced(_))) =
                    (item.as_mut(), &tag)
                {
                    fences.push(text.lines(start, end));
                }
                depth += 1;
            }
            Event::End(tag) => {
                depth = depth.saturating_sub(1);
                if depth == 1 && tag == TagEnd::Item {
                    if let (Some(items), Some(done)) = (list.as_mut(), item.take()) {
                        items.push(done);
                    }
                }
                if depth == 0 {
                    if let Some(items) = list.take() {
                        out.push(Block::Items(items));
                    }
                }
            }
            // A thematic break (`---`) or other leaf at the top.
            _ if depth == 0 => out.push(Block::Other(text.lines(start, end))),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_headings_items_and_fences() {
        let src = "# T\n\nprose\n\n## Steps\n\n### a\n\nDoes a.\n\n- type: shell\n- x: |\n    one\n\n    two\n\n```shell command\necho\n```\n\n* note\n";
        let t = Text::new(src);
        let b = blocks(&t, 0);
        assert_eq!(b[0], Block::Heading { level: 1, line: 0 });
        assert_eq!(b[1], Block::Other(Lines { first: 2, last: 2 }));
        assert_eq!(b[2], Block::Heading { level: 2, line: 4 });
        assert_eq!(b[3], Block::Heading { level: 3, line: 6 });
        let Block::Items(items) = &b[5] else {
            panic!("{b:?}")
        };
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[0].0,
            Lines {
                first: 10,
                last: 10
            }
        );
        assert_eq!(items[1].0.first, 11);
        assert!(items[1].0.last >= 14);
        assert_eq!(
            b[6],
            Block::Fenced(Lines {
                first: 16,
                last: 18
            })
        );
        assert_eq!(
            b[7],
            Block::Other(Lines {
                first: 20,
                last: 20
            })
        );
    }

    #[test]
    fn an_unclosed_fence_runs_to_the_end() {
        let src = "### a\n\n```shell command\necho\n";
        let t = Text::new(src);
        assert_eq!(blocks(&t, 0)[1], Block::Fenced(Lines { first: 2, last: 3 }));
    }
}
