//! `${...}` templates: parsing, and resolution against the values a node can see.
//!
//! A template string is parsed once into [`Template`] parts (literal text and
//! [`Reference`]s). Resolution never re-scans substituted data, so a value that itself
//! contains `${x}` is inserted verbatim: there is no second-order expansion.
//!
//! Rules (pflow IR 0.1.0, with DESIGN.md §1 where it differs from the Python original):
//! - `${name}`, `${node.key.path[0].x}`; names are `[A-Za-z_][A-Za-z0-9_-]*`.
//! - One level of nested index: `${n.results[${__index__}].stdout}`.
//! - `$${x}` is the literal text `${x}`.
//! - Shell parameter expansions that can never be a template (`${#arr[@]}`, `${x:-d}`,
//!   `${1}`) are left verbatim for the shell.
//! - A string that is exactly one template keeps the value's JSON type; inside text,
//!   values are rendered as text (null → empty, objects and arrays as compact JSON).
//! - Walking a path through a string that holds a JSON object or array parses it.
//!
//! Expansion is bounded: one param value may not build more than
//! [`max_template_bytes`] bytes of text (256 MB unless `PFLOW_MAX_TEMPLATE_BYTES` says
//! otherwise), so `${a.stdout}` repeated many times over a large value fails with an
//! [`Unresolved`] error that names the template instead of exhausting memory.

use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

/// Default cap on the text one param value may expand to (256 MB).
pub const DEFAULT_MAX_TEMPLATE_BYTES: usize = 256 * 1024 * 1024;

/// The expansion cap: `PFLOW_MAX_TEMPLATE_BYTES` when set to a number, else
/// [`DEFAULT_MAX_TEMPLATE_BYTES`]. Read once per process.
pub fn max_template_bytes() -> usize {
    static LIMIT: OnceLock<usize> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::env::var("PFLOW_MAX_TEMPLATE_BYTES")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(DEFAULT_MAX_TEMPLATE_BYTES)
    })
}

/// What is left of the expansion cap while one value is being resolved.
struct Budget {
    limit: usize,
    used: usize,
}

impl Budget {
    fn new(limit: usize) -> Budget {
        Budget { limit, used: 0 }
    }

    fn left(&self) -> usize {
        self.limit.saturating_sub(self.used)
    }

    /// Take `n` bytes, or say which template went over.
    fn take(&mut self, n: usize, template: &dyn Fn() -> String) -> Result<(), Unresolved> {
        if n > self.left() {
            return Err(self.exceeded(template()));
        }
        self.used += n;
        Ok(())
    }

    fn exceeded(&self, template: String) -> Unresolved {
        Unresolved {
            template,
            resolved_prefix: String::new(),
            reason: format!(
                "expanding it would produce more than {} bytes of text, the limit for one value \
                 (set PFLOW_MAX_TEMPLATE_BYTES to change it)",
                self.limit
            ),
            available: Vec::new(),
            over_limit: true,
        }
    }
}

/// An `io::Write` into a byte buffer that refuses to grow past `cap` bytes.
struct CappedWriter<'a> {
    buf: &'a mut Vec<u8>,
    cap: usize,
}

impl std::io::Write for CappedWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.cap {
            return Err(std::io::Error::other("template expansion limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Serialized size of `v` (compact JSON), or `None` when it is over `cap`. Stops early.
fn json_len_within(v: &Value, cap: usize) -> Option<usize> {
    struct Count {
        n: usize,
        cap: usize,
    }
    impl std::io::Write for Count {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.n += data.len();
            if self.n > self.cap {
                return Err(std::io::Error::other("over"));
            }
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count { n: 0, cap };
    serde_json::to_writer(&mut c, v).ok().map(|_| c.n)
}

/// The size a value adds when it is copied into a larger value: its text for strings,
/// its compact JSON otherwise. `None` when over `cap`.
fn value_len_within(v: &Value, cap: usize) -> Option<usize> {
    let n = match v {
        Value::String(s) => s.len(),
        Value::Array(_) | Value::Object(_) => return json_len_within(v, cap),
        _ => 8,
    };
    (n <= cap).then_some(n)
}

/// A shell command resolved by [`Template::resolve_shell`]: its text, and the variables
/// (name, value) the process needs for the references in it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShellText {
    pub command: String,
    pub vars: Vec<(String, String)>,
}

/// A parsed template string.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    Ref(Reference),
}

/// One `${...}` reference.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// The first name: a workflow input, a node id, a batch alias or `__index__`.
    pub root: String,
    pub path: Vec<Step>,
    /// `${x|raw}`: in shell text, paste the value as code instead of passing it as a
    /// variable (see [`crate::shell_text`]). Elsewhere it changes nothing.
    pub raw: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Key(String),
    Index(Index),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Index {
    Literal(usize),
    /// `[${inner}]`: the inner reference must resolve to a non-negative integer.
    Nested(Box<Reference>),
}

/// A template that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// Byte offset of the `${` that starts the bad template.
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let raw = if self.raw { "|raw" } else { "" };
        write!(f, "${{{}{raw}}}", self.path_string())
    }
}

impl Reference {
    /// The reference without `${}`: `node.key[0].x`.
    pub fn path_string(&self) -> String {
        let mut out = self.root.clone();
        for step in &self.path {
            push_step(&mut out, step);
        }
        out
    }

    /// The first key after the root (`stdout` in `${node.stdout.x}`), if it is a key.
    pub fn first_key(&self) -> Option<&str> {
        match self.path.first() {
            Some(Step::Key(k)) => Some(k),
            _ => None,
        }
    }

    /// Every reference this one depends on: itself and any nested index reference.
    pub fn all_refs(&self) -> impl Iterator<Item = &Reference> {
        std::iter::once(self).chain(self.path.iter().filter_map(|s| match s {
            Step::Index(Index::Nested(r)) => Some(r.as_ref()),
            _ => None,
        }))
    }
}

fn push_step(out: &mut String, step: &Step) {
    match step {
        Step::Key(k) => {
            out.push('.');
            out.push_str(k);
        }
        Step::Index(Index::Literal(i)) => {
            out.push('[');
            out.push_str(&i.to_string());
            out.push(']');
        }
        Step::Index(Index::Nested(r)) => {
            out.push('[');
            out.push_str(&r.to_string());
            out.push(']');
        }
    }
}

/// Does this string contain anything that looks like a template (cheap pre-check)?
pub fn has_template_syntax(s: &str) -> bool {
    s.contains("${")
}

impl Template {
    /// Parse a template string.
    pub fn parse(s: &str) -> Result<Template, TemplateError> {
        Self::parse_in(s, false)
    }

    /// Parse a template of a node that expanding a nested workflow made: its roots may
    /// name nodes inside nested workflows (`${run/normalize.stdout}`,
    /// `${run/@inputs.text}`). Never for text a user wrote, where `${x/a/b}` is a shell
    /// expansion.
    pub fn parse_scoped(s: &str) -> Result<Template, TemplateError> {
        Self::parse_in(s, true)
    }

    fn parse_in(s: &str, scoped: bool) -> Result<Template, TemplateError> {
        let bytes = s.as_bytes();
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut i = 0;
        let mut last = 0;
        while i < bytes.len() {
            if bytes[i] == b'$'
                && bytes.get(i + 1) == Some(&b'$')
                && bytes.get(i + 2) == Some(&b'{')
            {
                // `$${` is an escaped literal `${`.
                text.push_str(&s[last..i]);
                text.push_str("${");
                i += 3;
                last = i;
                continue;
            }
            if bytes[i] == b'$' && bytes.get(i + 1) == Some(&b'{') {
                text.push_str(&s[last..i]);
                match parse_reference(s, i + 2, true, scoped) {
                    Ok((reference, end)) => {
                        if !text.is_empty() {
                            parts.push(Part::Text(std::mem::take(&mut text)));
                        }
                        parts.push(Part::Ref(reference));
                        i = end;
                    }
                    Err(message) => match find_close(bytes, i + 2) {
                        Some(close) if is_shell_expansion(&s[i + 2..close]) => {
                            text.push_str(&s[i..=close]);
                            i = close + 1;
                        }
                        Some(close) => {
                            return Err(TemplateError {
                                offset: i,
                                message: format!(
                                    "malformed template '{}': {message}",
                                    &s[i..=close]
                                ),
                            })
                        }
                        None => {
                            return Err(TemplateError {
                                offset: i,
                                message: format!(
                                    "unclosed template '{}': a '${{' needs a closing '}}' (write '$${{' for a literal '${{')",
                                    preview(&s[i..], 40)
                                ),
                            })
                        }
                    },
                }
                last = i;
                continue;
            }
            i += 1;
        }
        text.push_str(&s[last..]);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template { parts })
    }

    /// The single reference when the whole string is exactly one template.
    pub fn as_single_ref(&self) -> Option<&Reference> {
        match self.parts.as_slice() {
            [Part::Ref(r)] => Some(r),
            _ => None,
        }
    }

    pub fn has_refs(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Ref(_)))
    }

    /// Every reference, including nested index references.
    pub fn refs(&self) -> impl Iterator<Item = &Reference> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Ref(r) => Some(r),
                Part::Text(_) => None,
            })
            .flat_map(|r| r.all_refs())
    }

    /// Resolve against `scope`. One whole-value reference keeps its JSON type; otherwise
    /// the result is text, at most [`max_template_bytes`] long.
    pub fn resolve(&self, scope: &dyn Scope) -> Result<Value, Unresolved> {
        self.resolve_with_limit(scope, max_template_bytes())
    }

    /// [`Template::resolve`] with an explicit cap on the text it may produce.
    pub fn resolve_with_limit(&self, scope: &dyn Scope, limit: usize) -> Result<Value, Unresolved> {
        self.resolve_in(scope, &mut Budget::new(limit), false)
    }

    /// Resolve, charging the text produced to `budget`. A whole-value reference is only
    /// charged when `charge_whole` (it is then a copy inside a larger value).
    fn resolve_in(
        &self,
        scope: &dyn Scope,
        budget: &mut Budget,
        charge_whole: bool,
    ) -> Result<Value, Unresolved> {
        if let Some(r) = self.as_single_ref() {
            let v = resolve_reference(r, scope)?;
            if charge_whole {
                let n = value_len_within(&v, budget.left())
                    .ok_or_else(|| budget.exceeded(self.name()))?;
                budget.take(n, &|| self.name())?;
            }
            return Ok(v);
        }
        let mut out: Vec<u8> = Vec::new();
        for part in &self.parts {
            let piece: Cow<'_, str> = match part {
                Part::Text(t) => Cow::Borrowed(t.as_str()),
                Part::Ref(r) => {
                    let v = resolve_reference(r, scope)?;
                    match v {
                        Value::Array(_) | Value::Object(_) => {
                            // Serialize straight into the output, stopping at the cap.
                            let start = out.len();
                            let cap = start + budget.left();
                            let mut w = CappedWriter { buf: &mut out, cap };
                            if serde_json::to_writer(&mut w, &v).is_err() {
                                return Err(budget.exceeded(self.name()));
                            }
                            let n = out.len() - start;
                            budget.take(n, &|| self.name())?;
                            continue;
                        }
                        other => Cow::Owned(render_text(&other).into_owned()),
                    }
                }
            };
            budget.take(piece.len(), &|| self.name())?;
            out.extend_from_slice(piece.as_bytes());
        }
        let text = String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        Ok(Value::String(text))
    }

    /// Resolve as the text of a shell command: each value goes into an environment
    /// variable, and the text gets a reference to it quoted for its spot, so no value
    /// can change the command ([`crate::shell_text`]). A `|raw` reference, and one where
    /// no reference would expand (a literal here-document), is pasted as before. With
    /// `leave_unresolved`, a reference that does not resolve stays as its `${...}` text
    /// (permissive mode). The text and the values together stay within the cap.
    pub fn resolve_shell(
        &self,
        scope: &dyn Scope,
        leave_unresolved: bool,
    ) -> Result<ShellText, Unresolved> {
        let mut budget = Budget::new(max_template_bytes());
        let mut scanner = crate::shell_text::Scanner::new();
        let mut out = ShellText::default();
        for part in &self.parts {
            let piece = match part {
                Part::Text(t) => {
                    scanner.text(t);
                    out.command.push_str(t);
                    budget.take(t.len(), &|| self.name())?;
                    continue;
                }
                Part::Ref(r) => r,
            };
            let value = match resolve_reference(piece, scope) {
                Ok(v) => v,
                Err(_) if leave_unresolved => {
                    let text = piece.to_string();
                    scanner.text(&text);
                    out.command.push_str(&text);
                    continue;
                }
                Err(u) => return Err(u),
            };
            let n = value_len_within(&value, budget.left())
                .ok_or_else(|| budget.exceeded(self.name()))?;
            budget.take(n, &|| self.name())?;
            let text = render_text(&value).into_owned();
            let spot = scanner.value();
            let var = format!("PFLOW_T{}", out.vars.len());
            if piece.raw {
                out.command.push_str(&text);
                continue;
            }
            // Pasted only when the workflow asks (`|raw`): where no reference expands (a
            // here-document with a quoted delimiter, or a spot the scanner misread as
            // one), the command is refused rather than handed the value as code.
            let Some(reference) = spot.reference(&var) else {
                return Err(Unresolved {
                    template: piece.to_string(),
                    resolved_prefix: String::new(),
                    reason: "it stands inside a here-document with a quoted delimiter, where no variable expands, and pasting it would let the value run as code; write the delimiter unquoted (<<EOF), or ${...|raw} to paste it"
                        .into(),
                    available: Vec::new(),
                    over_limit: false,
                });
            };
            out.command.push_str(&reference);
            out.vars.push((var, text));
        }
        Ok(out)
    }

    /// Change every reference, nested index references included (expanding a nested
    /// workflow renames what its templates point at).
    pub fn map_refs(&mut self, f: &mut dyn FnMut(&mut Reference)) {
        for part in &mut self.parts {
            if let Part::Ref(r) = part {
                for step in &mut r.path {
                    if let Step::Index(Index::Nested(inner)) = step {
                        f(inner);
                    }
                }
                f(r);
            }
        }
    }

    /// The template as source text: `parse(t.to_source()) == t` for any parsed `t`.
    /// Literal `${` in text is written `$${`.
    pub fn to_source(&self) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(&t.replace("${", "$${")),
                Part::Ref(r) => out.push_str(&r.to_string()),
            }
        }
        out
    }

    /// A short form of the source for messages.
    fn name(&self) -> String {
        preview(&self.to_source(), 80)
    }
}

/// Parse a reference body starting at `start` (just after `${`). Returns the reference
/// and the index just past its closing `}`.
fn parse_reference(
    s: &str,
    start: usize,
    allow_nested: bool,
    scoped: bool,
) -> Result<(Reference, usize), String> {
    let bytes = s.as_bytes();
    let mut i = start;
    let mut root_end = scan_ident(bytes, i, true);
    // `outer/inner`, `outer/@inputs`: one segment per level of nesting.
    while scoped && root_end > i && bytes.get(root_end) == Some(&b'/') {
        let at = usize::from(bytes.get(root_end + 1) == Some(&b'@'));
        let end = scan_ident(bytes, root_end + 1 + at, true);
        if end == root_end + 1 + at {
            break;
        }
        root_end = end;
    }
    if root_end == i {
        return Err(match bytes.get(i) {
            Some(b'}') => "empty template".to_string(),
            Some(c) if c.is_ascii_whitespace() => "no spaces are allowed inside '${...}'".into(),
            _ => "a template starts with a name: a letter or '_'".into(),
        });
    }
    let root = s[i..root_end].to_string();
    i = root_end;
    let mut path = Vec::new();
    loop {
        match bytes.get(i) {
            Some(b'}') => {
                let raw = false;
                return Ok((Reference { root, path, raw }, i + 1));
            }
            Some(b'|') if allow_nested => {
                let rest = &s[i + 1..];
                if rest.starts_with("raw}") {
                    let raw = true;
                    return Ok((Reference { root, path, raw }, i + 5));
                }
                return Err(
                    "the only '|' option is '|raw' (paste the value into shell text as code)"
                        .into(),
                );
            }
            Some(b'.') => {
                let end = scan_ident(bytes, i + 1, false);
                if end == i + 1 {
                    return Err("expected a field name after '.'".into());
                }
                path.push(Step::Key(s[i + 1..end].to_string()));
                i = end;
            }
            Some(b'[') => {
                if bytes.get(i + 1) == Some(&b'$') && bytes.get(i + 2) == Some(&b'{') {
                    if !allow_nested {
                        return Err("only one level of nested '${...}' index is allowed".into());
                    }
                    let (inner, end) = parse_reference(s, i + 3, false, scoped)?;
                    if bytes.get(end) != Some(&b']') {
                        return Err("expected ']' after a nested index".into());
                    }
                    path.push(Step::Index(Index::Nested(Box::new(inner))));
                    i = end + 1;
                } else {
                    let digits_end = (i + 1..bytes.len())
                        .find(|&j| !bytes[j].is_ascii_digit())
                        .unwrap_or(bytes.len());
                    if digits_end == i + 1 || bytes.get(digits_end) != Some(&b']') {
                        return Err("an index is a number in brackets, like [0]".into());
                    }
                    let n = s[i + 1..digits_end]
                        .parse::<usize>()
                        .map_err(|_| "index is too large".to_string())?;
                    path.push(Step::Index(Index::Literal(n)));
                    i = digits_end + 1;
                }
            }
            None => return Err("missing closing '}'".into()),
            Some(_) => return Err(
                "unexpected character; a template is a name followed by .field or [index] parts"
                    .into(),
            ),
        }
    }
}

fn scan_ident(bytes: &[u8], start: usize, is_root: bool) -> usize {
    let mut i = start;
    while let Some(&c) = bytes.get(i) {
        let ok = c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
        let ok_first = if is_root {
            c.is_ascii_alphabetic() || c == b'_'
        } else {
            ok
        };
        if (i == start && !ok_first) || !ok {
            break;
        }
        i += 1;
    }
    i
}

/// The matching `}` for a `${` whose body starts at `start`, counting nested `${`.
fn find_close(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Shell parameter expansions that are never pflow templates: positional parameters,
/// `${#x}`, `${x:-d}`, `${x%%p}`, `${x/a/b}`, `${arr[@]}`, `${!x}`...
fn is_shell_expansion(body: &str) -> bool {
    let Some(first) = body.chars().next() else {
        return false;
    };
    if first.is_ascii_digit() || "#!@*?$-".contains(first) {
        return true;
    }
    body.chars().any(|c| ":%#/^,@*!?=+~".contains(c))
}

fn preview(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

/// Render a value into text, as it appears inside a larger string.
pub fn render_text(value: &Value) -> Cow<'_, str> {
    match value {
        Value::Null => Cow::Borrowed(""),
        Value::String(s) => Cow::Borrowed(s),
        Value::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        // Canonical text (sorted keys, `1.0` as `1`): values that hash equal in node keys
        // must also render equal, or a cached result could be stale.
        Value::Number(_) | Value::Array(_) | Value::Object(_) => {
            Cow::Owned(String::from_utf8(crate::canonical::to_canonical(value)).unwrap_or_default())
        }
    }
}

/// Parse text that holds a JSON object or array; anything else is `None`. Text that
/// holds a JSON primitive stays text, so numeric-looking ids keep their type.
pub fn parse_json_container(s: &str) -> Option<Value> {
    const MAX: usize = 10 * 1024 * 1024;
    let t = s.trim();
    if t.len() > MAX || !(t.starts_with('{') || t.starts_with('[')) {
        return None;
    }
    serde_json::from_str::<Value>(t).ok()
}

/// What a template can see: workflow inputs, node outputs, the batch item and index.
pub trait Scope {
    fn lookup(&self, root: &str) -> Option<Cow<'_, Value>>;
    /// Names visible at the root, for error messages.
    fn root_names(&self) -> Vec<String>;
}

/// A template that could not be resolved, with what does exist at the deepest point.
#[derive(Debug, Clone, PartialEq)]
pub struct Unresolved {
    /// The template as written, e.g. `${get.stdout.user.fullname}`.
    pub template: String,
    /// The longest prefix that did resolve, e.g. `get.stdout.user`.
    pub resolved_prefix: String,
    /// Why the next step failed.
    pub reason: String,
    /// Fields that exist at the deepest resolvable point, with short previews.
    pub available: Vec<(String, String)>,
    /// The expansion cap was hit: not a missing value, so never "left as text".
    pub over_limit: bool,
}

impl fmt::Display for Unresolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot resolve {}: {}", self.template, self.reason)?;
        if !self.available.is_empty() {
            // The message names the first few; the repair prompt gets them all.
            let names: Vec<&str> = self
                .available
                .iter()
                .take(SHOWN_FIELDS)
                .map(|(k, _)| k.as_str())
                .collect();
            let more = self.available.len().saturating_sub(SHOWN_FIELDS);
            write!(
                f,
                "; available at '{}': {}{}",
                self.resolved_prefix,
                names.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            )?;
        }
        Ok(())
    }
}

/// A short one-line preview of a value for error messages and repair context.
pub fn value_preview(value: &Value, max: usize) -> String {
    let text = match value {
        Value::String(s) => format!("{:?}", preview(s, max)),
        other => preview(&render_text(other), max),
    };
    preview(&text, max + 2)
}

/// Field names an unresolved template's message lists.
const SHOWN_FIELDS: usize = 30;
/// Fields kept for the repair prompt (which orders them by similarity to the missing
/// one): all of an object's, up to a bound on what one error may hold.
const MAX_FIELDS: usize = 10_000;

fn fields_of(value: &Value) -> Vec<(String, String)> {
    match value {
        Value::Object(map) => map
            .iter()
            .take(MAX_FIELDS)
            .map(|(k, v)| (k.clone(), value_preview(v, 60)))
            .collect(),
        Value::Array(items) => items
            .iter()
            .take(5)
            .enumerate()
            .map(|(i, v)| (format!("[{i}]"), value_preview(v, 60)))
            .collect(),
        Value::String(s) => match parse_json_container(s) {
            Some(v) => fields_of(&v),
            None => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// Resolve one reference, walking into JSON text where needed.
pub fn resolve_reference(r: &Reference, scope: &dyn Scope) -> Result<Value, Unresolved> {
    let fail = |prefix: String, reason: String, at: Option<&Value>| Unresolved {
        template: r.to_string(),
        resolved_prefix: prefix,
        reason,
        available: at.map(fields_of).unwrap_or_default(),
        over_limit: false,
    };
    let Some(root) = scope.lookup(&r.root) else {
        let mut names = scope.root_names();
        names.sort();
        return Err(Unresolved {
            template: r.to_string(),
            resolved_prefix: String::new(),
            reason: format!(
                "'{}' is not a workflow input or a node that has run",
                r.root
            ),
            available: names.into_iter().map(|n| (n, String::new())).collect(),
            over_limit: false,
        });
    };
    let mut current: Cow<'_, Value> = root;
    let mut prefix = r.root.clone();
    for step in &r.path {
        // Text holding JSON is walked into as the value it holds.
        if let Value::String(s) = current.as_ref() {
            match parse_json_container(s) {
                Some(v) => current = Cow::Owned(v),
                None => {
                    let reason = format!(
                        "'{prefix}' is text, not JSON, so it has no fields (value: {})",
                        value_preview(&current, 60)
                    );
                    return Err(fail(prefix, reason, None));
                }
            }
        }
        let at = match step {
            Step::Key(k) => At::Key(k),
            Step::Index(Index::Literal(n)) => At::Index(*n),
            Step::Index(Index::Nested(inner)) => match resolve_reference(inner, scope)? {
                Value::Number(num) if num.as_u64().is_some() => {
                    At::Index(num.as_u64().unwrap_or(0) as usize)
                }
                other => {
                    let reason = format!(
                        "the index {} is {}, not a non-negative integer",
                        inner,
                        type_name(&other)
                    );
                    return Err(fail(prefix, reason, None));
                }
            },
        };
        // Borrowed all the way down where the scope's values are: only the value the
        // reference names is cloned, not each object on the way to it.
        current = match current {
            Cow::Borrowed(container) => match child(container, at, &prefix) {
                Ok(next) => Cow::Borrowed(next),
                Err(reason) => return Err(fail(prefix, reason, Some(container))),
            },
            Cow::Owned(container) => match child(&container, at, &prefix) {
                Ok(next) => Cow::Owned(next.clone()),
                Err(reason) => return Err(fail(prefix, reason, Some(&container))),
            },
        };
        push_step(&mut prefix, step);
    }
    Ok(current.into_owned())
}

/// A step of a reference with its index resolved.
#[derive(Clone, Copy)]
enum At<'s> {
    Key(&'s str),
    Index(usize),
}

/// The field or item of `container` that `at` names, or why there is none.
fn child<'v>(container: &'v Value, at: At<'_>, prefix: &str) -> Result<&'v Value, String> {
    match (at, container) {
        (At::Key(k), Value::Object(map)) => map
            .get(k)
            .ok_or_else(|| format!("'{prefix}' has no field '{k}'")),
        (At::Key(k), other) => Err(format!(
            "'{prefix}' is {}, not an object, so it has no field '{k}'",
            type_name(other)
        )),
        (At::Index(n), Value::Array(items)) => items.get(n).ok_or_else(|| {
            format!(
                "index {n} is out of range: '{prefix}' has {} item(s)",
                items.len()
            )
        }),
        (At::Index(_), other) => Err(format!(
            "'{prefix}' is {}, not an array, so it cannot be indexed",
            type_name(other)
        )),
    }
}

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A param value with its templates parsed once: literals stay as they are.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamTemplate {
    Literal(Value),
    Template(Template),
    Array(Vec<ParamTemplate>),
    Object(Vec<(String, ParamTemplate)>),
}

impl ParamTemplate {
    /// Compile a param value. Returns the first malformed template with its JSON path
    /// suffix (relative to the value).
    pub fn compile(value: &Value) -> Result<ParamTemplate, (String, TemplateError)> {
        Self::compile_at(value, String::new(), false)
    }

    /// [`ParamTemplate::compile`] for a node that expanding a nested workflow made (see
    /// [`Template::parse_scoped`]).
    pub fn compile_scoped(value: &Value) -> Result<ParamTemplate, (String, TemplateError)> {
        Self::compile_at(value, String::new(), true)
    }

    fn compile_at(
        value: &Value,
        path: String,
        scoped: bool,
    ) -> Result<ParamTemplate, (String, TemplateError)> {
        match value {
            Value::String(s) if has_template_syntax(s) => match Template::parse_in(s, scoped) {
                Ok(t) if t.has_refs() => Ok(ParamTemplate::Template(t)),
                Ok(t) => Ok(ParamTemplate::Literal(Value::String(
                    t.parts
                        .into_iter()
                        .map(|p| match p {
                            Part::Text(t) => t,
                            Part::Ref(_) => String::new(),
                        })
                        .collect(),
                ))),
                Err(e) => Err((path, e)),
            },
            Value::Array(items) if items.iter().any(contains_template) => Ok(ParamTemplate::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Self::compile_at(v, format!("{path}[{i}]"), scoped))
                    .collect::<Result<_, _>>()?,
            )),
            Value::Object(map) if map.values().any(contains_template) => Ok(ParamTemplate::Object(
                map.iter()
                    .map(|(k, v)| {
                        Ok((
                            k.clone(),
                            Self::compile_at(v, format!("{path}.{k}"), scoped)?,
                        ))
                    })
                    .collect::<Result<_, _>>()?,
            )),
            other => Ok(ParamTemplate::Literal(other.clone())),
        }
    }

    pub fn is_literal(&self) -> bool {
        matches!(self, ParamTemplate::Literal(_))
    }

    /// All references anywhere in the value.
    pub fn refs(&self) -> Vec<&Reference> {
        let mut out = Vec::new();
        self.collect_refs(&mut out);
        out
    }

    fn collect_refs<'a>(&'a self, out: &mut Vec<&'a Reference>) {
        match self {
            ParamTemplate::Literal(_) => {}
            ParamTemplate::Template(t) => out.extend(t.refs()),
            ParamTemplate::Array(items) => items.iter().for_each(|i| i.collect_refs(out)),
            ParamTemplate::Object(fields) => fields.iter().for_each(|(_, v)| v.collect_refs(out)),
        }
    }

    /// Resolve the whole value. Inside arrays and objects, a whole-value template whose
    /// value is JSON text of an object or array is parsed, as pflow does.
    ///
    /// The text built for the value (every text template, and every whole-value
    /// template copied into an array or object) is capped by [`max_template_bytes`]; a
    /// top-level whole-value template passes its value through and is not charged.
    pub fn resolve(&self, scope: &dyn Scope) -> Result<Value, Unresolved> {
        self.resolve_with_limit(scope, max_template_bytes())
    }

    /// [`ParamTemplate::resolve`] with an explicit cap on the text it may produce.
    pub fn resolve_with_limit(&self, scope: &dyn Scope, limit: usize) -> Result<Value, Unresolved> {
        self.resolve_inner(scope, false, &mut Budget::new(limit))
    }

    fn resolve_inner(
        &self,
        scope: &dyn Scope,
        nested: bool,
        budget: &mut Budget,
    ) -> Result<Value, Unresolved> {
        match self {
            ParamTemplate::Literal(v) => Ok(v.clone()),
            ParamTemplate::Template(t) => {
                let v = t.resolve_in(scope, budget, nested)?;
                if nested && t.as_single_ref().is_some() {
                    if let Value::String(s) = &v {
                        if let Some(parsed) = parse_json_container(s) {
                            return Ok(parsed);
                        }
                    }
                }
                Ok(v)
            }
            ParamTemplate::Array(items) => Ok(Value::Array(
                items
                    .iter()
                    .map(|i| i.resolve_inner(scope, true, budget))
                    .collect::<Result<_, _>>()?,
            )),
            ParamTemplate::Object(fields) => {
                let mut map = Map::with_capacity(fields.len());
                for (k, v) in fields {
                    map.insert(k.clone(), v.resolve_inner(scope, true, budget)?);
                }
                Ok(Value::Object(map))
            }
        }
    }
}

fn contains_template(value: &Value) -> bool {
    match value {
        Value::String(s) => has_template_syntax(s),
        Value::Array(items) => items.iter().any(contains_template),
        Value::Object(map) => map.values().any(contains_template),
        _ => false,
    }
}

/// A scope backed by a JSON object, for tests and simple callers.
impl Scope for Map<String, Value> {
    fn lookup(&self, root: &str) -> Option<Cow<'_, Value>> {
        self.get(root).map(Cow::Borrowed)
    }
    fn root_names(&self) -> Vec<String> {
        self.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn resolve(t: &str, s: &Map<String, Value>) -> Result<Value, Unresolved> {
        Template::parse(t).expect("parses").resolve(s)
    }

    #[test]
    fn plain_text_has_no_refs() {
        let t = Template::parse("hello world").unwrap();
        assert!(!t.has_refs());
        assert_eq!(t.parts, vec![Part::Text("hello world".into())]);
    }

    #[test]
    fn parses_paths_with_keys_and_indices() {
        let t = Template::parse("${fetch.response.items[0].name}").unwrap();
        let r = t.as_single_ref().unwrap();
        assert_eq!(r.root, "fetch");
        assert_eq!(
            r.path,
            vec![
                Step::Key("response".into()),
                Step::Key("items".into()),
                Step::Index(Index::Literal(0)),
                Step::Key("name".into())
            ]
        );
        assert_eq!(r.to_string(), "${fetch.response.items[0].name}");
    }

    #[test]
    fn hyphens_are_part_of_names() {
        let t = Template::parse("${my-node.stdout}").unwrap();
        assert_eq!(t.as_single_ref().unwrap().root, "my-node");
    }

    #[test]
    fn whole_value_template_keeps_type() {
        let s = scope(json!({"n": {"count": 3, "list": [1, 2], "obj": {"a": true}, "nil": null}}));
        assert_eq!(resolve("${n.count}", &s).unwrap(), json!(3));
        assert_eq!(resolve("${n.list}", &s).unwrap(), json!([1, 2]));
        assert_eq!(resolve("${n.obj}", &s).unwrap(), json!({"a": true}));
        assert_eq!(resolve("${n.nil}", &s).unwrap(), Value::Null);
    }

    #[test]
    fn text_rendering_rules() {
        let s = scope(
            json!({"n": {"count": 3, "list": [1, 2], "obj": {"a": true}, "nil": null, "t": true}}),
        );
        assert_eq!(
            resolve(
                "c=${n.count} l=${n.list} o=${n.obj} z=${n.nil} b=${n.t}",
                &s
            )
            .unwrap(),
            json!("c=3 l=[1,2] o={\"a\":true} z= b=true")
        );
    }

    #[test]
    fn equal_values_render_equal_text() {
        // Node keys hash canonical JSON, so rendering must be canonical too: otherwise two
        // params with one key would run different commands.
        let a: Value =
            serde_json::from_str(r#"{"b": 1.0, "a": [2.50, {"y": 1, "x": 0}]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a": [2.5, {"x": 0, "y": 1}], "b": 1}"#).unwrap();
        assert_eq!(render_text(&a), render_text(&b));
        assert_eq!(render_text(&a), r#"{"a":[2.5,{"x":0,"y":1}],"b":1}"#);
        assert_eq!(render_text(&json!(3.0)), "3");
    }

    #[test]
    fn dollar_dollar_is_a_literal_template() {
        let t = Template::parse("echo $${HOME} and $${x.y}").unwrap();
        assert!(!t.has_refs());
        assert_eq!(t.parts, vec![Part::Text("echo ${HOME} and ${x.y}".into())]);
    }

    #[test]
    fn shell_expansions_are_left_alone() {
        for s in [
            "${#arr[@]}",
            "${x:-default}",
            "${1}",
            "${path%%/*}",
            "${!ref}",
            "${a/b/c}",
        ] {
            let t = Template::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert!(!t.has_refs(), "{s}");
            assert_eq!(t.parts, vec![Part::Text(s.into())]);
        }
    }

    #[test]
    fn malformed_templates_are_errors() {
        for s in [
            "${}",
            "${node.}",
            "${ node }",
            "${a.b",
            "x ${",
            "${a[x]}",
            "${a..b}",
        ] {
            assert!(Template::parse(s).is_err(), "{s} should be malformed");
        }
        let e = Template::parse("echo ${a.b").unwrap_err();
        assert_eq!(e.offset, 5);
        assert!(e.message.contains("unclosed"), "{}", e.message);
    }

    #[test]
    fn walks_into_json_text() {
        let s = scope(
            json!({"get": {"stdout": "{\"user\": {\"name\": \"Ada\"}, \"ids\": [\"007\"]}"}}),
        );
        assert_eq!(
            resolve("${get.stdout.user.name}", &s).unwrap(),
            json!("Ada")
        );
        assert_eq!(resolve("${get.stdout.ids[0]}", &s).unwrap(), json!("007"));
    }

    #[test]
    fn primitive_json_text_is_not_parsed() {
        let s = scope(json!({"n": {"stdout": "42"}}));
        assert_eq!(resolve("${n.stdout}", &s).unwrap(), json!("42"));
        assert!(resolve("${n.stdout.x}", &s).is_err());
    }

    #[test]
    fn nested_index_resolves_first() {
        let s = scope(json!({
            "__index__": 1,
            "prev": {"results": [{"stdout": "a"}, {"stdout": "b"}]}
        }));
        assert_eq!(
            resolve("${prev.results[${__index__}].stdout}", &s).unwrap(),
            json!("b")
        );
        let t = Template::parse("${prev.results[${__index__}].stdout}").unwrap();
        let roots: Vec<_> = t.refs().map(|r| r.root.as_str()).collect();
        assert_eq!(roots, vec!["prev", "__index__"]);
    }

    #[test]
    fn nested_index_must_be_an_integer() {
        let s = scope(json!({"i": "one", "prev": {"results": [1]}}));
        let e = resolve("${prev.results[${i}]}", &s).unwrap_err();
        assert!(
            e.reason.contains("not a non-negative integer"),
            "{}",
            e.reason
        );
    }

    #[test]
    fn only_one_level_of_nesting() {
        assert!(Template::parse("${a[${b[${c}]}]}").is_err());
    }

    #[test]
    fn unresolved_lists_available_fields() {
        let s = scope(json!({"get": {"stdout": "{\"user\": {\"name\": \"Ada\", \"id\": 7}}"}}));
        let e = resolve("${get.stdout.user.fullname}", &s).unwrap_err();
        assert_eq!(e.resolved_prefix, "get.stdout.user");
        let names: Vec<_> = e.available.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, vec!["name", "id"]);
        assert!(e.to_string().contains("no field 'fullname'"));
    }

    #[test]
    fn index_out_of_range_is_unresolved() {
        let s = scope(json!({"n": {"list": [1]}}));
        let e = resolve("${n.list[3]}", &s).unwrap_err();
        assert!(e.reason.contains("out of range"));
    }

    #[test]
    fn substituted_data_is_never_expanded_again() {
        let s = scope(json!({"a": {"stdout": "${b.secret}"}, "b": {"secret": "leak"}}));
        assert_eq!(
            resolve("x ${a.stdout}", &s).unwrap(),
            json!("x ${b.secret}")
        );
        assert_eq!(resolve("${a.stdout}", &s).unwrap(), json!("${b.secret}"));
    }

    #[test]
    fn nested_params_auto_parse_json_text() {
        let s = scope(json!({"a": {"stdout": "{\"k\": [1,2]}", "exit_code": 0}}));
        let p = ParamTemplate::compile(
            &json!({"wrap": "${a.stdout}", "n": "${a.exit_code}", "s": "x ${a.exit_code}"}),
        )
        .unwrap();
        assert_eq!(
            p.resolve(&s).unwrap(),
            json!({"wrap": {"k": [1, 2]}, "n": 0, "s": "x 0"})
        );
        // At the top level, JSON text stays text.
        let top = ParamTemplate::compile(&json!("${a.stdout}")).unwrap();
        assert_eq!(top.resolve(&s).unwrap(), json!("{\"k\": [1,2]}"));
    }

    #[test]
    fn compile_reports_path_of_malformed_template() {
        let (path, e) = ParamTemplate::compile(&json!({"a": ["ok", "${bad"]})).unwrap_err();
        assert_eq!(path, ".a[1]");
        assert!(e.message.contains("unclosed"));
    }

    #[test]
    fn escaped_only_string_compiles_to_literal() {
        let p = ParamTemplate::compile(&json!("echo $${HOME}")).unwrap();
        assert_eq!(p, ParamTemplate::Literal(json!("echo ${HOME}")));
    }

    #[test]
    fn text_expansion_over_the_cap_names_the_template() {
        let s = scope(json!({"a": {"stdout": "x".repeat(1000)}}));
        let t = Template::parse(&"${a.stdout}".repeat(20)).unwrap();
        assert_eq!(
            t.resolve_with_limit(&s, 20_000).unwrap(),
            json!("x".repeat(20_000))
        );
        let e = t.resolve_with_limit(&s, 19_999).unwrap_err();
        assert!(e.template.starts_with("${a.stdout}${a.stdout}"), "{e}");
        assert!(e.reason.contains("more than 19999 bytes"), "{e}");
        assert!(e.to_string().contains("PFLOW_MAX_TEMPLATE_BYTES"), "{e}");
    }

    #[test]
    fn object_rendering_stops_at_the_cap() {
        let big: Vec<Value> = (0..10_000).map(|i| json!({"i": i})).collect();
        let s = scope(json!({"a": {"list": big}}));
        let t = Template::parse("x ${a.list}").unwrap();
        let e = t.resolve_with_limit(&s, 1000).unwrap_err();
        assert!(e.reason.contains("more than 1000 bytes"), "{e}");
        assert!(t.resolve_with_limit(&s, 1_000_000).is_ok());
    }

    #[test]
    fn the_cap_covers_a_whole_param_value() {
        let s = scope(json!({"a": {"stdout": "x".repeat(100)}}));
        // Each text template fits; together they do not.
        let p = ParamTemplate::compile(&json!(["${a.stdout}!", "${a.stdout}!", "${a.stdout}!"]))
            .unwrap();
        assert!(p.resolve_with_limit(&s, 303).is_ok());
        assert!(p.resolve_with_limit(&s, 302).is_err());
        // Whole-value copies inside a container count too.
        let p = ParamTemplate::compile(&json!({"x": "${a.stdout}", "y": "${a.stdout}"})).unwrap();
        assert!(p.resolve_with_limit(&s, 200).is_ok());
        assert!(p.resolve_with_limit(&s, 199).is_err());
        // A top-level whole value passes through uncharged.
        let p = ParamTemplate::compile(&json!("${a.stdout}")).unwrap();
        assert_eq!(p.resolve_with_limit(&s, 1).unwrap(), json!("x".repeat(100)));
    }

    #[test]
    fn to_source_round_trips() {
        for src in [
            "plain",
            "${a}",
            "echo ${a.b[0].c} and $${HOME} and ${#arr[@]}",
            "${n.results[${__index__}].stdout}",
            "$$${x}",
            "a$ ${b}$",
            "",
        ] {
            let t = Template::parse(src).unwrap();
            assert_eq!(Template::parse(&t.to_source()).unwrap(), t, "{src}");
        }
    }
}
