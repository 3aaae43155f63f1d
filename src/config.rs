//! Settings files: `pflow.toml` in the project (the nearest one upwards from the current
//! directory) and the user's `config.toml` (`$PFLOW_CONFIG`, else
//! `$XDG_CONFIG_HOME/pflow/config.toml`, else `~/.config/pflow/config.toml`).
//!
//! Every setting is one of pflow's environment variables under a plain name
//! ([`SETTINGS`]), so the precedence is the one the variables already have, extended
//! downwards: a flag, then the variable, then the project file, then the user file, then
//! the default. Files are read once, before any work, and a value from a file is put in
//! the process environment only where the variable is unset; pflow never passes its own
//! variables to the commands it runs. Relative paths in a file mean the file's folder.
//! A secret (the remote cache's token) is refused in the project file, which is usually
//! committed: it belongs in the user file or the environment.

use std::path::{Path, PathBuf};

/// What a setting's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// A path, relative to the file that gives it.
    Path,
    /// A list of paths (a TOML array), joined with `:` as the variable takes them.
    Paths,
    Bool,
    /// A whole number of at least 1.
    Count,
}

/// One setting: its name in a file and the variable it stands for.
#[derive(Debug)]
pub struct Setting {
    pub key: &'static str,
    pub env: &'static str,
    pub kind: Kind,
    pub doc: &'static str,
    /// What applies when nothing sets it, in words.
    pub default: &'static str,
    /// Never shown, and refused in the project file.
    pub secret: bool,
}

const fn setting(key: &'static str, env: &'static str, kind: Kind, doc: &'static str) -> Setting {
    Setting {
        key,
        env,
        kind,
        doc,
        default: "none",
        secret: false,
    }
}

impl Setting {
    const fn or(self, default: &'static str) -> Setting {
        Setting { default, ..self }
    }
}

use crate::cache::remote;

/// The variables of settings that only commands read (the others are declared where
/// they are read).
pub const CACHE_DIR_ENV: &str = "PFLOW_CACHE_DIR";
pub const JOBS_ENV: &str = "PFLOW_JOBS";
pub const MAX_REPAIR_ATTEMPTS_ENV: &str = "PFLOW_MAX_REPAIR_ATTEMPTS";

/// Every setting, with its flag's variable.
pub static SETTINGS: &[Setting] = &[
    setting(
        "cache_dir",
        CACHE_DIR_ENV,
        Kind::Path,
        "the cache directory (--cache-dir)",
    )
    .or("./.pflow-cache"),
    setting(
        "jobs",
        JOBS_ENV,
        Kind::Count,
        "steps run at once, batch items too (--jobs)",
    )
    .or("the number of cores"),
    setting(
        "strict_env",
        crate::environment::STRICT_ENV,
        Kind::Bool,
        "children see only what their node declares (--strict-env)",
    )
    .or("false"),
    setting(
        "allow_write",
        crate::workspace::ALLOW_WRITE_ENV,
        Kind::Paths,
        "folders file nodes may change besides the workspace (--allow-write)",
    ),
    setting(
        "remote_cache",
        remote::URL_ENV,
        Kind::Text,
        "the remote cache URL (--remote-cache)",
    ),
    setting(
        "remote_cache_write",
        remote::WRITE_ENV,
        Kind::Bool,
        "upload results to the remote cache (--remote-cache-write)",
    )
    .or("false"),
    Setting {
        secret: true,
        ..setting(
            "remote_cache_token",
            remote::TOKEN_ENV,
            Kind::Text,
            "the remote cache's bearer token (user file only)",
        )
    },
    setting(
        "repair",
        crate::repair::MODE_ENV,
        Kind::Text,
        "repair failed builds: on, replay (proven patches only) or off (--no-repair)",
    )
    .or("on"),
    setting(
        "repair_model",
        crate::repair::MODEL_ENV,
        Kind::Text,
        "the model that repairs failed builds (--repair-model)",
    )
    .or(crate::llm::DEFAULT_MODEL),
    setting(
        "max_repair_attempts",
        MAX_REPAIR_ATTEMPTS_ENV,
        Kind::Count,
        "repair attempts per build (--max-repair-attempts)",
    )
    .or("3"),
    setting(
        "llm_model",
        crate::llm::MODEL_ENV,
        Kind::Text,
        "the default model of llm nodes",
    )
    .or(crate::llm::DEFAULT_MODEL),
    setting(
        "llm_prices",
        crate::llm::price::PRICES_ENV,
        Kind::Text,
        "USD per million tokens: model=INPUT/OUTPUT;...",
    )
    .or("the built-in list prices"),
];

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Environment,
    File(PathBuf),
    Default,
}

/// A settings file that could not be used: the file, the line, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// The values one file gives, as the variables take them.
#[derive(Debug, Default)]
struct FileValues {
    path: PathBuf,
    values: Vec<(&'static Setting, String)>,
}

impl FileValues {
    /// The value this file gives the setting of variable `env`.
    fn value(&self, env: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(s, _)| s.env == env)
            .map(|(_, v)| v.as_str())
    }
}

/// A URL as it may be shown: without a user name or password in it.
pub fn shown_url(text: &str) -> String {
    match reqwest::Url::parse(text) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        _ => text.to_string(),
    }
}

/// The project file and the user file, read and checked.
#[derive(Debug, Default)]
pub struct Files {
    project: Option<FileValues>,
    user: Option<FileValues>,
}

/// The project file: the nearest `pflow.toml` from `start` upwards.
pub fn project_file(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|d| d.join("pflow.toml"))
        .find(|p| p.is_file())
}

/// The user file, whether or not it exists.
pub fn user_file() -> Option<PathBuf> {
    let var = |n: &str| {
        std::env::var_os(n)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = var("PFLOW_CONFIG") {
        return Some(p);
    }
    let base = var("XDG_CONFIG_HOME").or_else(|| var("HOME").map(|h| h.join(".config")))?;
    Some(base.join("pflow").join("config.toml"))
}

/// Read both files (either may be absent).
pub fn load(cwd: &Path) -> Result<Files, ConfigError> {
    let project = match project_file(cwd) {
        Some(p) => Some(read(&p, true)?),
        None => None,
    };
    let user = match user_file().filter(|p| p.is_file()) {
        Some(p) => Some(read(&p, false)?),
        None => None,
    };
    Ok(Files { project, user })
}

impl Files {
    /// Put each file value in the environment where its variable is unset (the project
    /// file first). Call before anything reads the environment or starts a thread.
    ///
    /// The remote cache's token goes only where its owner sent it: when the project file
    /// names the remote (a cloned repository could name any server), a token from the
    /// user file or the environment is withheld, unless the user file or the
    /// environment names that same remote. Returns what to tell the user about it.
    pub fn apply(&self) -> Option<String> {
        // Set is set, UTF-8 or not: a file's value never replaces one of the user's.
        let unset = |name: &str| std::env::var_os(name).is_none_or(|v| v.is_empty());
        let user_url = self.user.as_ref().and_then(|f| f.value(remote::URL_ENV));
        let project_url = self.project.as_ref().and_then(|f| f.value(remote::URL_ENV));
        let env_url = std::env::var(remote::URL_ENV)
            .ok()
            .filter(|v| !v.is_empty());
        let withhold = match (env_url.as_deref(), project_url) {
            (None, Some(p)) => user_url != Some(p),
            _ => false,
        };
        for file in [&self.project, &self.user].into_iter().flatten() {
            for (s, value) in &file.values {
                if unset(s.env) {
                    std::env::set_var(s.env, value);
                }
            }
        }
        if withhold && !unset(remote::TOKEN_ENV) {
            std::env::remove_var(remote::TOKEN_ENV);
            return Some(format!(
                "warning: not sending the remote cache token to {}: that remote comes from the project's pflow.toml; name it in your user config or PFLOW_REMOTE_CACHE to trust it",
                crate::config::shown_url(project_url.unwrap_or_default())
            ));
        }
        None
    }

    /// Each setting's effective value and where it came from, as if [`Files::apply`]
    /// had not run (the environment is read for what was set before).
    pub fn effective(
        &self,
        env_before: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<(&'static Setting, Option<String>, Source)> {
        SETTINGS
            .iter()
            .map(|s| {
                if let Some(v) = env_before(s.env).filter(|v| !v.is_empty()) {
                    return (s, Some(v), Source::Environment);
                }
                for file in [&self.project, &self.user].into_iter().flatten() {
                    if let Some((_, v)) = file.values.iter().find(|(x, _)| x.key == s.key) {
                        return (s, Some(v.clone()), Source::File(file.path.clone()));
                    }
                }
                (s, None, Source::Default)
            })
            .collect()
    }
}

fn read(path: &Path, project: bool) -> Result<FileValues, ConfigError> {
    let fail = |line: Option<usize>, message: String| ConfigError {
        file: path.to_path_buf(),
        line,
        message,
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| fail(None, format!("cannot read it: {e}")))?;
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    type Table = std::collections::BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>>;
    let table: Table = toml::from_str(&text).map_err(|e| {
        let line = e.span().map(|s| line_of(s.start));
        fail(line, format!("not valid TOML: {}", e.message()))
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut values = Vec::new();
    for (key, value) in &table {
        let line = Some(line_of(key.span().start));
        let Some(s) = SETTINGS.iter().find(|s| s.key == key.get_ref()) else {
            let names = SETTINGS.iter().map(|s| s.key);
            let hint = crate::diagnostic::suggestion(key.get_ref(), names).unwrap_or_else(|| {
                format!(
                    "the settings are: {}",
                    SETTINGS
                        .iter()
                        .map(|s| s.key)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
            return Err(fail(
                line,
                format!("unknown setting '{}' ({hint})", key.get_ref()),
            ));
        };
        if s.secret && project {
            return Err(fail(
                line,
                format!(
                    "'{}' is a secret and this file is usually committed; set {} or put it in the user file ({})",
                    s.key,
                    s.env,
                    user_file().map(|p| p.display().to_string()).unwrap_or_else(|| "~/.config/pflow/config.toml".into())
                ),
            ));
        }
        let text = as_variable(s, value.get_ref(), dir)
            .map_err(|why| fail(line, format!("'{}' {why}", s.key)))?;
        values.push((s, text));
    }
    Ok(FileValues {
        path: path.to_path_buf(),
        values,
    })
}

/// A file value as its variable takes it, or why it cannot be one.
fn as_variable(s: &Setting, v: &toml::Value, dir: &Path) -> Result<String, String> {
    let path = |p: &str| -> String {
        let home = std::env::var_os("HOME").filter(|h| !h.is_empty());
        match (p.strip_prefix("~/"), home) {
            (Some(rest), Some(home)) => Path::new(&home).join(rest).display().to_string(),
            _ if Path::new(p).is_absolute() => p.to_string(),
            _ => dir.join(p).display().to_string(),
        }
    };
    let value = match (s.kind, v) {
        (Kind::Text, toml::Value::String(t)) => Ok(t.clone()),
        (Kind::Path, toml::Value::String(t)) => Ok(path(t)),
        (Kind::Paths, toml::Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(path).ok_or("must be a list of paths"))
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.join(":"))
            .map_err(str::to_string),
        (Kind::Bool, toml::Value::Boolean(b)) => Ok(if *b { "1" } else { "0" }.to_string()),
        (Kind::Count, toml::Value::Integer(n)) if *n >= 1 => Ok(n.to_string()),
        (Kind::Text | Kind::Path, _) => Err("must be a string".into()),
        (Kind::Paths, _) => Err("must be a list of paths, e.g. [\"../shared\"]".into()),
        (Kind::Bool, _) => Err("must be true or false".into()),
        (Kind::Count, _) => Err("must be a whole number of at least 1".into()),
    }?;
    // TOML can spell one (`\u0000`); no variable can hold it.
    if value.contains('\0') {
        return Err("must not hold a NUL character".into());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pflow.toml");
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    #[test]
    fn values_become_what_the_variables_take() {
        let (dir, p) = file("cache_dir = \"build/cache\"\njobs = 4\nstrict_env = true\nallow_write = [\"/tmp/x\", \"out\"]\n");
        let f = read(&p, true).unwrap();
        let got: Vec<(&str, String)> = f.values.iter().map(|(s, v)| (s.env, v.clone())).collect();
        let d = dir.path().display();
        assert_eq!(
            got,
            [
                ("PFLOW_ALLOW_WRITE", format!("/tmp/x:{d}/out")),
                ("PFLOW_CACHE_DIR", format!("{d}/build/cache")),
                ("PFLOW_JOBS", "4".to_string()),
                ("PFLOW_STRICT_ENV", "1".to_string()),
            ]
        );
    }

    #[test]
    fn problems_name_the_file_line_and_setting() {
        let (_d, p) = file("jobs = 2\ncache_dri = \"x\"\n");
        let e = read(&p, true).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(
            e.message
                .contains("unknown setting 'cache_dri' (did you mean 'cache_dir'?)"),
            "{e}"
        );
        let (_d, p) = file("jobs = 0\n");
        assert!(read(&p, true).unwrap_err().message.contains("at least 1"));
        let (_d, p) = file("jobs = [\n");
        assert!(read(&p, true)
            .unwrap_err()
            .message
            .contains("not valid TOML"));
        let (_d, p) = file("remote_cache_token = \"t0k3n\"\n");
        let e = read(&p, true).unwrap_err();
        assert!(e.message.contains("is a secret"), "{e}");
        assert!(read(&p, false).is_ok());
    }

    #[test]
    fn every_setting_is_one_of_pflows_variables() {
        for s in SETTINGS {
            assert!(
                s.env.starts_with("PFLOW_") && crate::environment::is_withheld(s.env),
                "{}",
                s.key
            );
        }
    }
}
