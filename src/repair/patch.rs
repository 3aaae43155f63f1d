//! Recorded repairs: RFC 6902 JSON Patch files under `<cache-dir>/repairs/`.
//!
//! A record names the digest of the workflow it applies to and the error signatures it
//! fixed, so the same broken workflow failing the same way replays it without asking a
//! model, and `pflow repair apply` can refuse a patch meant for another workflow.
//!
//! A patch file is input like any other (it may be truncated, hand-edited or hostile):
//! [`parse`] refuses anything that is not a well-formed record and says why, and
//! [`apply`] refuses operations that do not fit the workflow or would grow it without
//! bound, so no patch file can crash pflow.

use super::context::Signature;
use json_patch::PatchOperation;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatchRecord {
    pub version: u32,
    /// Digest of the canonical workflow the patch applies to.
    pub base_digest: String,
    pub repaired_digest: String,
    /// The workflow file as it was named on the command line (for `repair apply`).
    pub workflow: String,
    pub model: String,
    pub created_at: String,
    pub errors: Vec<Signature>,
    pub patch: json_patch::Patch,
    /// The build with the patch succeeded. Only proven records replay; pflow writes
    /// records only once they are, and a record written by hand (or by an older pflow,
    /// which recorded before the rebuild) without it is never replayed.
    pub proven: bool,
    /// Why a replay of this record no longer worked: it is kept to read, never replayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub demoted: Option<String>,
    /// The file the record was read from, so a failure to apply can name it; not part of
    /// the record itself.
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// Why bytes are not a patch record.
#[derive(Debug)]
pub enum PatchError {
    /// Not UTF-8 text; the offset of the first bad byte.
    NotUtf8 { offset: usize },
    /// Not JSON, or cut short.
    Json(serde_json::Error),
    /// JSON, but not an object.
    NotObject,
    /// A field that is missing or holds the wrong thing; `field` is its name, or
    /// `patch[i]` for one operation.
    Field { field: String, problem: String },
}

impl std::fmt::Display for PatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PatchError::NotUtf8 { offset } => {
                write!(f, "it is not UTF-8 text (bad byte at offset {offset})")
            }
            PatchError::Json(e) if e.is_eof() => {
                write!(f, "the file is empty or cut short ({e})")
            }
            PatchError::Json(e) => write!(f, "invalid JSON: {e}"),
            PatchError::NotObject => write!(f, "a patch record is a JSON object"),
            PatchError::Field { field, problem } => write!(f, "'{field}': {problem}"),
        }
    }
}

impl std::error::Error for PatchError {}

/// Hex digits in a BLAKE3 digest.
const DIGEST_LEN: usize = 64;

/// Read a patch record from a file's bytes; checks everything that can be checked
/// without the workflow it applies to.
pub fn parse(bytes: &[u8]) -> Result<PatchRecord, PatchError> {
    let text = std::str::from_utf8(bytes).map_err(|e| PatchError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    let doc: Value = serde_json::from_str(text).map_err(PatchError::Json)?;
    let Value::Object(top) = doc else {
        return Err(PatchError::NotObject);
    };
    // Field by field rather than one derived `Deserialize`: serde's errors do not say
    // which field was wrong ("invalid type: string, expected u32"), these do.
    Ok(PatchRecord {
        version: get(&top, "version")?,
        base_digest: digest(get(&top, "base_digest")?, "base_digest")?,
        repaired_digest: digest(get(&top, "repaired_digest")?, "repaired_digest")?,
        workflow: get(&top, "workflow")?,
        model: get(&top, "model")?,
        created_at: get(&top, "created_at")?,
        errors: get(&top, "errors")?,
        patch: operations(&top)?,
        proven: optional(&top, "proven")?.unwrap_or(false),
        demoted: optional(&top, "demoted")?,
        file: None,
    })
}

fn optional<T: DeserializeOwned>(
    top: &Map<String, Value>,
    name: &str,
) -> Result<Option<T>, PatchError> {
    match top.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => decode(name, v).map(Some),
    }
}

/// The `patch` array, each operation named by its index when it is malformed.
fn operations(top: &Map<String, Value>) -> Result<json_patch::Patch, PatchError> {
    let Value::Array(ops) = field(top, "patch")? else {
        return Err(PatchError::Field {
            field: "patch".into(),
            problem: "must be an array of JSON Patch operations".into(),
        });
    };
    let ops = ops
        .iter()
        .enumerate()
        .map(|(i, op)| decode(&format!("patch[{i}]"), op))
        .collect::<Result<_, _>>()?;
    Ok(json_patch::Patch(ops))
}

fn field<'a>(top: &'a Map<String, Value>, name: &str) -> Result<&'a Value, PatchError> {
    top.get(name).ok_or_else(|| PatchError::Field {
        field: name.to_string(),
        problem: "missing".into(),
    })
}

fn decode<T: DeserializeOwned>(name: &str, v: &Value) -> Result<T, PatchError> {
    T::deserialize(v).map_err(|e| PatchError::Field {
        field: name.to_string(),
        problem: e.to_string(),
    })
}

fn get<T: DeserializeOwned>(top: &Map<String, Value>, name: &str) -> Result<T, PatchError> {
    decode(name, field(top, name)?)
}

/// `text`, if it is a BLAKE3 hex digest as pflow writes them.
fn digest(text: String, field: &str) -> Result<String, PatchError> {
    let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if text.len() == DIGEST_LEN && text.bytes().all(hex) {
        return Ok(text);
    }
    // Enough of the value to recognise it, not a whole hostile file.
    let shown: String = text.chars().take(DIGEST_LEN + 8).collect();
    Err(PatchError::Field {
        field: field.to_string(),
        problem: format!(
            "must be {DIGEST_LEN} lowercase hex digits (a BLAKE3 digest), found {shown:?}"
        ),
    })
}

/// Digest of a workflow's IR, independent of formatting and key order.
pub fn workflow_digest(ir: &Value) -> String {
    crate::canonical::value_digest(ir).to_hex().to_string()
}

/// The first 12 characters of a digest, as shown to people. By characters, not bytes:
/// a record built in memory (not via [`parse`]) may hold any text.
fn short(digest: &str) -> String {
    digest.chars().take(12).collect()
}

pub fn repairs_dir(cache_root: &Path) -> PathBuf {
    crate::cache::layout::repairs_dir(cache_root)
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Record a proven repair (the build with it succeeded); returns the patch file's path.
/// `base` and `repaired` are the workflows with their secrets as placeholders, so a patch
/// file never holds a secret value.
pub fn record(
    cache_root: &Path,
    workflow: &str,
    base: &Value,
    repaired: &Value,
    errors: &[Signature],
    model: &str,
) -> std::io::Result<PathBuf> {
    let base_digest = workflow_digest(base);
    let record = PatchRecord {
        version: 2,
        base_digest: base_digest.clone(),
        repaired_digest: workflow_digest(repaired),
        workflow: workflow.to_string(),
        model: model.to_string(),
        created_at: now_rfc3339(),
        errors: errors.to_vec(),
        patch: json_patch::diff(base, repaired),
        proven: true,
        demoted: None,
        file: None,
    };
    let stamp = record.created_at.replace([':', '-'], "");
    let bytes = serde_json::to_vec_pretty(&record).map_err(std::io::Error::other)?;
    let dir = repairs_dir(cache_root);
    std::fs::create_dir_all(&dir)?;
    // Builds in other processes record at the same second: the name is claimed with
    // create_new (never an existing file), then filled atomically.
    for _ in 0..64 {
        let name = format!(
            "{}-{}-{:08x}.json",
            stamp.trim_end_matches('Z'),
            short(&base_digest),
            fastrand::u32(..)
        );
        let path = dir.join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(_) => {
                crate::fsutil::write_atomic(&path, &bytes)?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free patch file name"))
}

/// Mark a record as no longer working: it stays for people to read, never replays.
pub fn demote(record: &PatchRecord, why: &str) -> std::io::Result<()> {
    let Some(path) = &record.file else {
        return Ok(());
    };
    let mut r = record.clone();
    r.proven = false;
    r.demoted = Some(why.to_string());
    let bytes = serde_json::to_vec_pretty(&r).map_err(std::io::Error::other)?;
    crate::fsutil::write_atomic(path, &bytes)
}

pub fn load(path: &Path) -> Result<PatchRecord, String> {
    use std::io::Read;
    // A patch holds at most about the workflow it makes; twice the workflow limit leaves
    // room for paths, and stops `repair show /dev/zero` from reading forever.
    let limit = crate::source::max_workflow_bytes().saturating_mul(2);
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit.saturating_add(1)).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read patch '{}': {e}", path.display()))?;
    if bytes.len() as u64 > limit {
        return Err(format!(
            "patch '{}' is over the limit of {limit} bytes (twice PFLOW_MAX_WORKFLOW_BYTES)",
            path.display()
        ));
    }
    let mut record = parse(&bytes)
        .map_err(|e| format!("'{}' is not a pflow repair patch: {e}", path.display()))?;
    record.file = Some(path.to_path_buf());
    Ok(record)
}

/// All recorded patches, oldest first.
pub fn list(cache_root: &Path) -> Vec<(PathBuf, PatchRecord)> {
    let mut out: Vec<(PathBuf, PatchRecord)> = std::fs::read_dir(repairs_dir(cache_root))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| load(&p).ok().map(|r| (p, r)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The newest proven repair recorded for this exact workflow (with its secrets as
/// placeholders).
pub fn find_replay(cache_root: &Path, digest: &str) -> Option<(PathBuf, PatchRecord)> {
    list(cache_root)
        .into_iter()
        .rev()
        .find(|(p, r)| r.proven && r.base_digest == digest && mine(p))
}

/// Was the file written by this user? A replay runs what a patch says: one another user
/// put in a shared `repairs/` folder is never replayed (it can still be applied by hand).
fn mine(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.uid() == me)
}

/// JSON values one application may copy or move. A real repair copies or moves nothing
/// (`json_patch::diff` writes adds, removes and replaces); a chain of copies of the whole
/// document doubles it each time, so without a bound a few hundred bytes of patch
/// exhaust memory.
const MAX_MOVED_VALUES: usize = 2_000_000;

/// Deepest nesting of arrays and objects a patch may create: what serde_json, which
/// reads workflow files, accepts (it refuses a 128th level), so the result can be read
/// back, and walking it cannot exhaust the stack.
const MAX_NESTING: usize = 127;

/// Apply a record to a workflow; refuses when the workflow is not the one it was made for.
pub fn apply(record: &PatchRecord, base: &Value) -> Result<Value, String> {
    let digest = workflow_digest(base);
    if digest != record.base_digest {
        return Err(format!(
            "this patch was recorded for a different version of the workflow (its base digest is {}, the workflow's is {}); it was not applied",
            short(&record.base_digest),
            short(&digest)
        ));
    }
    let refused = |i: usize, op: &PatchOperation, why: &dyn std::fmt::Display| {
        let file = record
            .file
            .as_ref()
            .map(|p| format!(" '{}'", p.display()))
            .unwrap_or_default();
        format!(
            "the patch{file} does not apply: operation {i} ({} at '{}'): {why}",
            op_name(op),
            op.path()
        )
    };
    let mut doc = base.clone();
    let mut moved = 0;
    for (i, op) in record.patch.iter().enumerate() {
        admit(&doc, op, &mut moved).map_err(|why| refused(i, op, &why))?;
        // One operation at a time, on a copy that is dropped on failure. json_patch's
        // all-or-nothing `patch` undoes a failed patch itself and panics when the undo is
        // impossible (a move over the moved value's own parent).
        json_patch::patch_unsafe(&mut doc, std::slice::from_ref(op))
            .map_err(|e| refused(i, op, &e.kind))?;
    }
    Ok(doc)
}

fn op_name(op: &PatchOperation) -> &'static str {
    match op {
        PatchOperation::Add(_) => "add",
        PatchOperation::Remove(_) => "remove",
        PatchOperation::Replace(_) => "replace",
        PatchOperation::Move(_) => "move",
        PatchOperation::Copy(_) => "copy",
        PatchOperation::Test(_) => "test",
    }
}

/// Refuse an operation that would push the document past [`MAX_MOVED_VALUES`] or
/// [`MAX_NESTING`]; `moved` counts values copied or moved so far.
fn admit(doc: &Value, op: &PatchOperation, moved: &mut usize) -> Result<(), String> {
    let (value, from_doc) = match op {
        PatchOperation::Add(o) => (&o.value, false),
        PatchOperation::Replace(o) => (&o.value, false),
        PatchOperation::Move(o) => match doc.pointer(o.from.as_str()) {
            Some(v) => (v, true),
            None => return Ok(()), // json_patch reports the bad pointer
        },
        PatchOperation::Copy(o) => match doc.pointer(o.from.as_str()) {
            Some(v) => (v, true),
            None => return Ok(()),
        },
        PatchOperation::Remove(_) | PatchOperation::Test(_) => return Ok(()),
    };
    let (values, nesting) = measure(value);
    if from_doc {
        *moved = moved.saturating_add(values);
        if *moved > MAX_MOVED_VALUES {
            return Err(format!(
                "it copies or moves more than {MAX_MOVED_VALUES} JSON values"
            ));
        }
    }
    // The value lands inside one container per token of its path.
    if op.path().count().saturating_add(nesting) > MAX_NESTING {
        return Err(format!(
            "it would nest the workflow more than {MAX_NESTING} levels deep"
        ));
    }
    Ok(())
}

/// How many JSON values `v` holds (itself included) and how deeply its arrays and
/// objects nest; iterative, since a value may be nested deeper than the stack allows.
fn measure(v: &Value) -> (usize, usize) {
    let (mut values, mut nesting) = (0usize, 0usize);
    let mut stack = vec![(v, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        values += 1;
        match v {
            Value::Array(items) => {
                nesting = nesting.max(depth + 1);
                stack.extend(items.iter().map(|c| (c, depth + 1)));
            }
            Value::Object(map) => {
                nesting = nesting.max(depth + 1);
                stack.extend(map.values().map(|c| (c, depth + 1)));
            }
            _ => {}
        }
    }
    (values, nesting)
}

/// A unified diff of two workflows, pretty-printed.
pub fn unified_diff(old: &Value, new: &Value) -> String {
    let a = serde_json::to_string_pretty(old).unwrap_or_default() + "\n";
    let b = serde_json::to_string_pretty(new).unwrap_or_default() + "\n";
    similar::TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(3)
        .header("workflow", "repaired")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_replays_and_refuses_other_bases() {
        let dir = tempfile::tempdir().unwrap();
        let base =
            json!({"nodes": [{"id": "a", "type": "shell", "params": {"command": "ech hi"}}]});
        let fixed =
            json!({"nodes": [{"id": "a", "type": "shell", "params": {"command": "echo hi"}}]});
        let sig = vec![Signature {
            node: "a".into(),
            category: "shell".into(),
            message: "x".into(),
        }];
        let path = record(dir.path(), "wf.json", &base, &fixed, &sig, "m").unwrap();
        assert!(path.starts_with(dir.path().join("repairs")));
        let (_, rec) = find_replay(dir.path(), &workflow_digest(&base)).expect("replay found");
        assert_eq!(rec.file.as_deref(), Some(path.as_path()));
        assert!(rec.proven);
        assert_eq!(apply(&rec, &base).unwrap(), fixed);
        assert!(find_replay(dir.path(), &workflow_digest(&fixed)).is_none());
        let err = apply(&rec, &fixed).unwrap_err();
        assert!(err.contains("different version"), "{err}");
        assert!(
            unified_diff(&base, &fixed).contains("+      \"params\": {")
                || unified_diff(&base, &fixed).contains("echo hi")
        );
    }

    #[test]
    fn names_never_collide_and_demoted_records_do_not_replay() {
        let dir = tempfile::tempdir().unwrap();
        let base = json!({"nodes": []});
        let fixed = json!({"nodes": [], "x": 1});
        let paths: std::collections::HashSet<PathBuf> = (0..20)
            .map(|_| record(dir.path(), "wf.json", &base, &fixed, &[], "m").unwrap())
            .collect();
        assert_eq!(paths.len(), 20);
        assert_eq!(list(dir.path()).len(), 20);
        for (_, r) in list(dir.path()) {
            demote(&r, "it failed again").unwrap();
        }
        assert!(find_replay(dir.path(), &workflow_digest(&base)).is_none());
        let (_, r) = list(dir.path()).pop().unwrap();
        assert_eq!(r.demoted.as_deref(), Some("it failed again"));
        // A record without "proven" (hand-written, or from before) is not replayed.
        let text = record_text(&base, json!([]));
        std::fs::write(repairs_dir(dir.path()).join("zz.json"), text).unwrap();
        assert!(find_replay(dir.path(), &workflow_digest(&base)).is_none());
    }

    /// The small workflow the property test (and the `patch` fuzz target) patch.
    fn small_workflow() -> Value {
        json!({"inputs": {"name": {"type": "string", "default": "x"}},
               "nodes": [{"id": "a", "type": "echo", "params": {"message": "hi ${name}"}},
                         {"id": "b", "type": "shell", "params": {"command": "echo ${a.echo}"}}],
               "outputs": {"o": {"source": "${b.stdout}"}}})
    }

    /// A record for `base` carrying `ops`, as a patch file's text.
    fn record_text(base: &Value, ops: Value) -> String {
        json!({"version": 1, "base_digest": workflow_digest(base),
               "repaired_digest": "0".repeat(64), "workflow": "wf.json", "model": "m",
               "created_at": "t", "errors": [], "patch": ops})
        .to_string()
    }

    fn parse_error(text: &[u8]) -> String {
        match parse(text) {
            Ok(r) => panic!("accepted: {r:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn malformed_records_are_refused_with_the_reason() {
        let base = small_workflow();
        let good = record_text(&base, json!([]));
        assert!(parse(good.as_bytes()).is_ok());
        let digest = workflow_digest(&base);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            // The panic this guards: a multi-byte character across the 12th byte.
            (
                good.replace(&digest, "aééééééééééé").into_bytes(),
                "'base_digest': must be 64 lowercase hex digits",
            ),
            (
                good.replace("\"0000", "\"ZZZZ").into_bytes(),
                "'repaired_digest': must be",
            ),
            (
                b"\xff\xfe{}".to_vec(),
                "not UTF-8 text (bad byte at offset 0)",
            ),
            (good.as_bytes()[..good.len() / 2].to_vec(), "cut short"),
            (Vec::new(), "empty or cut short"),
            (b"{\"version\": 1,}".to_vec(), "invalid JSON"),
            (b"[]".to_vec(), "a patch record is a JSON object"),
            (
                good.replace("\"version\":1", "\"version\":\"1\"")
                    .into_bytes(),
                "'version': invalid type: string \"1\", expected u32",
            ),
            (
                good.replace("\"version\":1", "\"version\":99999999999999999999")
                    .into_bytes(),
                "'version': invalid type: floating point",
            ),
            (
                good.replace("\"model\":\"m\",", "").into_bytes(),
                "'model': missing",
            ),
            (
                good.replace("\"patch\":[]", "\"patch\":{}").into_bytes(),
                "'patch': must be an array",
            ),
            (
                record_text(&base, json!([{"op": "add", "path": "nodes", "value": 1}]))
                    .into_bytes(),
                "'patch[0]': json pointer",
            ),
            (
                record_text(&base, json!([{"op": "add", "path": "/a~2", "value": 1}])).into_bytes(),
                "'patch[0]': json pointer",
            ),
            (
                record_text(&base, json!([{"op": "frobnicate", "path": ""}])).into_bytes(),
                "'patch[0]': unknown variant `frobnicate`",
            ),
            (
                record_text(&base, json!([{"op": "add", "path": "/x"}])).into_bytes(),
                "'patch[0]': missing field `value`",
            ),
            (
                record_text(&base, json!([{"op": "add", "path": "/x", "value": 1}]))
                    .replace(":1}]", ":1e999}]")
                    .into_bytes(),
                "out of range",
            ),
        ];
        for (bytes, expected) in cases {
            let err = parse_error(&bytes);
            assert!(err.contains(expected), "{expected:?} not in {err:?}");
        }
    }

    /// `text` as a record read from `file`.
    fn loaded(text: &str) -> PatchRecord {
        let mut r = parse(text.as_bytes()).expect("a record");
        r.file = Some(PathBuf::from("p.json"));
        r
    }

    #[test]
    fn operations_that_do_not_fit_are_refused_naming_the_file() {
        let base = small_workflow();
        for (ops, expected) in [
            (
                json!([{"op": "remove", "path": "/nodes/7"}]),
                "operation 0 (remove at '/nodes/7'): path is invalid",
            ),
            (
                json!([{"op": "remove", "path": "/nodes/99999999999999999999999"}]),
                "path is invalid",
            ),
            (
                json!([{"op": "add", "path": "/nodes/-/x", "value": 1}]),
                "path is invalid",
            ),
            (
                json!([{"op": "move", "from": "/nope", "path": "/x"}]),
                "\"from\" path is invalid",
            ),
            (
                json!([{"op": "move", "from": "/nodes", "path": "/nodes/0"}]),
                "inside itself",
            ),
            (
                json!([{"op": "test", "path": "/inputs", "value": 1}]),
                "did not match",
            ),
            // json_patch's own all-or-nothing `patch` panics undoing this pair.
            (
                json!([{"op": "move", "from": "/nodes/0/params", "path": "/nodes/0"},
                    {"op": "remove", "path": "/nope"}]),
                "operation 1 (remove at '/nope')",
            ),
        ] {
            let err = apply(&loaded(&record_text(&base, ops)), &base).unwrap_err();
            assert!(
                err.starts_with("the patch 'p.json' does not apply: "),
                "{err}"
            );
            assert!(err.contains(expected), "{expected:?} not in {err:?}");
        }
    }

    #[test]
    fn a_record_made_in_memory_with_any_digest_is_refused_not_a_panic() {
        let base = small_workflow();
        let mut r = loaded(&record_text(&base, json!([])));
        r.base_digest = format!("a{}", "é".repeat(20));
        let err = apply(&r, &base).unwrap_err();
        let shown = format!("its base digest is a{},", "é".repeat(11));
        assert!(err.contains(&shown), "{err}");
    }

    #[test]
    fn growth_without_bound_is_refused() {
        let base = small_workflow();
        // Each copy doubles the document: 2^60 values if nothing stopped it.
        let doubling: Vec<Value> = (0..60)
            .map(|i| json!({"op": "copy", "from": "", "path": format!("/c{i}")}))
            .collect();
        let err = apply(&loaded(&record_text(&base, Value::Array(doubling))), &base).unwrap_err();
        assert!(err.contains("copies or moves more than"), "{err}");

        // Three operations nest the chain one level deeper without growing it.
        let mut deepening = vec![json!({"op": "add", "path": "/x", "value": {}})];
        for _ in 0..200 {
            deepening.push(json!({"op": "add", "path": "/y", "value": {}}));
            deepening.push(json!({"op": "move", "from": "/x", "path": "/y/x"}));
            deepening.push(json!({"op": "move", "from": "/y", "path": "/x"}));
        }
        let err = apply(&loaded(&record_text(&base, Value::Array(deepening))), &base).unwrap_err();
        assert!(err.contains("more than 127 levels deep"), "{err}");
    }

    #[test]
    fn the_nesting_limit_is_what_serde_json_reads_back() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(serde_json::from_str::<Value>(&nested(MAX_NESTING)).is_ok());
        assert!(serde_json::from_str::<Value>(&nested(MAX_NESTING + 1)).is_err());
    }

    /// What the `patch` fuzz target does with its bytes: parse, then apply to the small
    /// workflow (as recorded, then as if recorded for it), then validate what comes out.
    fn exercise(bytes: &[u8]) -> Result<(), proptest::test_runner::TestCaseError> {
        let Ok(mut record) = parse(bytes) else {
            return Ok(());
        };
        let text = serde_json::to_vec(&record).expect("a record serializes");
        let again = parse(&text).ok();
        proptest::prop_assert_eq!(again.as_ref(), Some(&record));
        let base = small_workflow();
        let _ = apply(&record, &base);
        record.base_digest = workflow_digest(&base);
        if let Ok(patched) = apply(&record, &base) {
            let _ = crate::validate::validate(&patched);
            let _ = unified_diff(&base, &patched);
        }
        Ok(())
    }

    /// A JSON Pointer into (or just beside) the small workflow.
    fn pointer() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::collection::vec(
            proptest::prop_oneof![
                "nodes",
                "0",
                "1",
                "-",
                "params",
                "inputs",
                "x",
                "~1",
                "99999999999999999999"
            ],
            0..5,
        )
        .prop_map(|tokens| tokens.iter().map(|t| format!("/{t}")).collect())
    }

    fn operation() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let value = prop_oneof![
            Just(json!(1)),
            Just(json!("s")),
            Just(json!({"a": [1]})),
            Just(json!([]))
        ];
        (prop_oneof!["add", "remove", "replace", "move", "copy", "test", "nope"], pointer(), pointer(), value)
            .prop_map(|(op, path, from, value)| json!({"op": op, "path": path, "from": from, "value": value}))
    }

    use proptest::prelude::*;
    proptest! {
        #[test]
        fn any_bytes_parse_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            exercise(&bytes)?;
        }

        #[test]
        fn any_operations_apply_or_are_refused(ops in proptest::collection::vec(operation(), 0..8)) {
            exercise(record_text(&small_workflow(), Value::Array(ops)).as_bytes())?;
        }

        #[test]
        fn cut_or_flipped_records_parse_or_are_refused(
            ops in proptest::collection::vec(operation(), 0..4),
            cut in any::<proptest::sample::Index>(),
            flip in any::<(proptest::sample::Index, u8)>(),
        ) {
            let mut bytes = record_text(&small_workflow(), Value::Array(ops)).into_bytes();
            let at = flip.0.index(bytes.len());
            bytes[at] ^= flip.1;
            exercise(&bytes)?;
            bytes.truncate(cut.index(bytes.len()));
            exercise(&bytes)?;
        }
    }
}
