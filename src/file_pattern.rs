//! A file path or glob a node declares it reads or writes (`"reads"`, `"writes"`, and the
//! path params of the file node types).
//!
//! Paths are compared as text after a lexical clean-up (`./a//b` is `a/b`; `..` is kept,
//! links are not followed), so two declarations name the same file when their cleaned
//! text is equal or one is a glob matching the other. Globs follow the shell: `*` and `?`
//! stay within one path component and skip names starting with a dot, `**` spans
//! components, `[abc]` is a class.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct FilePattern {
    /// The cleaned text (what comparisons and key components use).
    text: String,
    /// Set when the text has glob characters.
    glob: Option<glob::Pattern>,
}

const GLOB_CHARS: &[char] = &['*', '?', '['];

fn match_options() -> glob::MatchOptions {
    glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    }
}

impl FilePattern {
    /// A declared path or glob; the error says what is wrong with it.
    pub fn parse(raw: &str) -> Result<FilePattern, String> {
        if raw.trim().is_empty() {
            return Err("a declared path cannot be empty".into());
        }
        if raw.contains("${") {
            return Err(
                "templates are not supported in declared paths: write the path or a glob literally"
                    .into(),
            );
        }
        let text = normalize(raw);
        let glob = if text.contains(GLOB_CHARS) {
            Some(glob::Pattern::new(&text).map_err(|e| format!("invalid glob: {e}"))?)
        } else {
            None
        };
        Ok(FilePattern { text, glob })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn is_glob(&self) -> bool {
        self.glob.is_some()
    }

    /// Does this declaration cover `path` (a cleaned literal path)?
    pub fn matches(&self, path: &str) -> bool {
        match &self.glob {
            Some(g) => g.matches_with(path, match_options()),
            None => self.text == path,
        }
    }

    /// Could the two declarations name a common file? Exact for literal paths; two globs
    /// overlap when their text is equal or one matches the other's text (so `out/*.png`
    /// and `out/**/*.png` do, `out/a*` and `out/*b` are not seen to).
    pub fn overlaps(&self, other: &FilePattern) -> bool {
        match (self.is_glob(), other.is_glob()) {
            (false, _) => other.matches(&self.text),
            (true, false) => self.matches(&other.text),
            (true, true) => {
                self.text == other.text || self.matches(&other.text) || other.matches(&self.text)
            }
        }
    }

    /// The files it names now, sorted: a literal path names itself (whether it exists or
    /// not); a glob, the regular files it matches. Paths keep the declaration's form (a
    /// leading `~/` stays, so keys do not depend on the home directory).
    pub fn expand(&self) -> Result<Vec<String>, String> {
        let Some(_) = &self.glob else {
            return Ok(vec![self.text.clone()]);
        };
        let home = home_prefix(&self.text);
        let pattern = match &home {
            Some(h) => format!("{h}{}", &self.text[1..]),
            None => self.text.clone(),
        };
        let entries = glob::glob_with(&pattern, match_options())
            .map_err(|e| format!("invalid glob '{}': {e}", self.text))?;
        let mut out = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| {
                format!(
                    "cannot expand '{}': cannot read '{}': {}",
                    self.text,
                    e.path().display(),
                    e.error()
                )
            })?;
            if !path.is_file() {
                continue;
            }
            let shown = path.to_string_lossy();
            out.push(match &home {
                Some(h) => match shown.strip_prefix(h.as_str()) {
                    Some(rest) => format!("~{rest}"),
                    None => shown.into_owned(),
                },
                None => normalize(&shown),
            });
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Where the file of a literal declaration is on disk (`~/` expanded).
    pub fn local_path(text: &str) -> PathBuf {
        match (text.strip_prefix("~/"), std::env::var_os("HOME")) {
            (Some(rest), Some(home)) => Path::new(&home).join(rest),
            _ => PathBuf::from(text),
        }
    }
}

/// The home directory to put in place of a leading `~` (without a trailing `/`).
fn home_prefix(text: &str) -> Option<String> {
    if !text.starts_with("~/") {
        return None;
    }
    let home = std::env::var("HOME").ok()?;
    let home = home.trim_end_matches('/');
    (!home.is_empty()).then(|| home.to_string())
}

/// Lexical clean-up: no `.` components, no repeated or trailing `/`.
pub fn normalize(p: &str) -> String {
    let absolute = p.starts_with('/');
    let parts: Vec<&str> = p
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> FilePattern {
        FilePattern::parse(s).unwrap()
    }

    #[test]
    fn paths_are_cleaned_lexically() {
        assert_eq!(normalize("./out//x.txt"), "out/x.txt");
        assert_eq!(normalize("out/./x/"), "out/x");
        assert_eq!(normalize("/tmp/./a"), "/tmp/a");
        assert_eq!(normalize("../a"), "../a");
        assert_eq!(normalize("./"), ".");
    }

    #[test]
    fn globs_stay_within_a_component_unless_double_star() {
        assert!(p("docs/*.md").matches("docs/a.md"));
        assert!(!p("docs/*.md").matches("docs/sub/a.md"));
        assert!(!p("docs/*.md").matches("docs/.hidden.md"));
        assert!(p("docs/**/*.md").matches("docs/sub/a.md"));
        assert!(p("x.txt").matches("x.txt"));
        assert!(!p("x.txt").matches("y.txt"));
    }

    #[test]
    fn overlap_is_symmetric_for_a_glob_and_a_path() {
        let pairs = [
            ("out/*.png", "out/a.png", true),
            ("./out/a.png", "out/a.png", true),
            ("out/*.png", "out/a.jpg", false),
            ("out/*.png", "out/**/*.png", true),
            ("a.txt", "b.txt", false),
        ];
        for (a, b, want) in pairs {
            assert_eq!(p(a).overlaps(&p(b)), want, "{a} {b}");
            assert_eq!(p(b).overlaps(&p(a)), want, "{b} {a}");
        }
    }

    #[test]
    fn bad_declarations_say_why() {
        assert!(FilePattern::parse("").unwrap_err().contains("empty"));
        assert!(FilePattern::parse("${dir}/x")
            .unwrap_err()
            .contains("templates"));
        assert!(FilePattern::parse("a/[b").unwrap_err().contains("glob"));
    }

    #[test]
    fn a_glob_expands_to_the_sorted_files_it_matches() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_string_lossy().into_owned();
        for f in ["b.md", "a.md", "c.txt", ".h.md"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        std::fs::create_dir(dir.path().join("d.md")).unwrap();
        let found = p(&format!("{root}/*.md")).expand().unwrap();
        assert_eq!(found, [format!("{root}/a.md"), format!("{root}/b.md")]);
        let literal = p(&format!("{root}/none.txt")).expand().unwrap();
        assert_eq!(literal, [format!("{root}/none.txt")]);
    }
}
