//! `.pflow.md` workflows: the Markdown format of the original pflow, read into the same
//! IR a JSON workflow is, and written back from it.
//!
//! ````text
//! ---                          optional YAML front matter (IR fields such as strict_env)
//! # Title
//! What the workflow does.      the description
//! ## Inputs / ## Steps / ## Outputs
//! ### id                       an input, a node or an output
//! What it is or does.          required prose: description / purpose
//! - key: value                 params (one-line values; indented lines make YAML)
//! ```shell command             a fenced block: the last word of its tag names the param;
//! ...                          `yaml NAME` blocks are parsed as YAML
//! ```
//! ````
//!
//! Nodes are joined by edges in document order; `- next: id | [ids] | end` replaces a
//! node's edge to the one below it, `- on-error: id` adds an error edge. Every value's
//! JSON path is kept with the span of text it came from (a [`SourceMap`]), so problems
//! found in the IR point at the Markdown line, and a value can be rewritten in place.

mod blocks;
pub mod edit;
mod scalar;
mod write;

pub use write::{to_markdown, NO_DESCRIPTION};

use crate::diagnostic::Diagnostic;
use crate::source_map::{SourceMap, Span};
use crate::workflow::field_path;
use blocks::{Block, Lines, Text};
use serde_json::{Map, Value};

/// A `.pflow.md` file read into the IR.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The workflow IR, as a JSON workflow file would hold it.
    pub ir: Value,
    /// Where each part of the IR came from.
    pub map: SourceMap,
    /// The `# Title`.
    pub title: Option<String>,
    /// The prose between the title and the first `##` section.
    pub description: Option<String>,
    /// The front matter, when there is one.
    pub metadata: Option<Value>,
    pub warnings: Vec<Diagnostic>,
}

/// Does this path name a Markdown workflow?
pub fn is_markdown_path(path: &std::path::Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("md"))
}

/// Front-matter keys that are fields of the IR rather than metadata.
pub const TOP_FIELDS: &[&str] = &[
    "ir_version",
    "start_node",
    "template_resolution_mode",
    "strict_env",
    "mappings",
    "enable_namespacing",
];

/// Item keys of a node that are node fields, not params.
const NODE_FIELDS: &[&str] = &["type", "batch", "cache", "reads_env", "reads", "writes"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    None,
    Inputs,
    Steps,
    Outputs,
    Other,
}

impl Section {
    fn name(self) -> &'static str {
        match self {
            Section::Inputs => "Inputs",
            Section::Steps => "Steps",
            Section::Outputs => "Outputs",
            _ => "",
        }
    }
}

/// A `### id` and what follows it.
struct Entity {
    id: String,
    section: Section,
    /// Line of the heading, and the span of the id in it.
    line: usize,
    id_span: Span,
    /// Prose lines, trimmed.
    prose: Vec<(String, usize)>,
    /// `- key: value` items: their lines.
    items: Vec<Vec<usize>>,
    blocks: Vec<Lines>,
}

/// A value read from an entity, with where it came from.
struct Field {
    value: Value,
    span: Span,
    /// The line of its item or fence, for messages.
    line: usize,
}

struct Reader<'a> {
    text: Text<'a>,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    map: SourceMap,
}

/// Read a `.pflow.md` file's text. Every problem found is returned, each with its line.
pub fn parse(source: &str) -> Result<Parsed, Vec<Diagnostic>> {
    let text = source.strip_prefix('\u{feff}').unwrap_or(source);
    let bom = source.len() - text.len();
    let mut r = Reader {
        text: Text::new(source),
        errors: Vec::new(),
        warnings: Vec::new(),
        map: SourceMap::new(),
    };
    let (metadata, body_line) = r.front_matter();
    let from = if body_line < r.text.count() {
        r.text.bounds(body_line).0
    } else {
        source.len()
    };
    let from = from.max(bom);

    let mut title = None;
    let mut description: Vec<String> = Vec::new();
    let mut section = Section::None;
    let mut seen: Vec<(Section, usize)> = Vec::new();
    let mut entities: Vec<Entity> = Vec::new();
    let mut current: Option<Entity> = None;
    let mut orphans: Vec<(Section, usize)> = Vec::new();

    for block in blocks::blocks(&r.text, from) {
        match block {
            Block::Heading { level, line } if level <= 3 => {
                entities.extend(current.take());
                let raw = r.text.line(line).trim();
                let name = raw.get(level + 1..).unwrap_or("").trim();
                match level {
                    1 => {
                        title.get_or_insert_with(|| name.to_string());
                    }
                    2 => {
                        section = r.section(name, line, &mut seen);
                    }
                    _ => {
                        let (ls, _) = r.text.bounds(line);
                        let full = r.text.line(line);
                        let at = full.len() - full.trim_start().len() + raw.find(name).unwrap_or(0);
                        current = Some(Entity {
                            id: name.to_string(),
                            section,
                            line,
                            id_span: r.text.span(ls + at, ls + at + name.len()),
                            prose: Vec::new(),
                            items: Vec::new(),
                            blocks: Vec::new(),
                        });
                    }
                }
            }
            other => {
                let lines = match &other {
                    Block::Heading { line, .. } => Lines {
                        first: *line,
                        last: *line,
                    },
                    Block::Items(items) => Lines {
                        first: items.first().map_or(0, |i| i.0.first),
                        last: items.last().map_or(0, |i| i.0.last),
                    },
                    Block::Fenced(l) | Block::Other(l) => *l,
                };
                if let Some(e) = current.as_mut() {
                    r.add_to(e, other);
                } else if section == Section::None && title.is_some() {
                    r.check_fence(&other);
                    // Code in the description is an example, not part of it.
                    if !matches!(other, Block::Fenced(_)) {
                        description.extend(r.prose_lines(lines).into_iter().map(|(t, _)| t));
                    }
                } else {
                    r.check_fence(&other);
                    if matches!(section, Section::Inputs | Section::Steps | Section::Outputs)
                        && !r.prose_lines(lines).is_empty()
                    {
                        orphans.push((section, lines.first));
                    }
                }
            }
        }
    }
    entities.extend(current.take());
    r.orphans(&orphans, &entities);

    let steps_line = seen
        .iter()
        .find(|(s, _)| *s == Section::Steps)
        .map(|(_, l)| *l);
    let mut ir = Map::new();
    if let Some(Value::Object(m)) = &metadata {
        for (k, v) in m {
            if TOP_FIELDS.contains(&k.as_str()) {
                ir.insert(k.clone(), v.clone());
                // The key's line in the front matter (the first line if it is not found
                // as written, e.g. quoted).
                let line = (1..body_line)
                    .find(|&i| {
                        r.text
                            .line(i)
                            .strip_prefix(k.as_str())
                            .is_some_and(|rest| rest.trim_start().starts_with(':'))
                    })
                    .unwrap_or(0);
                r.map.insert(k.clone(), r.line_span(line));
            }
        }
    }
    let inputs = r.named(&entities, Section::Inputs, "inputs");
    if !inputs.is_empty() {
        ir.insert("inputs".into(), Value::Object(inputs));
    }
    let steps: Vec<&Entity> = entities
        .iter()
        .filter(|e| e.section == Section::Steps)
        .collect();
    match steps_line {
        None => r.errors.push(
            Diagnostic::error("nodes", "the workflow has no '## Steps' section")
                .with_hint("add '## Steps' with a '### step-id' heading, a sentence saying what the step does, and '- type: shell'")
                .at(1, 1),
        ),
        Some(line) if steps.is_empty() => r.errors.push(
            Diagnostic::error("nodes", "the '## Steps' section has no steps")
                .with_hint("each step is a '### step-id' heading, a sentence saying what it does, and items such as '- type: shell'")
                .at(line + 1, 1),
        ),
        _ => {}
    }
    let (nodes, edges) = r.nodes(&steps);
    ir.insert("nodes".into(), Value::Array(nodes));
    ir.insert("edges".into(), Value::Array(edges));
    let outputs = r.named(&entities, Section::Outputs, "outputs");
    if !outputs.is_empty() {
        ir.insert("outputs".into(), Value::Object(outputs));
    }

    if !r.errors.is_empty() {
        r.errors.sort_by_key(|d| d.line.unwrap_or(0));
        return Err(r.errors);
    }
    let description = (!description.is_empty()).then(|| description.join("\n"));
    Ok(Parsed {
        ir: Value::Object(ir),
        map: r.map,
        title,
        description,
        metadata,
        warnings: r.warnings,
    })
}

impl<'a> Reader<'a> {
    fn error(&mut self, line: usize, path: &str, message: String, hint: Option<String>) {
        self.errors.push(
            Diagnostic::error(path, message)
                .with_hint_opt(hint)
                .at(line + 1, 1),
        );
    }

    /// The span of line `i` (0-based).
    fn line_span(&self, i: usize) -> Span {
        let (s, e) = self.text.bounds(i);
        self.text.span(s, e)
    }

    /// Front matter between a first line `---` and the next `---`: its value, and the
    /// first line of the body.
    fn front_matter(&mut self) -> (Option<Value>, usize) {
        let first = self.text.line(0).trim_start_matches('\u{feff}');
        if first.trim_end() != "---" {
            return (None, 0);
        }
        let Some(close) = (1..self.text.count()).find(|&i| self.text.line(i).trim_end() == "---")
        else {
            return (None, 0);
        };
        let yaml: Vec<&str> = (1..close).map(|i| self.text.line(i)).collect();
        match serde_yaml_ng::from_str::<Value>(&yaml.join("\n")) {
            Ok(v @ Value::Object(_)) => (Some(v), close + 1),
            Ok(Value::Null) => (None, close + 1),
            Ok(_) => {
                self.error(
                    0,
                    "root",
                    "the front matter is not a YAML mapping".into(),
                    None,
                );
                (None, close + 1)
            }
            Err(e) => {
                let line = e.location().map_or(0, |l| l.line());
                self.error(
                    line,
                    "root",
                    format!("invalid YAML in the front matter: {}", yaml_message(&e)),
                    None,
                );
                (None, close + 1)
            }
        }
    }

    fn section(&mut self, name: &str, line: usize, seen: &mut Vec<(Section, usize)>) -> Section {
        let s = match name.to_lowercase().as_str() {
            "inputs" => Section::Inputs,
            "steps" => Section::Steps,
            "outputs" => Section::Outputs,
            lower => {
                let meant = match lower {
                    "input" => Some("Inputs"),
                    "step" => Some("Steps"),
                    "output" => Some("Outputs"),
                    _ => None,
                };
                if let Some(meant) = meant {
                    self.warnings.push(
                        Diagnostic::warning("root", format!("'## {name}' looks like a typo for '## {meant}'; the section is ignored"))
                            .with_hint(format!("rename it '## {meant}'"))
                            .at(line + 1, 1),
                    );
                }
                return Section::Other;
            }
        };
        if let Some((_, first)) = seen.iter().find(|(x, _)| *x == s) {
            let first = *first;
            self.error(
                line,
                "root",
                format!("a second '## {}' section", s.name()),
                Some(format!("merge it into the one at line {}", first + 1)),
            );
        } else {
            seen.push((s, line));
        }
        s
    }

    /// A fenced block that never closes is an error wherever it is.
    fn check_fence(&mut self, block: &Block) {
        if let Block::Fenced(lines) = block {
            self.fence(*lines);
        }
    }

    /// A fenced block: its tag, the line range of its content, and whether it closes.
    fn fence(&mut self, lines: Lines) -> Option<(String, Lines)> {
        let open = self.text.line(lines.first).trim();
        let ch = open.chars().next()?;
        let n = open.chars().take_while(|c| *c == ch).count();
        let tag = open[n * ch.len_utf8()..].trim().to_string();
        let close = self.text.line(lines.last).trim();
        let closed = lines.last > lines.first && close.len() >= n && close.chars().all(|c| c == ch);
        if !closed {
            let fence: String = std::iter::repeat_n(ch, n).collect();
            self.error(
                lines.first,
                "root",
                "this code block is never closed".into(),
                Some(format!("end it with a line '{fence}'")),
            );
            return None;
        }
        Some((
            tag,
            Lines {
                first: lines.first + 1,
                last: lines.last,
            },
        ))
    }

    /// Non-blank lines, trimmed, with their line numbers.
    fn prose_lines(&self, lines: Lines) -> Vec<(String, usize)> {
        (lines.first..=lines.last)
            .map(|i| (self.text.line(i).trim().to_string(), i))
            .filter(|(t, _)| !t.is_empty())
            .collect()
    }

    fn add_to(&mut self, e: &mut Entity, block: Block) {
        match block {
            Block::Heading { line, .. } => e.prose.extend(self.prose_lines(Lines {
                first: line,
                last: line,
            })),
            Block::Other(lines) => e.prose.extend(self.prose_lines(lines)),
            Block::Fenced(lines) => e.blocks.push(lines),
            Block::Items(items) => {
                for (lines, fences) in items {
                    let in_fence = |i: usize| fences.iter().any(|f| f.first <= i && i <= f.last);
                    let first = self.text.line(lines.first);
                    let column = first.len() - first.trim_start().len() + 2;
                    let mut own = vec![lines.first];
                    let mut lazy = false;
                    for i in lines.first + 1..=lines.last {
                        if in_fence(i) {
                            continue;
                        }
                        let l = self.text.line(i);
                        let indent = l.len() - l.trim_start().len();
                        if lazy || !(l.trim().is_empty() || indent >= column) {
                            // Not indented under the item: prose that CommonMark let
                            // run on (the original reads it as prose too).
                            lazy = true;
                            e.prose
                                .extend(self.prose_lines(Lines { first: i, last: i }));
                        } else {
                            own.push(i);
                        }
                    }
                    while own.len() > 1
                        && own
                            .last()
                            .is_some_and(|&i| self.text.line(i).trim().is_empty())
                    {
                        own.pop();
                    }
                    e.items.push(own);
                    e.blocks.extend(fences);
                }
            }
        }
    }

    fn orphans(&mut self, orphans: &[(Section, usize)], entities: &[Entity]) {
        for s in [Section::Inputs, Section::Steps, Section::Outputs] {
            let Some(&(_, line)) = orphans.iter().find(|(x, _)| *x == s) else {
                continue;
            };
            let name = s.name();
            if entities.iter().any(|e| e.section == s) {
                self.warnings.push(
                    Diagnostic::warning(
                        "root",
                        format!("text in '## {name}' outside any '### id' entry is ignored"),
                    )
                    .with_hint("move it under a '### id' heading, or remove it")
                    .at(line + 1, 1),
                );
            } else {
                self.error(
                    line,
                    "root",
                    format!("'## {name}' has content but no '### id' entries"),
                    Some(format!("each entry of '## {name}' starts with a '### name' heading, then a sentence, then '- key: value' items")),
                );
            }
        }
    }

    /// The entity's `- key: value` items and fenced blocks, by key, in order.
    fn fields(&mut self, e: &Entity, path: &str) -> Vec<(String, Field)> {
        let mut out: Vec<(String, Field)> = Vec::new();
        for lines in &e.items {
            let first = lines[0];
            if lines.len() == 1 {
                let line = self.text.line(first);
                let (ls, _) = self.text.bounds(first);
                let body = line.trim_start().strip_prefix('-').unwrap_or("");
                let Some((key, value)) = body
                    .trim_start()
                    .split_once(':')
                    .filter(|(k, _)| !k.is_empty() && !k.contains(char::is_whitespace))
                else {
                    self.error(
                        first,
                        path,
                        format!("'{}' is not a 'key: value' item", line.trim()),
                        Some("items under a '### id' heading are '- key: value'; write notes as '* ' bullets".into()),
                    );
                    continue;
                };
                let value_text = value.trim();
                let start =
                    ls + line.len() - value.len() + (value.len() - value.trim_start().len());
                let span = self.text.span(start, start + value_text.len());
                match scalar::coerce(value_text) {
                    Ok(v) => self.push_field(
                        &mut out,
                        path,
                        key,
                        Field {
                            value: v,
                            span,
                            line: first,
                        },
                    ),
                    Err(m) => self.error(
                        first,
                        path,
                        format!("'{key}': {m}"),
                        Some("quote the whole value: - key: \"...\"".into()),
                    ),
                }
            } else {
                let last = *lines.last().unwrap_or(&first);
                let indent = {
                    let l = self.text.line(first);
                    l.len() - l.trim_start().len()
                };
                let yaml: Vec<&str> = lines
                    .iter()
                    .map(|&i| {
                        let l = self.text.line(i);
                        l.get(indent.min(l.len() - l.trim_start().len())..)
                            .unwrap_or("")
                    })
                    .collect();
                let span = self
                    .text
                    .span(self.text.bounds(first).0, self.text.bounds(last).1);
                match serde_yaml_ng::from_str::<Value>(&yaml.join("\n")) {
                    Ok(Value::Array(entries)) => {
                        for entry in entries {
                            match entry {
                                Value::Object(m) => {
                                    for (k, v) in m {
                                        self.push_field(
                                            &mut out,
                                            path,
                                            &k,
                                            Field {
                                                value: v,
                                                span,
                                                line: first,
                                            },
                                        );
                                    }
                                }
                                other => self.error(
                                    first,
                                    path,
                                    format!("{other} is not a 'key: value' item"),
                                    None,
                                ),
                            }
                        }
                    }
                    Ok(other) => self.error(
                        first,
                        path,
                        format!("{other} is not a 'key: value' item"),
                        None,
                    ),
                    Err(err) => {
                        let at = err.location().map_or(0, |l| l.line().saturating_sub(1));
                        self.error(first + at, path, format!("invalid YAML in this item: {}", yaml_message(&err)), Some("a value holding ': ' or starting with a quote or bracket needs quotes".into()));
                    }
                }
            }
        }
        for lines in e.blocks.clone() {
            let Some((tag, content)) = self.fence(lines) else {
                continue;
            };
            let words: Vec<&str> = tag.split_whitespace().collect();
            let Some(&name) = words.last() else {
                self.error(
                    lines.first,
                    path,
                    "this code block has no tag naming its param".into(),
                    Some("write the param's name after the fence, e.g. '```shell command', '```prompt' or '```yaml batch'".into()),
                );
                continue;
            };
            let text: Vec<&str> = (content.first..content.last)
                .map(|i| self.text.line(i))
                .collect();
            let text = text.join("\n");
            let start = self.text.bounds(content.first).0;
            let end = if content.last > content.first {
                self.text.bounds(content.last - 1).1
            } else {
                start
            };
            let span = self.text.span(start, end);
            let value = if words.len() > 1 && words[0].eq_ignore_ascii_case("yaml") {
                match serde_yaml_ng::from_str::<Value>(&text) {
                    Ok(v) => v,
                    Err(err) => {
                        let at = err.location().map_or(0, |l| l.line());
                        self.error(
                            lines.first + at,
                            path,
                            format!("invalid YAML in the '{tag}' block: {}", yaml_message(&err)),
                            None,
                        );
                        continue;
                    }
                }
            } else {
                Value::String(text)
            };
            if let Some((_, f)) = out.iter().find(|(k, _)| k == name) {
                let (kind, first) = (
                    if self.text.line(f.line).trim_start().starts_with('-') {
                        "an item"
                    } else {
                        "a code block"
                    },
                    f.line,
                );
                self.error(
                    lines.first,
                    path,
                    format!(
                        "'{name}' is set twice: here and by {kind} at line {}",
                        first + 1
                    ),
                    Some("give each param one value".into()),
                );
                continue;
            }
            out.push((
                name.to_string(),
                Field {
                    value,
                    span,
                    line: lines.first,
                },
            ));
        }
        out
    }

    fn push_field(&mut self, out: &mut Vec<(String, Field)>, path: &str, key: &str, f: Field) {
        if let Some((_, first)) = out.iter().find(|(k, _)| k == key) {
            let first = first.line;
            self.error(
                f.line,
                path,
                format!("'{key}' is set twice (first at line {})", first + 1),
                Some("give each param one value".into()),
            );
            return;
        }
        out.push((key.to_string(), f));
    }

    /// An entity needs a sentence saying what it is.
    fn described(&mut self, e: &Entity, path: &str, what: &str) -> Option<String> {
        if e.prose.is_empty() {
            self.error(
                e.line,
                path,
                format!("{what} '{}' has no description", e.id),
                Some(format!(
                    "write a sentence under '### {}' saying what it {}",
                    e.id,
                    if what == "step" { "does" } else { "is" }
                )),
            );
            return None;
        }
        let text: Vec<&str> = e.prose.iter().map(|(t, _)| t.as_str()).collect();
        Some(text.join("\n"))
    }

    /// `## Inputs` or `## Outputs` entries: flat objects.
    fn named(&mut self, entities: &[Entity], section: Section, top: &str) -> Map<String, Value> {
        let mut out = Map::new();
        let mut lines: Vec<(String, usize)> = Vec::new();
        for e in entities.iter().filter(|e| e.section == section) {
            let path = field_path(top, &e.id);
            if let Some((_, first)) = lines.iter().find(|(id, _)| *id == e.id) {
                let first = *first;
                self.error(
                    e.line,
                    &path,
                    format!("'{}' is declared twice in '## {}'", e.id, section.name()),
                    Some(format!("the first is at line {}", first + 1)),
                );
                continue;
            }
            lines.push((e.id.clone(), e.line));
            self.map.insert(path.clone(), self.line_span(e.line));
            let mut spec = Map::new();
            if let Some(d) = self.described(
                e,
                &path,
                if section == Section::Inputs {
                    "input"
                } else {
                    "output"
                },
            ) {
                spec.insert("description".into(), Value::String(d));
                if let Some((_, l)) = e.prose.first() {
                    self.map
                        .insert(field_path(&path, "description"), self.line_span(*l));
                }
            }
            for (k, f) in self.fields(e, &path) {
                let p = field_path(&path, &k);
                self.map.insert(p, f.span);
                spec.insert(k, f.value);
            }
            out.insert(e.id.clone(), Value::Object(spec));
        }
        out
    }

    /// The nodes, and the edges: document order, unless a node says `next`.
    fn nodes(&mut self, steps: &[&Entity]) -> (Vec<Value>, Vec<Value>) {
        let mut nodes = Vec::new();
        let mut routes: Vec<Vec<(String, Value, usize, Span)>> = Vec::new();
        for (i, e) in steps.iter().enumerate() {
            let path = format!("nodes[{i}]");
            self.map.insert(path.clone(), self.line_span(e.line));
            self.map.insert(format!("{path}.id"), e.id_span);
            let mut node = Map::new();
            node.insert("id".into(), Value::String(e.id.clone()));
            let purpose = self.described(e, &path, "step");
            let mut params = Map::new();
            let mut route = Vec::new();
            let mut lifted = Map::new();
            for (k, f) in self.fields(e, &path) {
                if k == "next" || (k.starts_with("on-") && k.len() > 3) {
                    route.push((k, f.value, f.line, f.span));
                } else if NODE_FIELDS.contains(&k.as_str()) {
                    self.map.insert(field_path(&path, &k), f.span);
                    lifted.insert(k, f.value);
                } else {
                    self.map
                        .insert(field_path(&format!("{path}.params"), &k), f.span);
                    params.insert(k, f.value);
                }
            }
            if let Some(t) = lifted.shift_remove("type") {
                node.insert("type".into(), t);
            }
            if let Some(p) = purpose {
                if let Some((_, l)) = e.prose.first() {
                    self.map
                        .insert(format!("{path}.purpose"), self.line_span(*l));
                }
                node.insert("purpose".into(), Value::String(p));
            }
            if !params.is_empty() {
                node.insert("params".into(), Value::Object(params));
            }
            node.extend(lifted);
            nodes.push(Value::Object(node));
            routes.push(route);
        }
        let mut edges = Vec::new();
        for (i, e) in steps.iter().enumerate() {
            let route = std::mem::take(&mut routes[i]);
            let has_next = route.iter().any(|(k, ..)| k == "next");
            if !has_next {
                // Two steps with one id are reported as such; an edge between them would
                // only add a cycle of a node to itself to the report.
                if let Some(next) = steps.get(i + 1).filter(|n| n.id != e.id) {
                    self.map
                        .insert(format!("edges[{}]", edges.len()), self.line_span(next.line));
                    edges.push(edge(&e.id, &next.id, None));
                }
            }
            for (key, value, line, span) in route {
                let action = key.strip_prefix("on-");
                let targets: Vec<&Value> = match &value {
                    Value::Array(items) => items.iter().collect(),
                    other => vec![other],
                };
                for t in targets {
                    match t {
                        Value::String(s) if s == "end" && action.is_none() => {}
                        Value::String(s) if !s.trim().is_empty() => {
                            self.map.insert(format!("edges[{}]", edges.len()), span);
                            edges.push(edge(&e.id, s.trim(), action));
                        }
                        other => self.error(
                            line,
                            &format!("nodes[{i}]"),
                            format!("'{key}' must name steps, found {other}"),
                            Some(format!(
                                "write '- {key}: step-id' or '- {key}: [a, b]'{}",
                                if action.is_none() {
                                    ", or '- next: end' for none"
                                } else {
                                    ""
                                }
                            )),
                        ),
                    }
                }
            }
        }
        (nodes, edges)
    }
}

fn edge(from: &str, to: &str, action: Option<&str>) -> Value {
    let mut m = Map::new();
    m.insert("from".into(), Value::String(from.into()));
    m.insert("to".into(), Value::String(to.into()));
    if let Some(a) = action {
        m.insert("action".into(), Value::String(a.into()));
    }
    Value::Object(m)
}

/// A YAML error without the position (the diagnostic carries the Markdown line).
fn yaml_message(e: &serde_yaml_ng::Error) -> String {
    let m = e.to_string();
    match m.find(" at line ") {
        Some(i) => m[..i].to_string(),
        None => m,
    }
}
