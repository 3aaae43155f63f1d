//! Where a template value lands in shell text, and how pflow puts it there without
//! letting it change the command.
//!
//! A `shell` node's command goes to `sh -c`. Pasting a value into that text lets the
//! value write code (`Ada; touch pwned`, `$(touch pwned)`) and breaks on ordinary text (a
//! path with a space, a quote in a title). So pflow passes each value in an environment
//! variable and writes a reference to it where the template was, quoted for the spot:
//! `"${PFLOW_T0}"` in plain text, `${PFLOW_T0}` inside double quotes or an expanding
//! here-document, `'"${PFLOW_T0}"'` inside single quotes. A shell expands a variable once
//! and never parses the result as code, so whatever the value holds stays text; a spot
//! misjudged by this scanner can at worst split the value into words, never run it.
//!
//! The scanner follows the POSIX rules that decide the spot: backslashes, single and
//! double quotes, `$(...)`, backquotes, `${...}`, `$((...))`, comments and
//! here-documents. Inside `$((...))` the value is evaluated as arithmetic, which runs no
//! commands in the `sh` pflow starts (dash, on Debian). Two spots cannot be made safe
//! like this and are reported instead:
//! the body of a here-document whose delimiter is quoted (the shell expands nothing
//! there, so the value is pasted as before), and text a second shell parses again
//! (`eval`, `sh -c '...'`, `ssh host '...'`), where the value would be code once more.

/// The quoting in force where a value goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Plain command text (also inside `$(...)` and backquotes).
    Unquoted,
    /// Inside `"..."`, `${...}`, `$((...))` or an expanding here-document body.
    DoubleQuoted,
    /// Inside `'...'`.
    SingleQuoted,
    /// Inside a comment: the shell ignores it.
    Comment,
    /// The body of a here-document with a quoted delimiter: nothing expands there.
    LiteralHeredoc,
}

/// One value's spot in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spot {
    pub context: Context,
    /// A backslash right before the value (it would escape the value's first character).
    pub escaped: bool,
    /// The command that hands this text to a second shell (`eval`, `sh -c`, `ssh`).
    pub second_shell: Option<String>,
    /// Inside `$((...))`: evaluated as arithmetic, which bash (where it is `/bin/sh`)
    /// lets run commands (`a[$(cmd)]`).
    pub arithmetic: bool,
}

impl Spot {
    /// Text that expands to variable `var`'s value here and nothing else, or `None` where
    /// no reference expands (a literal here-document).
    pub fn reference(&self, var: &str) -> Option<String> {
        let r = match self.context {
            Context::Unquoted => format!("\"${{{var}}}\""),
            Context::DoubleQuoted | Context::Comment => format!("${{{var}}}"),
            Context::SingleQuoted => format!("'\"${{{var}}}\"'"),
            Context::LiteralHeredoc => return None,
        };
        // A backslash-newline is removed by the shell, so the backslash before the
        // value escapes nothing of the reference (the value is literal anyway).
        Some(if self.escaped { format!("\n{r}") } else { r })
    }

    /// Why a value here is not safe even as a variable reference, if it is not.
    pub fn unsafe_because(&self) -> Option<String> {
        if self.context == Context::LiteralHeredoc {
            return Some(
                "it is inside a here-document with a quoted delimiter, where nothing expands"
                    .into(),
            );
        }
        if self.context == Context::Comment {
            return None;
        }
        if self.arithmetic {
            return Some(
                "inside $((...)) it is evaluated as arithmetic, where bash (when it is /bin/sh) runs $(...) in array subscripts"
                    .into(),
            );
        }
        self.second_shell
            .as_ref()
            .map(|c| format!("'{c}' parses it as shell code a second time"))
    }
}

#[derive(Debug, Clone)]
enum Frame {
    Unquoted,
    Single,
    Double,
    CmdSub {
        depth: u32,
    },
    Backtick,
    Param {
        depth: u32,
    },
    Arith {
        depth: u32,
    },
    /// After the first `)` of the `))` that ends `$((...))`.
    ArithEnd,
    Comment,
    Heredoc(Body),
}

#[derive(Debug, Clone)]
struct Body {
    delimiter: String,
    strip_tabs: bool,
    expands: bool,
    line: String,
    line_has_value: bool,
}

/// A `<<` whose delimiter word is being read, or has been and waits for its newline.
#[derive(Debug, Clone)]
struct Pending {
    word: String,
    quoted: bool,
    strip_tabs: bool,
}

/// Reads shell text piece by piece (the literal text between templates) and tells the
/// spot of each value between the pieces.
#[derive(Debug, Clone)]
pub struct Scanner {
    frames: Vec<Frame>,
    escape: bool,
    word_start: bool,
    /// `<<` was just read: the next word is a delimiter.
    reading_delimiter: Option<Pending>,
    heredocs: Vec<Pending>,
    /// The current simple command's words so far (quotes removed), for `eval`/`sh -c`.
    words: Vec<String>,
    word: String,
    /// The previous two characters, for operators (`$(`, `$((`, `<<`); 0 after a
    /// character a backslash escaped.
    prev: u8,
    prev2: u8,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner::new()
    }
}

const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "fish"];

impl Scanner {
    pub fn new() -> Scanner {
        Scanner {
            frames: vec![Frame::Unquoted],
            escape: false,
            word_start: true,
            reading_delimiter: None,
            heredocs: Vec::new(),
            words: Vec::new(),
            word: String::new(),
            prev: 0,
            prev2: 0,
        }
    }

    fn top(&self) -> &Frame {
        self.frames.last().unwrap_or(&Frame::Unquoted)
    }

    fn push(&mut self, f: Frame) {
        self.frames.push(f);
    }

    fn pop(&mut self) {
        if self.frames.len() > 1 {
            self.frames.pop();
        }
    }

    /// The spot of a value placed here. The value continues the current word.
    pub fn value(&mut self) -> Spot {
        let context = match self.top() {
            Frame::Unquoted | Frame::CmdSub { .. } | Frame::Backtick => Context::Unquoted,
            Frame::Double | Frame::Param { .. } | Frame::Arith { .. } | Frame::ArithEnd => {
                Context::DoubleQuoted
            }
            Frame::Single => Context::SingleQuoted,
            Frame::Comment => Context::Comment,
            Frame::Heredoc(b) if b.expands => Context::DoubleQuoted,
            Frame::Heredoc(_) => Context::LiteralHeredoc,
        };
        if let Some(Frame::Heredoc(b)) = self.frames.last_mut() {
            b.line_has_value = true;
        }
        let arithmetic = self
            .frames
            .iter()
            .any(|f| matches!(f, Frame::Arith { .. } | Frame::ArithEnd));
        let spot = Spot {
            context,
            escaped: self.escape && context != Context::SingleQuoted,
            second_shell: self.second_shell(),
            arithmetic,
        };
        self.escape = false;
        self.word_start = false;
        (self.prev, self.prev2) = (1, 1);
        // Stands in the word for whatever the value is (never a shell name or `-c`).
        self.word.push('\u{1}');
        spot
    }

    /// A best-effort guess: the command words after assignments and prefixes (`if`,
    /// `!`, `command`, `sudo`, `timeout`, ...) name one that parses text as shell code.
    fn second_shell(&self) -> Option<String> {
        const PREFIXES: &[&str] = &[
            "if", "then", "else", "elif", "while", "until", "do", "!", "{", "command", "builtin",
            "exec", "time", "nohup", "sudo", "env", "timeout", "nice", "xargs",
        ];
        let skipped = |w: &String| {
            let n = w.rsplit('/').next().unwrap_or(w);
            let assignment = w.contains('=') && !w.starts_with('=');
            let duration = w
                .chars()
                .all(|c| c.is_ascii_digit() || c == '.' || c == 's');
            PREFIXES.contains(&n) || assignment || w.starts_with('-') || duration
        };
        let first = self.words.iter().find(|w| !skipped(w))?;
        let name = first.rsplit('/').next().unwrap_or(first);
        if ["eval", "ssh", "trap", ".", "source", "su", "watch"].contains(&name) {
            return Some(name.to_string());
        }
        let at = self.words.iter().position(|w| {
            let n = w.rsplit('/').next().unwrap_or(w);
            SHELLS.contains(&n)
        })?;
        let shell = &self.words[at];
        self.words[at + 1..]
            .iter()
            .any(|w| w == "-c" || (w.starts_with('-') && !w.starts_with("--") && w.contains('c')))
            .then(|| format!("{shell} -c"))
    }

    /// Read literal shell text.
    pub fn text(&mut self, s: &str) {
        for &c in s.as_bytes() {
            let escaped = self.escape;
            self.byte(c);
            self.prev2 = self.prev;
            self.prev = if escaped { 0 } else { c };
        }
    }

    fn end_word(&mut self) {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        if let Some(p) = self.reading_delimiter.take() {
            if p.word.is_empty() {
                self.reading_delimiter = Some(p);
            } else {
                self.heredocs.push(p);
            }
        }
    }

    fn end_command(&mut self) {
        self.end_word();
        self.words.clear();
    }

    fn byte(&mut self, c: u8) {
        if let Some(Frame::Heredoc(_)) = self.frames.last() {
            return self.heredoc_byte(c);
        }
        if self.escape {
            self.escape = false;
            if c != b'\n' {
                self.literal(c);
            }
            return;
        }
        match self.top().clone() {
            Frame::Single => {
                if c == b'\'' {
                    self.pop();
                } else {
                    self.literal(c);
                }
            }
            Frame::Comment => {
                if c == b'\n' {
                    self.pop();
                    self.newline();
                }
            }
            Frame::Double => match c {
                b'"' => self.pop(),
                b'\\' => self.escape = true,
                b'`' => self.push(Frame::Backtick),
                b'(' if self.prev == b'$' => self.open_paren(),
                b'{' if self.prev == b'$' => self.push(Frame::Param { depth: 0 }),
                _ => self.literal(c),
            },
            Frame::Param { depth } => match c {
                b'}' if depth == 0 => self.pop(),
                b'}' => self.set_depth(depth.saturating_sub(1)),
                b'{' => self.set_depth(depth.saturating_add(1)),
                _ => self.code(c),
            },
            Frame::Arith { depth } => match c {
                // The first of the closing `))`; the second ends it in `ArithEnd`.
                b')' if depth == 0 => {
                    self.pop();
                    self.push(Frame::ArithEnd);
                }
                b')' => self.set_depth(depth.saturating_sub(1)),
                b'(' => self.set_depth(depth.saturating_add(1)),
                _ => self.code(c),
            },
            Frame::ArithEnd => {
                self.pop();
                if c != b')' {
                    self.byte(c);
                }
            }
            Frame::CmdSub { depth: 0 } if c == b'(' && self.prev == b'(' && self.prev2 == b'$' => {
                // `$((`: the substitution just opened is arithmetic.
                self.pop();
                self.push(Frame::Arith { depth: 0 });
            }
            Frame::CmdSub { depth } => match c {
                b')' if depth == 0 => {
                    self.end_command();
                    self.pop();
                }
                b')' => {
                    self.set_depth(depth.saturating_sub(1));
                    self.code(c);
                }
                b'(' => {
                    self.set_depth(depth.saturating_add(1));
                    self.code(c);
                }
                _ => self.code(c),
            },
            Frame::Backtick => match c {
                b'`' => {
                    self.end_command();
                    self.pop();
                }
                _ => self.code(c),
            },
            Frame::Unquoted => self.code(c),
            Frame::Heredoc(_) => {}
        }
    }

    fn set_depth(&mut self, d: u32) {
        if let Some(Frame::CmdSub { depth } | Frame::Param { depth } | Frame::Arith { depth }) =
            self.frames.last_mut()
        {
            *depth = d
        }
    }

    /// `$(` just read: a command substitution (or arithmetic, which starts as one and
    /// turns on the second `(`).
    fn open_paren(&mut self) {
        self.push(Frame::CmdSub { depth: 0 });
        self.word_start = true;
    }

    fn literal(&mut self, c: u8) {
        self.word_start = false;
        if let Some(p) = self.reading_delimiter.as_mut() {
            p.word.push(c as char);
        } else {
            self.word.push(c as char);
        }
    }

    /// A character of command text (unquoted, or inside `$(...)`, backquotes, `${...}`).
    fn code(&mut self, c: u8) {
        match c {
            b'\\' => {
                self.mark_quoted();
                self.escape = true;
            }
            b'\'' => {
                self.mark_quoted();
                self.push(Frame::Single);
            }
            b'"' => {
                self.mark_quoted();
                self.push(Frame::Double);
            }
            b'`' => {
                self.push(Frame::Backtick);
                self.word_start = true;
            }
            b'(' if self.prev == b'$' => self.open_paren(),
            b'{' if self.prev == b'$' => self.push(Frame::Param { depth: 0 }),
            b'#' if self.word_start && self.reading_delimiter.is_none() => {
                self.push(Frame::Comment)
            }
            b'\n' => {
                self.end_command();
                self.newline();
            }
            b' ' | b'\t' => {
                self.end_word();
                self.word_start = true;
            }
            b';' | b'&' | b'|' | b'(' | b')' => {
                self.end_command();
                self.word_start = true;
            }
            // `<<` inside `${...}` or `$((...))` is no here-document.
            b'<' if matches!(self.top(), Frame::Param { .. } | Frame::Arith { .. }) => {}
            b'<' if self.prev == b'<' && self.reading_delimiter.is_some() => {
                // `<<<` is a here-string, not a here-document.
                self.reading_delimiter = None;
            }
            b'<' if self.prev == b'<' => {
                self.end_word();
                self.reading_delimiter = Some(Pending {
                    word: String::new(),
                    quoted: false,
                    strip_tabs: false,
                });
            }
            b'<' | b'>' => {
                self.end_word();
                self.word_start = true;
            }
            b'-' if self.prev == b'<'
                && self
                    .reading_delimiter
                    .as_ref()
                    .is_some_and(|p| p.word.is_empty()) =>
            {
                if let Some(p) = self.reading_delimiter.as_mut() {
                    p.strip_tabs = true;
                }
            }
            b'$' if self.reading_delimiter.is_some() => self.literal(c),
            b'$' => self.word_start = false,
            _ => self.literal(c),
        }
    }

    fn mark_quoted(&mut self) {
        if let Some(p) = self.reading_delimiter.as_mut() {
            p.quoted = true;
        }
    }

    /// A newline in command text: here-documents read so far start their bodies.
    fn newline(&mut self) {
        self.word_start = true;
        self.end_word();
        self.reading_delimiter = None;
        self.start_next_heredoc();
    }

    fn start_next_heredoc(&mut self) {
        if self.heredocs.is_empty() {
            return;
        }
        let p = self.heredocs.remove(0);
        self.push(Frame::Heredoc(Body {
            delimiter: p.word,
            strip_tabs: p.strip_tabs,
            expands: !p.quoted,
            line: String::new(),
            line_has_value: false,
        }));
    }

    fn heredoc_byte(&mut self, c: u8) {
        let Some(Frame::Heredoc(body)) = self.frames.last_mut() else {
            return;
        };
        // An expanding body knows backslash escapes: `\${x}` must still expand the
        // value, and a backslash-newline joins two lines.
        let escaped = std::mem::replace(&mut self.escape, false) && body.expands;
        if c != b'\n' {
            // In an expanding body every value goes in as `${VAR}` (`DoubleQuoted`), also
            // inside a `$(...)` there: it splits into words at worst, never runs.
            if body.expands && !escaped && c == b'\\' {
                self.escape = true;
            }
            body.line.push(c as char);
            return;
        }
        if escaped {
            return;
        }
        let line = std::mem::take(&mut body.line);
        let has_value = std::mem::replace(&mut body.line_has_value, false);
        let shown = if body.strip_tabs {
            line.trim_start_matches('\t')
        } else {
            line.as_str()
        };
        if !has_value && shown == body.delimiter {
            self.frames.pop();
            self.start_next_heredoc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spots of the values in `parts`, split at each `@`.
    fn spots(text: &str) -> Vec<Spot> {
        let mut s = Scanner::new();
        let mut out = Vec::new();
        let mut pieces = text.split('@').peekable();
        while let Some(p) = pieces.next() {
            s.text(p);
            if pieces.peek().is_some() {
                out.push(s.value());
            }
        }
        out
    }

    fn contexts(text: &str) -> Vec<Context> {
        spots(text).into_iter().map(|s| s.context).collect()
    }

    use Context::*;

    #[test]
    fn quotes_decide_the_context() {
        assert_eq!(contexts("echo @"), [Unquoted]);
        assert_eq!(contexts("echo \"Hello, @!\""), [DoubleQuoted]);
        assert_eq!(contexts("echo 'x @' @"), [SingleQuoted, Unquoted]);
        assert_eq!(contexts("echo \"it's @\""), [DoubleQuoted]);
        assert_eq!(contexts("echo 'say \"@\"'"), [SingleQuoted]);
        assert_eq!(contexts("echo \\'@"), [Unquoted]);
        assert_eq!(contexts("echo \"a\\\"@\""), [DoubleQuoted]);
    }

    #[test]
    fn substitutions_nest() {
        assert_eq!(
            contexts("x=$(echo '@' | cut -d= -f2) && echo @"),
            [SingleQuoted, Unquoted]
        );
        assert_eq!(contexts("echo \"$(cat @)\" @"), [Unquoted, Unquoted]);
        assert_eq!(contexts("echo `echo @`"), [Unquoted]);
        assert_eq!(contexts("echo ${x:-@} @"), [DoubleQuoted, Unquoted]);
        assert_eq!(contexts("echo $((@ + 1)) @"), [DoubleQuoted, Unquoted]);
        assert_eq!(contexts("echo $( (echo a) ; echo @ )"), [Unquoted]);
    }

    #[test]
    fn comments_and_heredocs() {
        assert_eq!(contexts("echo a # @\necho @"), [Comment, Unquoted]);
        assert_eq!(contexts("echo a#@"), [Unquoted]);
        assert_eq!(
            contexts("cat <<EOF\nhi @\nEOF\necho @"),
            [DoubleQuoted, Unquoted]
        );
        assert_eq!(
            contexts("cat <<'EOF'\nhi @\nEOF\necho @"),
            [LiteralHeredoc, Unquoted]
        );
        assert_eq!(
            contexts("cat <<-\"E\"\n\t@\n\tE\necho @"),
            [LiteralHeredoc, Unquoted]
        );
        assert_eq!(contexts("cat <<< @"), [Unquoted]);
        // In an expanding body a backslash before a value is taken out of its way.
        let s = spots("cat <<EOF\n\\@\nEOF");
        assert_eq!((s[0].context, s[0].escaped), (DoubleQuoted, true));
        assert!(!spots("cat <<'EOF'\n\\@\nEOF")[0].escaped);
        // A backslash quotes a delimiter too; a `$` belongs to it.
        assert_eq!(
            contexts("cat <<\\E\n@\nE\necho @"),
            [LiteralHeredoc, Unquoted]
        );
        assert_eq!(contexts("cat <<'E'$\nhi\nE$\necho @"), [Unquoted]);
        assert_eq!(
            contexts("a <<A; b <<'B'\n@\nA\n@\nB\n@"),
            [DoubleQuoted, LiteralHeredoc, Unquoted]
        );
    }

    #[test]
    fn a_second_shell_is_named() {
        let second = |t: &str| {
            spots(t)
                .into_iter()
                .map(|s| s.second_shell)
                .collect::<Vec<_>>()
        };
        assert_eq!(second("sh -c 'echo @'"), [Some("sh -c".to_string())]);
        assert_eq!(
            second("/bin/bash -lc \"echo @\""),
            [Some("/bin/bash -c".to_string())]
        );
        assert_eq!(second("eval \"x=@\""), [Some("eval".to_string())]);
        assert_eq!(second("echo 'sh -c @'; echo @"), [None, None]);
        assert_eq!(second("bash script.sh @"), [None]);
        assert_eq!(second("ssh host 'ls @'"), [Some("ssh".to_string())]);
    }

    #[test]
    fn references_fit_their_context() {
        let r = |t: &str| spots(t)[0].reference("V");
        assert_eq!(r("echo @").as_deref(), Some("\"${V}\""));
        assert_eq!(r("echo \"@\"").as_deref(), Some("${V}"));
        assert_eq!(r("echo '@'").as_deref(), Some("'\"${V}\"'"));
        assert_eq!(r("cat <<'E'\n@\nE"), None);
        assert_eq!(r("echo \\@").as_deref(), Some("\n\"${V}\""));
    }
}
