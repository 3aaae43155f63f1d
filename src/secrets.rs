//! Secrets: which names hold credentials, and keeping their values out of text.
//!
//! Used wherever pflow shows, stores or sends something that may carry a credential:
//! the workflow and errors a repair model is shown, the params a saved workflow records
//! for its last run, the header values an HTTP node keeps out of its messages. It
//! depends on nothing else in pflow, so any module may use it.

/// What a secret value is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Values shorter than this are not scrubbed by value: replacing them everywhere would
/// blank out ordinary words.
pub const MIN_SECRET_LEN: usize = 4;

/// Does a param or input name look like it holds a secret?
pub fn is_secret_name(name: &str) -> bool {
    const WORDS: [&str; 7] = [
        "key",
        "token",
        "secret",
        "password",
        "passwd",
        "auth",
        "credential",
    ];
    // The bytes a word starts with, made from the words.
    const STARTS: [bool; 256] = {
        let mut starts = [false; 256];
        let mut i = 0;
        while i < WORDS.len() {
            starts[WORDS[i].as_bytes()[0] as usize] = true;
            i += 1;
        }
        starts
    };
    // Asked for every param of every node while keys are built: no allocation for the
    // usual ASCII names, and one pass, each place tried only as the words its letter
    // starts (each word against every place was 3% of a worker's instructions).
    if name.is_ascii() {
        let bytes = name.as_bytes();
        let at = |i: usize, w: &str| {
            bytes
                .get(i..i + w.len())
                .is_some_and(|b| b.eq_ignore_ascii_case(w.as_bytes()))
        };
        return bytes.iter().enumerate().any(|(i, b)| {
            let b = b.to_ascii_lowercase();
            STARTS[usize::from(b)]
                && WORDS
                    .iter()
                    .any(|w| w.as_bytes().first() == Some(&b) && at(i, w))
        });
    }
    let n = name.to_lowercase();
    WORDS.iter().any(|w| n.contains(w))
}

/// Does an HTTP header (its lowercase name) carry a credential? A narrower list than
/// [`is_secret_name`], as the HTTP node has always used for its error messages.
pub fn is_secret_header(name: &str) -> bool {
    matches!(name, "authorization" | "proxy-authorization" | "cookie")
        || ["key", "token", "secret", "password"]
            .iter()
            .any(|w| name.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_redacted_in_every_string_and_key_it_holds() {
        let r = Redactor {
            values: vec!["hunter2-pw".to_string()],
            learned: Default::default(),
        };
        let v = serde_json::json!({
            "said": "pw hunter2-pw",
            "list": [1, "hunter2-pw", {"hunter2-pw": true}],
            "n": 7
        });
        assert_eq!(
            r.scrub_value(&v),
            serde_json::json!({
                "said": "pw <redacted>",
                "list": [1, "<redacted>", {"<redacted>": true}],
                "n": 7
            })
        );
        assert!(r.finds_in_value(&v));
        assert!(
            r.finds_in_value(&serde_json::json!([{"hunter2-pw": 1}])),
            "a key"
        );
        assert!(!r.finds_in_value(&serde_json::json!({"said": "pw", "n": 7})));
        let none = Redactor::default();
        assert_eq!(none.scrub_value(&v), v);
        assert!(!none.finds_in_value(&v));
    }

    #[test]
    fn names_and_headers() {
        for secret in [
            "api_key",
            "GITHUB_TOKEN",
            "Authorization",
            "db_passwd",
            "creds_credential",
        ] {
            assert!(is_secret_name(secret), "{secret}");
        }
        for plain in ["url", "command", "name", "message"] {
            assert!(!is_secret_name(plain), "{plain}");
        }
        // Names beyond ASCII are compared lowercased too.
        assert!(is_secret_name("Schlüssel_TOKEN") && !is_secret_name("Größe"));
        for header in ["authorization", "cookie", "x-api-key", "x-auth-token"] {
            assert!(is_secret_header(header), "{header}");
        }
        // Narrower than param names: kept as the HTTP node has always had it.
        assert!(!is_secret_header("x-passwd") && is_secret_name("x-passwd"));
    }

    proptest::proptest! {
        // The one-pass test agrees with the plain one: any word, any case, anywhere.
        #[test]
        fn a_name_is_secret_when_it_holds_a_word_in_any_case(
            name in "([kK][eE]?[yY]?|[tT][oO][kK][eE][nN]|[sS][eE][cC][rR][eE][tT]|[pP][aA][sS][sS]([wW][oO]?[rR]?[dD])?|[aA][uU][tT][hH]|[cC][rR][eE][dD][eE][nN][tT][iI][aA][lL]|[a-zA-Z_.-]){0,6}"
        ) {
            let lower = name.to_ascii_lowercase();
            let plain = ["key", "token", "secret", "password", "passwd", "auth", "credential"]
                .iter()
                .any(|w| lower.contains(w));
            proptest::prop_assert_eq!(is_secret_name(&name), plain, "{}", name);
        }
    }

    #[test]
    fn a_value_learned_by_one_clone_is_redacted_by_all() {
        let shown = Redactor::new(vec!["known-secret".to_string()]);
        let runner = shown.clone();
        assert_eq!(shown.scrub("minted-later"), "minted-later");
        runner.learn("minted-later\nsecond-line");
        runner.learn("abc");
        assert_eq!(
            shown.scrub("known-secret, minted-later, second-line, abc"),
            "<redacted>, <redacted>, <redacted>, abc"
        );
        assert!(shown.finds_in(b"x second-line y"));
        // Its URL spelling (the newline as `%0A`) is the longest form looked for.
        assert_eq!(shown.longest(), "minted-later%0Asecond-line".len());
        assert!(shown.finds_in(b"GET http://h/minted-later%0Asecond-line"));
        assert!(!Redactor::default().finds_in(b"minted-later"));
    }

    #[test]
    fn a_long_secret_cut_at_either_end_or_escaped_is_redacted() {
        let r = Redactor::new(vec![
            "eyJhbGciOiJIUzI1NiJ9.payload-part.signature-part".to_string(),
            "pa\"ss\\wd-long-enough".to_string(),
        ]);
        // A preview cut short, a tail cut at its start.
        assert_eq!(
            r.scrub("value: \"eyJhbGciOiJIUzI1NiJ9.pay...\""),
            "value: \"<redacted>...\""
        );
        assert_eq!(r.scrub("...d-part.signature-part\n"), "...<redacted>\n");
        // JSON and debug spellings.
        assert_eq!(
            r.scrub("{\"p\":\"pa\\\"ss\\\\wd-long-enough\"}"),
            "{\"p\":\"<redacted>\"}"
        );
        // Short pieces and other text stay.
        assert_eq!(r.scrub("eyJhbGciOi and payload"), "eyJhbGciOi and payload");
        // Not a char boundary problem with a multibyte secret cut anywhere.
        let m = Redactor::new(vec!["ééééééééééééééééééééé".to_string()]);
        assert_eq!(m.scrub("x ééééééééé y"), "x <redacted> y");
    }

    #[test]
    fn scrubs_by_value() {
        let secrets = Redactor::new(vec!["sekrit-value".to_string(), String::new()]);
        assert_eq!(
            secrets.scrub("got Bearer sekrit-value back"),
            "got Bearer <redacted> back"
        );
    }
}

/// The secret values of one command, replaced by value in everything it prints or
/// keeps about a run (errors, reasons, warnings). Its `Debug` shows how many, never what.
///
/// Most values are known before the build starts; a value a step produces becomes one
/// when another binds it into a secret param (a shell `env` value made from an upstream
/// output), and is [learned](Redactor::learn) then. Clones share what is learned: every
/// part of a build that redacts holds a clone of one redactor.
#[derive(Clone, Default)]
pub struct Redactor {
    values: Vec<String>,
    learned: std::sync::Arc<std::sync::RwLock<Vec<String>>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Redactor({} values, {} learned)",
            self.values.len(),
            self.learned.read().map_or(0, |l| l.len())
        )
    }
}

/// The other spellings of `secret` that a message may hold when it names a URL the
/// secret went into: percent-encoded as a URL's path has it (`a b` as `a%20b`), and,
/// when at least [`LOWERED_MIN`] characters long, in lower case (a host name is shown
/// lower-cased). Only those that differ from it.
pub fn url_spellings(secret: &str) -> Vec<String> {
    let mut encoded = String::with_capacity(secret.len());
    for b in secret.bytes() {
        // What the URL standard escapes in a path; `#` and `?` end it instead.
        let escaped =
            b <= b' ' || b >= 0x7f || matches!(b, b'"' | b'<' | b'>' | b'`' | b'{' | b'}');
        match escaped {
            true => encoded.push_str(&format!("%{b:02X}")),
            false => encoded.push(char::from(b)),
        }
    }
    let lowered = secret.to_ascii_lowercase();
    let lowered = (secret.chars().count() >= LOWERED_MIN).then_some(lowered);
    let mut out: Vec<String> = [Some(encoded), lowered]
        .into_iter()
        .flatten()
        .filter(|v| v != secret)
        .collect();
    out.dedup();
    out
}

/// A secret's lower-case spelling is looked for only from this length: a short one
/// (`TRUE`) would garble ordinary text.
const LOWERED_MIN: usize = 8;

/// A secret and, when it has several lines (a PEM key), each of its lines: output read
/// a line at a time (`-v`) never holds it whole. Values shorter than [`MIN_SECRET_LEN`]
/// are left out: redacting them would garble ordinary text.
/// Each form is also looked for as JSON and as a debug string spell it (escaped, without
/// the quotes), when that differs: a secret with a quote, a backslash or a control
/// character in it is shown so in a JSON document or an error's value preview; and as a
/// URL spells it ([`url_spellings`]), for an error that names the URL it went into.
fn with_lines(v: String) -> impl Iterator<Item = String> {
    let lines: Vec<String> = match v.contains('\n') {
        true => v.lines().map(str::to_string).collect(),
        false => Vec::new(),
    };
    std::iter::once(v)
        .chain(lines)
        .filter(|v| v.chars().count() >= MIN_SECRET_LEN)
        .flat_map(|v| {
            let unquoted = |q: String| q.get(1..q.len().saturating_sub(1)).map(str::to_string);
            let json = serde_json::to_string(&v).ok().and_then(unquoted);
            let debug = unquoted(format!("{v:?}"));
            let escaped: Vec<String> = [json, debug]
                .into_iter()
                .flatten()
                .chain(url_spellings(&v))
                .filter(|e| *e != v)
                .collect();
            std::iter::once(v).chain(escaped)
        })
}

/// A secret at least this long (bytes) is also found cut: text that holds its first or
/// its last [`PROBE`] bytes holds a piece of it (a value preview cut to 60 characters,
/// an output tail cut at its start), and that piece is replaced.
const CUT_MIN: usize = 20;
const PROBE: usize = 16;

/// Replace the pieces of `secret` in `text` that begin with its first [`PROBE`] bytes
/// or end with its last: each as long as it goes on to match.
fn scrub_cut(text: &mut String, secret: &str) {
    if secret.len() < CUT_MIN {
        return;
    }
    let floor = |mut i: usize| {
        while !secret.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let ceil = |mut i: usize| {
        while !secret.is_char_boundary(i) {
            i += 1;
        }
        i
    };
    let head = &secret[..floor(PROBE)];
    let tail = &secret[ceil(secret.len() - PROBE)..];
    // Pieces that begin as the secret begins, matched forwards.
    let mut from = 0;
    while let Some(at) = text
        .get(from..)
        .and_then(|t| t.find(head))
        .map(|i| i + from)
    {
        let same = text.as_bytes()[at..]
            .iter()
            .zip(secret.as_bytes())
            .take_while(|(a, b)| a == b)
            .count();
        let mut end = at + same;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.replace_range(at..end, REDACTED);
        from = at + REDACTED.len();
    }
    // Pieces that end as the secret ends, matched backwards.
    let mut from = 0;
    while let Some(at) = text
        .get(from..)
        .and_then(|t| t.find(tail))
        .map(|i| i + from)
    {
        let end = at + tail.len();
        let same = text.as_bytes()[..end]
            .iter()
            .rev()
            .zip(secret.as_bytes().iter().rev())
            .take_while(|(a, b)| a == b)
            .count();
        let mut start = end - same;
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text.replace_range(start..end, REDACTED);
        from = start + REDACTED.len();
    }
}

/// This process's variables whose names look secret, with their values. Not
/// `std::env::vars`, which panics at a variable that is not UTF-8 (any variable, a home
/// folder's name, say): such a name or value is read with stand-ins for its bad bytes
/// (so a value is still redacted from text that holds it read the same way).
pub fn secret_variables() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().filter_map(|(name, value)| {
        let name = name.to_string_lossy();
        is_secret_name(&name).then(|| (name.into_owned(), value.to_string_lossy().into_owned()))
    })
}

impl Redactor {
    /// `values`, plus the value of every variable of this process whose name looks
    /// secret (an API key a command may print from its environment). Values shorter than
    /// [`MIN_SECRET_LEN`] are ignored: redacting them would garble ordinary text.
    pub fn new(values: impl IntoIterator<Item = String>) -> Redactor {
        let env = secret_variables().map(|(_, v)| v);
        let mut values: Vec<String> = values.into_iter().chain(env).flat_map(with_lines).collect();
        // The longest first, so a secret that contains another is replaced whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Redactor {
            values,
            learned: Default::default(),
        }
    }

    /// Treat `value` as a secret from now on, in this redactor and all its clones.
    pub fn learn(&self, value: &str) {
        let fresh: Vec<String> = with_lines(value.to_string())
            .filter(|v| !self.values.contains(v))
            .collect();
        if fresh.is_empty() {
            return;
        }
        let mut learned = self.learned.write().unwrap_or_else(|e| e.into_inner());
        for v in fresh {
            // Kept longest first: the values of one length are a short run to look in.
            let at = learned.partition_point(|l| l.len() > v.len());
            let same = learned[at..].iter().take_while(|l| l.len() == v.len());
            if !same.clone().any(|l| *l == v) {
                learned.insert(at, v);
            }
        }
    }

    /// Call `f` with every value looked for, the longest first (those known from the
    /// start and those learned merged), while no value can be learned.
    fn with_values<T>(&self, f: impl FnOnce(&mut dyn Iterator<Item = &String>) -> T) -> T {
        let learned = self.learned.read().unwrap_or_else(|e| e.into_inner());
        if learned.is_empty() {
            return f(&mut self.values.iter());
        }
        let (mut a, mut b) = (self.values.iter().peekable(), learned.iter().peekable());
        let mut merged = std::iter::from_fn(|| match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x.len() >= y.len() => a.next(),
            (Some(_), Some(_)) | (None, _) => b.next(),
            (Some(_), None) => a.next(),
        });
        f(&mut merged)
    }

    /// `text` with every secret value replaced, and every piece of a long one cut at
    /// its start or its end.
    pub fn scrub(&self, text: &str) -> String {
        self.with_values(|values| {
            let mut out = text.to_string();
            let mut long = Vec::new();
            for s in values {
                if !s.is_empty() && out.contains(s.as_str()) {
                    out = out.replace(s.as_str(), REDACTED);
                }
                if s.len() >= CUT_MIN {
                    long.push(s);
                }
            }
            for s in long {
                scrub_cut(&mut out, s);
            }
            out
        })
    }

    /// `value` with every secret value replaced in its strings (and its keys).
    pub fn scrub_value(&self, value: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            _ if self.is_empty() => value.clone(),
            Value::String(s) => Value::String(self.scrub(s)),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.scrub_value(v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (self.scrub(k), self.scrub_value(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// Does any string (or key) in `value` hold a secret value? Nothing is copied: a
    /// build asks this of its outputs each time it records a no-op.
    pub fn finds_in_value(&self, value: &serde_json::Value) -> bool {
        use serde_json::Value;
        match value {
            _ if self.is_empty() => false,
            Value::String(s) => self.finds_in(s.as_bytes()),
            Value::Array(items) => items.iter().any(|v| self.finds_in_value(v)),
            Value::Object(map) => map
                .iter()
                .any(|(k, v)| self.finds_in(k.as_bytes()) || self.finds_in_value(v)),
            _ => false,
        }
    }

    /// Does `bytes` hold any secret value?
    pub fn finds_in(&self, bytes: &[u8]) -> bool {
        self.with_values(|values| {
            let mut found = false;
            for v in values {
                if !v.is_empty() && memchr::memmem::find(bytes, v.as_bytes()).is_some() {
                    found = true;
                    break;
                }
            }
            found
        })
    }

    /// The length in bytes of the longest value looked for (0: none).
    pub fn longest(&self) -> usize {
        self.with_values(|values| values.next().map_or(0, String::len))
    }

    /// Are there no values to look for?
    pub fn is_empty(&self) -> bool {
        self.with_values(|values| values.next().is_none())
    }
}
