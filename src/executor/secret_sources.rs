//! Values that become secrets during a build: what a node binds into a secret param
//! (a shell `env` value, an HTTP token) from another node's output, a batch item or an
//! input. Each is taught to the redactor before anything shows it: at the start for
//! inputs, as soon as the producing node's result is known (ran, reused or failed), and
//! again as the binding node resolves it.

use super::*;

/// For each node, what other nodes bind of its values into secret params (almost always
/// nothing); inputs bound so are learned now.
pub(super) fn sources<'a>(
    v: &'a Validated,
    inputs: &Map<String, Value>,
    redactor: &crate::secrets::Redactor,
) -> HashMap<usize, Vec<SecretSource<'a>>> {
    let mut secret_refs: HashMap<usize, Vec<SecretSource<'a>>> = HashMap::new();
    let only_inputs = NodeScope {
        inputs,
        nodes: Roots::new(Vec::new()),
    };
    for (c, (node, cn)) in v.workflow.nodes.iter().zip(&v.nodes).enumerate() {
        let alias = node.batch.as_ref().map(|b| b.alias.as_str());
        for r in cn.secret_templates().flat_map(|pt| pt.refs()) {
            if Some(r.root.as_str()) == alias {
                // Each item binds its own value: the items' sources feed it.
                for ir in cn.items.iter().flat_map(|pt| pt.refs()) {
                    if let Some(j) = v.graph.position(&ir.root) {
                        let sources = secret_refs.entry(j).or_default();
                        if !sources.contains(&SecretSource::Items(c)) {
                            sources.push(SecretSource::Items(c));
                        }
                    }
                }
            } else if let Some(j) = v.graph.position(&r.root) {
                secret_refs
                    .entry(j)
                    .or_default()
                    .push(SecretSource::Field(r));
            } else if let Ok(value) = crate::template::resolve_reference(r, &only_inputs) {
                // An input bound into a secret param is one before anything runs.
                learn_strings(redactor, &value);
            }
        }
    }
    secret_refs
}

/// Where a value bound into a secret param comes from, as the node that makes it sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum SecretSource<'a> {
    /// A field of the node's values (`${login.stdout}`).
    Field(&'a crate::template::Reference),
    /// The node makes the items of batch node `.0`, which binds each into a secret param.
    Items(usize),
}

/// Every string in `value` (a shell `env` map's values) is a secret from now on.
fn learn_strings(redactor: &crate::secrets::Redactor, value: &Value) {
    match value {
        Value::String(s) => redactor.learn(s),
        Value::Array(items) => items.iter().for_each(|v| learn_strings(redactor, v)),
        Value::Object(map) => map.values().for_each(|v| learn_strings(redactor, v)),
        // A number bound whole is the value itself (a PIN); a boolean is no secret.
        Value::Number(n) => redactor.learn(&n.to_string()),
        Value::Null | Value::Bool(_) => {}
    }
}

impl<'a> Shared<'a> {
    /// Tell the redactor what node `i`'s templated secret params resolve to, whether the
    /// node then runs or is found: its output may hold them either way. A param that
    /// does not resolve here fails (and is reported) where the node runs.
    pub(super) fn learn_secrets(&self, i: usize) {
        let cn = &self.v.nodes[i];
        if cn.secret_templates().next().is_none() {
            return;
        }
        let Ok(scope) = self.scope_for(i) else {
            return;
        };
        let learn = |scope: &dyn Scope| {
            for pt in cn.secret_templates() {
                if let Ok(value) = pt.resolve(scope) {
                    learn_strings(&self.opts.redactor, &value);
                }
            }
        };
        match &self.v.workflow.nodes[i].batch {
            None => learn(&scope),
            // Each item binds its own value.
            Some(batch) => {
                let items = batch::batch_items(cn, &scope).unwrap_or_default();
                for (idx, item) in items.iter().enumerate() {
                    learn(&batch::ItemScope::new(&scope, batch, item, idx));
                }
            }
        }
    }

    /// Does a node that depends on `i` bind one of `i`'s values into a secret param?
    pub(super) fn feeds_a_secret(&self, i: usize) -> bool {
        !self.secret_refs.is_empty() && self.secret_refs.contains_key(&i)
    }

    /// Node `i` succeeded with `values` (`None`: a fast hit, decided without them).
    pub(super) fn learn_from_result(
        &self,
        i: usize,
        values: &Option<Arc<Value>>,
        key: Option<Key>,
        entry: &Option<Entry>,
    ) {
        if !self.feeds_a_secret(i) {
            return;
        }
        // Read for this alone (not kept: a fast hit's values are checked against the
        // record where its dependents read them).
        let read;
        let known = match values {
            None => {
                read = self.load_fed_secrets(key, entry);
                read.as_ref()
            }
            values => values.as_ref(),
        };
        if let Some(known) = known {
            self.learn_fed_secrets(i, known);
        }
    }

    /// The values of a hit decided without them (a fast hit), read now: node `i` feeds a
    /// secret, which must be learned before its report is shown. `None` when they cannot
    /// be read (its dependents read them later, and meet the same problem).
    fn load_fed_secrets(&self, key: Option<Key>, entry: &Option<Entry>) -> Option<Arc<Value>> {
        let local = self.cache.local();
        let peeked;
        let entry = match entry {
            Some(e) => e,
            None => {
                peeked = local.peek(&key?)?;
                &peeked
            }
        };
        local.load_outputs(entry).ok().map(Arc::new)
    }

    /// Node `i`'s result is known (it ran or was found): what other nodes bind of it into
    /// secret params is a secret from now on.
    pub(super) fn learn_fed_secrets(&self, i: usize, values: &Arc<Value>) {
        let Some(sources) = self.secret_refs.get(&i) else {
            return;
        };
        let scope = NodeScope {
            inputs: self.inputs,
            nodes: Roots::new(vec![(self.v.graph.id(i), values.clone())]),
        };
        let learn = |r: &crate::template::Reference, scope: &dyn Scope| {
            if let Ok(value) = crate::template::resolve_reference(r, scope) {
                learn_strings(&self.opts.redactor, &value);
            }
        };
        for source in sources {
            match *source {
                SecretSource::Field(r) => learn(r, &scope),
                SecretSource::Items(c) => {
                    let (cn, node) = (&self.v.nodes[c], &self.v.workflow.nodes[c]);
                    let (Some(batch), Ok(items)) = (&node.batch, batch::batch_items(cn, &scope))
                    else {
                        continue;
                    };
                    let bound: Vec<_> = cn
                        .secret_templates()
                        .flat_map(|pt| pt.refs())
                        .filter(|r| r.root == batch.alias)
                        .collect();
                    for (idx, item) in items.iter().enumerate() {
                        let item_scope = batch::ItemScope::new(&scope, batch, item, idx);
                        bound.iter().for_each(|r| learn(r, &item_scope));
                    }
                }
            }
        }
    }
}
