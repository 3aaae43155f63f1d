//! `pflow config`: each setting's effective value and where it comes from
//! ([`crate::config`]). Secrets show as set or not, never their value.

use super::{ExitCode, Result};
use crate::cli::OutputFormat;
use crate::config::{Setting, Source};
use crate::report::out_line;
use serde_json::json;

pub fn run(settings: &[(&Setting, Option<String>, Source)], format: OutputFormat) -> Result {
    let shown = |s: &Setting, v: &Option<String>| match v {
        Some(_) if s.secret => Some(crate::secrets::REDACTED.to_string()),
        Some(v) => Some(crate::config::shown_url(v)),
        None => None,
    };
    let source = |src: &Source, s: &Setting| match src {
        Source::Environment => format!("environment ({})", s.env),
        Source::File(p) => p.display().to_string(),
        Source::Default => "default".to_string(),
    };
    match format {
        OutputFormat::Json => {
            let items: Vec<_> = settings
                .iter()
                .map(|(s, v, src)| {
                    json!({"key": s.key, "env": s.env, "value": shown(s, v),
                           "default": s.default, "source": source(src, s),
                           "description": s.doc})
                })
                .collect();
            out_line(&serde_json::to_string_pretty(&items).unwrap_or_default());
        }
        OutputFormat::Text => {
            let width = settings
                .iter()
                .map(|(s, _, _)| s.key.len())
                .max()
                .unwrap_or(0);
            for (s, v, src) in settings {
                let value = shown(s, v).unwrap_or_else(|| s.default.to_string());
                out_line(&format!("{:<width$}  {value}  ({})", s.key, source(src, s)));
            }
        }
    }
    Ok(ExitCode::Ok)
}
