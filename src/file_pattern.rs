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
            // A literal path also covers what is under it, when it is a directory.
            None => {
                let under = path.strip_prefix(self.text.as_str());
                self.text == path || under.is_some_and(|rest| rest.starts_with('/'))
            }
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
        self.expand_with(false)
    }

    /// [`FilePattern::expand`] for a file read: a directory, declared literally or
    /// matched by a glob ending in `**` (`src/**`, as gitignore means it), names every
    /// file under it, as `src/**/*` would (names starting with a dot skipped, linked
    /// directories not entered). Named as a path, a directory's files would never reach
    /// the key: an edit inside it would be served the old result.
    pub fn expand_reads(&self) -> Result<Vec<String>, String> {
        self.expand_with(true)
    }

    /// The directories of a `dir/**` declaration (`dir`, itself a path or a glob).
    fn tree_dirs(&self) -> Option<&str> {
        match self.text.as_str() {
            "**" => Some("."),
            text => text.strip_suffix("/**"),
        }
    }

    /// When a read of this names every file under a directory ([`Self::expand_reads`]),
    /// the glob of those files at any depth (`src/**/*`): what a watch must see, and
    /// what no record of the files it named covers (one added since).
    pub fn tree_glob(&self) -> Option<String> {
        let dirs = match self.tree_dirs() {
            Some(dirs) => dirs,
            None if !self.is_glob() && Self::local_path(&self.text).is_dir() => &self.text,
            None => return None,
        };
        Some(format!("{dirs}/**/*"))
    }

    fn expand_with(&self, into_dirs: bool) -> Result<Vec<String>, String> {
        // `dir/**` read: the directories `dir` names, each for every file under it.
        let (text, into_dirs) = match self.tree_dirs() {
            Some(dirs) if into_dirs => (dirs, true),
            _ => (self.text.as_str(), into_dirs && self.glob.is_none()),
        };
        if !text.contains(GLOB_CHARS) {
            let local = Self::local_path(text);
            if !(into_dirs && local.is_dir()) {
                // `dir/**` where `dir` is no directory names no file.
                let named = text == self.text;
                return Ok(named.then(|| self.text.clone()).into_iter().collect());
            }
            let mut out = Vec::new();
            self.files_under(&local, text, &mut out)?;
            out.sort();
            return Ok(out);
        }
        let mut out = Vec::new();
        // A file whose name holds glob characters (`report[1].txt`) is itself what a
        // declaration of that name means, whatever else the glob matches.
        if !into_dirs && Self::local_path(text).is_file() {
            out.push(text.to_string());
        }
        let home = home_prefix(text);
        let pattern = match &home {
            Some(h) => format!("{h}{}", &text[1..]),
            None => text.to_string(),
        };
        let entries = glob::glob_with(&pattern, match_options())
            .map_err(|e| format!("invalid glob '{}': {e}", self.text))?;
        for entry in entries {
            let path = entry.map_err(|e| {
                format!(
                    "cannot expand '{}': cannot read '{}': {}",
                    self.text,
                    e.path().display(),
                    e.error()
                )
            })?;
            let wanted = match into_dirs {
                true => path.is_dir(),
                false => path.is_file(),
            };
            if !wanted {
                continue;
            }
            let text = path.to_string_lossy();
            let shown = match &home {
                Some(h) => match text.strip_prefix(h.as_str()) {
                    Some(rest) => format!("~{rest}"),
                    None => text.into_owned(),
                },
                None => normalize(&text),
            };
            match into_dirs {
                true => self.files_under(&path, &shown, &mut out)?,
                false => out.push(shown),
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Every regular file under `dir` (shown under `shown`), but for names starting with
    /// a dot; a linked directory is not entered (it may lead back up).
    fn files_under(&self, dir: &Path, shown: &str, out: &mut Vec<String>) -> Result<(), String> {
        let cannot = |e: std::io::Error| {
            format!(
                "cannot expand '{}': cannot read '{}': {e}",
                self.text,
                dir.display()
            )
        };
        for entry in std::fs::read_dir(dir).map_err(cannot)? {
            let entry = entry.map_err(cannot)?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let child = match shown {
                "." => name.to_string(),
                _ => format!("{shown}/{name}"),
            };
            match entry.file_type().map_err(cannot)? {
                t if t.is_dir() => self.files_under(&path, &child, out)?,
                _ if path.is_file() => out.push(child),
                _ => {}
            }
        }
        Ok(())
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
        std::fs::write(dir.path().join("report[1].txt"), "x").unwrap();
        std::fs::write(dir.path().join("report1.txt"), "x").unwrap();
        let named = p(&format!("{root}/report[1].txt")).expand_reads().unwrap();
        let want = [
            format!("{root}/report1.txt"),
            format!("{root}/report[1].txt"),
        ];
        assert_eq!(
            named, want,
            "the file of that very name, and what the glob matches"
        );
    }

    #[test]
    fn a_directory_read_names_every_file_under_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_string_lossy().into_owned();
        std::fs::create_dir_all(dir.path().join("src/sub/.git")).unwrap();
        for f in [
            "src/a.txt",
            "src/sub/b.txt",
            "src/.env",
            "src/sub/.git/c",
            "top.txt",
        ] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        let want = [format!("{root}/src/a.txt"), format!("{root}/src/sub/b.txt")];
        for declared in ["src", "src/", "src/**"] {
            let found = p(&format!("{root}/{declared}")).expand_reads().unwrap();
            assert_eq!(found, want, "{declared}");
        }
        // Written files stay as declared: a directory there is an error of its own.
        let src = p(&format!("{root}/src"));
        assert_eq!(src.expand().unwrap(), [format!("{root}/src")]);
        assert!(p(&format!("{root}/src/*")).expand_reads().unwrap().len() == 1);
        assert!(src.matches(&format!("{root}/src/sub/b.txt")));
        assert!(!src.matches(&format!("{root}/srcs/b.txt")));
        assert!(p("src/**").matches("src/sub/b.txt"));
        let tree = format!("{root}/src/**/*");
        assert_eq!(src.tree_glob(), Some(tree.clone()));
        assert_eq!(p(&format!("{root}/src/**")).tree_glob(), Some(tree));
        assert_eq!(p(&format!("{root}/top.txt")).tree_glob(), None);
        assert_eq!(p("src/*").tree_glob(), None);
    }
}
