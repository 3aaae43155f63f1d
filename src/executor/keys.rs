//! What goes into a node's key: its own definition, its dependencies' output digests,
//! the inputs it reads, and the content of the files it reads.

use super::*;
use std::path::PathBuf;

/// Add param `name` to a key. A secret's value counts in the key, but no record keeps
/// even its digest (a dictionary could be checked against one). Returns whether it was
/// sealed.
pub(super) fn add_param(
    kb: &mut KeyBuilder,
    spec: &crate::nodes::NodeSpec,
    name: &str,
    value: &Value,
) -> bool {
    let sealed = spec.secret_params.contains(&name) || crate::secrets::is_secret_name(name);
    if sealed {
        kb.add_sealed(("param", name), &[&crate::canonical::to_key_bytes(value)]);
    } else {
        kb.add_value(("param", name), value);
    }
    sealed
}

/// The files a key was made from: each path as read, the digest the key holds, and the
/// file's identity then (`None`: it did not exist).
pub(super) type KeyedFiles = Vec<(PathBuf, String, Option<crate::fsutil::FileId>)>;

/// The first file a run read other bytes of than its key was made from (it changed in
/// between): such a result must not be stored under that key. `read`: the files the node
/// says it read, with the digest of the bytes it used. A file it does not say it read
/// (a shell step's declared `reads`) is checked after the run: if it is no longer what
/// the key was made from, the step may have read either. Files the node wrote itself are
/// its own doing.
pub(super) fn read_other_bytes(
    keyed: &KeyedFiles,
    read: &[(PathBuf, blake3::Hash)],
    written: &[PathBuf],
) -> Option<PathBuf> {
    let told = read.iter().find(|(path, used)| {
        keyed
            .iter()
            .any(|(p, d, _)| p == path && d.as_str() != used.to_hex().as_str())
    });
    if let Some((path, _)) = told {
        return Some(path.clone());
    }
    keyed
        .iter()
        .filter(|(p, _, _)| !read.iter().any(|(r, _)| r == p) && !written.contains(p))
        .find(|(p, digest, then)| {
            crate::fsutil::stat(p) != *then && {
                let now = crate::fsutil::file_digest(p).map(|d| d.to_hex().to_string());
                now.as_deref().unwrap_or("missing") != digest.as_str()
            }
        })
        .map(|(p, _, _)| p.clone())
}

/// What node `node` (compiled as `cn`, in a workflow of template mode `mode`) puts in
/// its key by its definition alone: its id, type, params, batch, cache policy and
/// declarations. The same wherever and whenever it runs (but for the identity of an MCP
/// tool's type, its server's: such a node keeps none), so an edit that runs it again as
/// compiled before can start from these, kept with its form ([`Options::parts`]):
/// working them out (the params' canonical bytes hashed) was a sixth of the chain
/// worker's instructions.
pub fn definition_key(
    node: &crate::workflow::Node,
    cn: &CompiledNode,
    mode: TemplateMode,
    for_item: bool,
) -> KeyBuilder {
    let mut kb = KeyBuilder::new();
    kb.add_text("id", &node.id);
    let version = cn.spec.version.to_string();
    kb.add_pieces("type", &[cn.spec.name.as_bytes(), b"@", version.as_bytes()]);
    // Only for types that have one (MCP tools), so built-in types keep their keys.
    if !cn.spec.identity.is_empty() {
        kb.add_text("identity", cn.spec.identity);
    }
    for (name, value) in &node.params {
        add_param(&mut kb, cn.spec, name, value);
    }
    if let Some(b) = &node.batch {
        let mut cfg = Map::new();
        // Members in name order: the canonical form the keys were first made from.
        cfg.insert("as".into(), Value::String(b.alias.clone()));
        if !for_item {
            cfg.insert(
                "error_handling".into(),
                Value::Bool(b.error_handling == ErrorHandling::Continue),
            );
            if let Some(items) = node.to_json().get("batch").and_then(|b| b.get("items")) {
                cfg.insert("items".into(), items.clone());
            }
        }
        kb.add_value("batch", &Value::Object(cfg));
    }
    kb.add_text("cache", &node.cache.key_text());
    // Templated shell text gets its values as variables now, not pasted (a value with
    // shell syntax in it gives another result than it did): such nodes get new keys,
    // and the others keep theirs.
    if cn.params.iter().any(|(name, pt)| {
        matches!(pt, ParamTemplate::Template(_)) && cn.spec.shell_params.contains(&name.as_str())
    }) {
        kb.add_text("shell-values", "variables");
    }
    // Permissive mode keeps a reference that does not resolve as its text, where
    // strict mode fails: a result made under one is not the other's. Only for nodes
    // with templates in permissive workflows, so strict (the default) keys stay.
    if mode == TemplateMode::Permissive
        && (cn.items.is_some()
            || cn
                .params
                .iter()
                .any(|(_, pt)| !matches!(pt, ParamTemplate::Literal(_))))
    {
        kb.add_text("templates", "permissive");
    }
    // Only when declared, so the keys of nodes without declarations stay as they were.
    for (name, paths) in [("reads", &node.reads), ("writes", &node.writes)] {
        if !paths.is_empty() {
            let list = paths.iter().map(|p| Value::String(p.clone())).collect();
            kb.add_value(name, &Value::Array(list));
        }
    }
    kb
}

impl<'a> Shared<'a> {
    /// The key components every run of node `i` shares (not batch items or files).
    pub(super) fn base_key(&self, i: usize, for_item: bool) -> KeyBuilder {
        let node = &self.v.workflow.nodes[i];
        let cn = &self.v.nodes[i];
        let kept = self.opts.parts.get(i).and_then(Option::as_ref);
        let mut kb = match kept {
            Some(parts) if !for_item => KeyBuilder::from_parts(parts),
            _ => definition_key(node, cn, self.v.workflow.template_mode, for_item),
        };
        for var in cn.spec.key_env {
            let value = std::env::var(var).unwrap_or_default();
            kb.add_text(("env", *var), &value);
        }
        self.add_env_components(&mut kb, i);
        for (j, _) in &self.deps[i] {
            if for_item && self.items_only_deps[i].contains(j) {
                continue;
            }
            let digest = lock(&self.slots[*j]).digest;
            let name = ("dep", self.v.graph.id(*j));
            match digest {
                // Already a digest: it goes in as is, not re-hashed as hex text.
                Some(d) => kb.add_digest(name, *d.as_bytes()),
                None => kb.add_text(name, "none"),
            }
        }
        let input_refs: BTreeSet<&String> = if for_item {
            cn.params
                .iter()
                .flat_map(|(_, p)| p.refs())
                .map(|r| &r.root)
                .filter(|r| cn.input_refs.contains(*r))
                .collect()
        } else {
            cn.input_refs.iter().collect()
        };
        for name in input_refs {
            let value = self.inputs.get(name).unwrap_or(&Value::Null);
            if self.v.workflow.is_secret_input(name) {
                kb.add_sealed(
                    ("input", name.as_str()),
                    &[&crate::canonical::to_key_bytes(value)],
                );
            } else {
                kb.add_value(("input", name.as_str()), value);
            }
        }
        kb
    }

    /// The variables node `i` declares (`reads_env`), set or not, by name and value; a
    /// secret's sealed, so that no record holds even a digest of it. And strict mode, for
    /// a node whose child sees a different environment under it (only then: keys of
    /// builds that do not use strict mode stay as they were).
    fn add_env_components(&self, kb: &mut KeyBuilder, i: usize) {
        use std::os::unix::ffi::OsStrExt;
        for name in &self.v.workflow.nodes[i].reads_env {
            let component = ("env", name.as_str());
            // Unset and empty differ (`${X+set}`): a tag byte tells them apart.
            match std::env::var_os(name) {
                None => kb.add_pieces(component, &[b"0"]),
                Some(v) if crate::environment::is_secret(name, &v) => {
                    kb.add_sealed(component, &[b"1", v.as_bytes()])
                }
                Some(v) => kb.add_pieces(component, &[b"1", v.as_bytes()]),
            }
        }
        if self.strict_env() && self.v.nodes[i].spec.runs_shell() {
            kb.add_text("env-mode", "strict");
        }
    }

    /// Paths of the files node `i` reads, resolved; for a batch, those of every item
    /// (each item's key covers its own, the node's key all of them).
    pub(super) fn key_read_paths(
        &self,
        i: usize,
        scope: Option<&NodeScope<'_>>,
    ) -> Result<Vec<String>, NodeError> {
        let Some(batch) = &self.v.workflow.nodes[i].batch else {
            return self.read_paths(i, scope.map(|s| s as &dyn Scope));
        };
        let owned;
        let scope = match scope {
            Some(s) => s,
            None => {
                owned = self.scope_for(i)?;
                &owned
            }
        };
        let items = batch::batch_items(&self.v.nodes[i], scope)?;
        let mut out = Vec::new();
        for (idx, item) in items.iter().enumerate() {
            out.extend(self.item_read_paths(i, scope, batch, item, idx));
        }
        Ok(out)
    }

    /// Paths of the files one batch item reads. A path that does not resolve adds
    /// nothing: the item fails when it runs, with that error, and a failure is never
    /// cached.
    pub(super) fn item_read_paths(
        &self,
        i: usize,
        scope: &NodeScope<'_>,
        batch: &BatchConfig,
        item: &Value,
        idx: usize,
    ) -> Vec<String> {
        let item_scope = batch::ItemScope::new(scope, batch, item, idx);
        self.read_paths(i, Some(&item_scope)).unwrap_or_default()
    }

    /// Paths of the files node `i` reads, resolved in `scope` (built when needed).
    fn read_paths(&self, i: usize, scope: Option<&dyn Scope>) -> Result<Vec<String>, NodeError> {
        let cn = &self.v.nodes[i];
        let mut out = Vec::new();
        for &p in cn.spec.reads_files {
            let Some((_, pt)) = cn.params.iter().find(|(n, _)| n == p) else {
                continue;
            };
            let value = match pt {
                ParamTemplate::Literal(v) => v.clone(),
                other => {
                    let owned;
                    let scope: &dyn Scope = match scope {
                        Some(s) => s,
                        None => {
                            owned = self.scope_for(i)?;
                            &owned
                        }
                    };
                    other.resolve(scope).map_err(|u| unresolved_error(p, u))?
                }
            };
            if let Value::String(s) = value {
                out.push(s);
            }
        }
        out.extend(self.declared_read_paths(i)?);
        Ok(out)
    }

    /// The files node `i` declares in `reads`, globs expanded now (sorted): adding a file
    /// a glob matches changes the key, as editing one does.
    pub(super) fn declared_read_paths(&self, i: usize) -> Result<Vec<String>, NodeError> {
        let mut out = Vec::new();
        for pattern in &self.v.nodes[i].reads {
            let found = pattern
                .expand_reads()
                .map_err(|e| NodeError::new(ErrorCategory::File, e))?;
            out.extend(found);
        }
        Ok(out)
    }

    /// Hash the files a node reads into its key. A file whose identity matches the last
    /// build's record reuses its digest (as ninja trusts mtimes); others are hashed.
    /// Returns each file (as read) with the digest its key holds.
    pub(super) fn add_file_components(&self, kb: &mut KeyBuilder, paths: &[String]) -> KeyedFiles {
        let mut keyed = Vec::with_capacity(paths.len());
        for p in paths {
            let path = crate::nodes::read_file::expand_path(p);
            let now = crate::fsutil::stat(&path);
            // `--force` trusts no record: a forced run's key is made from what is read now.
            let recorded = if self.opts.force {
                None
            } else {
                self.recorder.read_digest(p, now)
            };
            let digest = match recorded {
                Some(d) => d,
                None => match crate::fsutil::file_digest(&path) {
                    Ok(d) => d.to_hex().to_string(),
                    Err(_) => "missing".to_string(),
                },
            };
            if let Some(id) = now {
                let stat = crate::cache::records::FileStat {
                    id,
                    digest: digest.clone(),
                };
                self.recorder.read(p, stat);
            }
            kb.add_text(("file", p.as_str()), &digest);
            keyed.push((path, digest, now));
        }
        keyed
    }
}
