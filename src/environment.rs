//! The environment a node's child process sees, and which variables are build inputs.
//!
//! A node declares the variables it reads (`"reads_env": ["TZ"]`): their names and
//! values go into its key, and a child gets them even in strict mode. Whatever a node
//! declares, pflow's own configuration and credentials (`PFLOW_*`, the LLM providers'
//! keys) are withheld from children that did not declare them: a shell step has no
//! business with the remote cache token. Strict mode (`--strict-env`,
//! `PFLOW_STRICT_ENV=1`, or `"strict_env": true` in the workflow) goes further, as
//! Bazel's strict action env and Turborepo's strict mode do: a child gets only [`BASE`],
//! the declared variables, and the node's own `env` bindings.
//!
//! A primitive: it depends on nothing else in pflow but [`crate::secrets`].

use std::ffi::{OsStr, OsString};
use std::process::Command;

/// What every child gets in strict mode when pflow has it: finding programs, a home,
/// the locale and time zone, temp files, the terminal, the user. Not part of any key
/// (as Turborepo's pass-through variables are not): declare one to key on it.
pub const BASE: [&str; 7] = ["PATH", "HOME", "LANG", "TZ", "TMPDIR", "TERM", "USER"];

/// The variable that turns strict mode on for a build.
pub const STRICT_ENV: &str = "PFLOW_STRICT_ENV";

/// Credentials pflow reads for itself outside its own `PFLOW_` prefix (the LLM
/// providers'). A test in `llm` checks that every key variable it reads is here.
pub const PROVIDER_CREDENTIALS: [&str; 3] = [
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "OPENAI_API_KEY",
];

/// Is `name` one of pflow's own variables, withheld from a child that did not declare
/// it? All of `PFLOW_*` (the cache and remote cache with its token, the home of saved
/// workflows, models, limits: settings of this pflow, not inputs of a step), and the
/// LLM providers' credentials.
pub fn is_withheld(name: &str) -> bool {
    name.starts_with("PFLOW_") || PROVIDER_CREDENTIALS.contains(&name)
}

/// Is `name` a portable environment variable name (`[A-Za-z_][A-Za-z0-9_]*`)?
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Does pflow's environment ask for strict mode (`PFLOW_STRICT_ENV=1`, `true`, `yes`)?
pub fn strict_from_env() -> bool {
    std::env::var(STRICT_ENV)
        .map(|v| matches!(v.trim().to_lowercase().as_str(), "1" | "true" | "yes"))
        .unwrap_or(false)
}

/// May the value of a declared variable be recorded, even as a short digest? Not when
/// its name looks like a credential, nor when it is a URL carrying a password
/// (`postgres://user:pw@host/db`): a 64-bit digest of a weak password can be checked
/// against guesses.
pub fn is_secret(name: &str, value: &OsStr) -> bool {
    if crate::secrets::is_secret_name(name) {
        return true;
    }
    url_password(&value.to_string_lossy()).is_some()
}

/// The password of a URL that carries one in its userinfo (`scheme://user:pw@host`).
pub fn url_password(value: &str) -> Option<&str> {
    let (_, rest) = value.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (userinfo, _) = authority.rsplit_once('@')?;
    userinfo.split_once(':').map(|(_, pw)| pw)
}

/// What a node's child process may see.
#[derive(Debug, Clone, Copy)]
pub struct ChildEnv<'a> {
    /// The variables the node declares (`reads_env`).
    pub declared: &'a [String],
    /// Strict mode: only [`BASE`] and the declared variables.
    pub strict: bool,
    /// The values of the templates in a shell command, as the variables its text refers
    /// to (`Template::resolve_shell`): set in every mode.
    pub values: &'a [(String, String)],
}

impl ChildEnv<'_> {
    /// Nothing declared, not strict: pflow's environment minus its own variables.
    pub const LOOSE: ChildEnv<'static> = ChildEnv {
        declared: &[],
        strict: false,
        values: &[],
    };

    fn declares(&self, name: &str) -> bool {
        self.declared.iter().any(|d| d == name)
    }

    /// Set up `cmd`'s environment (before the node's own `env` bindings are added).
    pub fn apply(&self, cmd: &mut Command) {
        self.apply_inherited(cmd);
        for (name, value) in self.values {
            cmd.env(name, value);
        }
    }

    fn apply_inherited(&self, cmd: &mut Command) {
        if self.strict {
            cmd.env_clear();
            let names = BASE
                .iter()
                .copied()
                .chain(self.declared.iter().map(|s| s.as_str()));
            for name in names {
                if let Some(v) = std::env::var_os(name) {
                    cmd.env(name, v);
                }
            }
            return;
        }
        for name in withheld_present() {
            if !name.to_str().is_some_and(|n| self.declares(n)) {
                cmd.env_remove(name);
            }
        }
    }
}

/// pflow's own variables present in its environment, found once: usually none but
/// `PFLOW_HOME`, so a spawn removes a handful of names rather than scanning the whole
/// environment each time.
fn withheld_present() -> &'static [OsString] {
    static PRESENT: std::sync::OnceLock<Vec<OsString>> = std::sync::OnceLock::new();
    PRESENT.get_or_init(|| {
        std::env::vars_os()
            .map(|(k, _)| k)
            .filter(|k| k.to_str().is_some_and(is_withheld))
            .collect()
    })
}

/// pflow's home: `PFLOW_HOME`, else `~/.pflow` (saved workflows, MCP servers).
pub fn pflow_home() -> std::path::PathBuf {
    use std::path::PathBuf;
    if let Some(h) = std::env::var_os("PFLOW_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".pflow"))
        .unwrap_or_else(|| PathBuf::from(".pflow"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["TZ", "_X", "DATABASE_URL", "a1"] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "${X}", "A=B", "É"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn pflows_own_variables_are_withheld() {
        for name in [
            "PFLOW_REMOTE_CACHE_TOKEN",
            "PFLOW_REMOTE_CACHE",
            "PFLOW_HOME",
            "ANTHROPIC_API_KEY",
            "OPENAI_API_KEY",
        ] {
            assert!(is_withheld(name), "{name}");
        }
        for name in [
            "PATH",
            "HOME",
            "GITHUB_TOKEN",
            "ANTHROPIC_BASE_URL",
            "PFLOWX",
        ] {
            assert!(!is_withheld(name), "{name}");
        }
    }

    #[test]
    fn secrets_by_name_or_by_a_password_in_a_url() {
        let s = |n: &str, v: &str| is_secret(n, OsStr::new(v));
        assert!(s("DB_PASSWORD", "x"));
        assert!(s("API_KEY", ""));
        assert!(s("DATABASE_URL", "postgres://app:hunter2@db:5432/app"));
        assert!(!s("DATABASE_URL", "postgres://db:5432/app"));
        assert!(!s("DATABASE_URL", "postgres://app@db/app"));
        // An `@` after the host is not userinfo.
        assert!(!s("URL", "https://example.com/a:b@c"));
        assert!(!s("TZ", "Europe/Paris"));
        assert_eq!(
            url_password("postgres://app:hunter2@db:5432/app"),
            Some("hunter2")
        );
        assert_eq!(url_password("https://example.com/a:b@c"), None);
    }
}
