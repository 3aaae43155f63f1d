//! `--dry-run`: which nodes a build would reuse and which it would run, computed from
//! keys and the cache index without running anything.

use super::*;

/// One line of a `--dry-run` plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanStep {
    pub id: String,
    #[serde(rename = "type")]
    pub node_type: String,
    /// `reuse` or `run`.
    pub action: &'static str,
    pub reason: String,
    pub key: Option<String>,
}

/// What a build would do, without running anything or touching the cache.
pub fn plan(
    v: &Validated,
    inputs: &Map<String, Value>,
    cache: &Cache,
    opts: &Options,
) -> Vec<PlanStep> {
    let session = Session::default();
    let n = v.workflow.nodes.len();
    let shared = Shared::new(v, inputs, cache, opts, &session);
    let mut steps: Vec<Option<PlanStep>> = vec![None; n];
    let mut will_run = vec![false; n];
    for &i in &v.order {
        let node = &v.workflow.nodes[i];
        let upstream = shared.deps[i]
            .iter()
            .find(|(j, _)| will_run[*j])
            .map(|(j, _)| v.graph.id(*j).to_string());
        let (action, reason, key) = if let Some(up) = upstream {
            ("run", format!("upstream {up} will run"), None)
        } else {
            let mut kb = shared.base_key(i, false);
            let paths = shared.read_paths(i, None).unwrap_or_default();
            shared.add_file_components(&mut kb, &paths);
            let key = kb.finish();
            let preimage = kb.preimage();
            let forced = shared.forced(node);
            match (forced, cache.lookup(&key)) {
                (Some(f), _) => ("run", f.to_string(), Some(key)),
                (None, Ok(Some(entry))) => {
                    match blake3::Hash::from_hex(&entry.manifest.output_digest) {
                        Ok(d) if fresh(node.cache, entry.time_ms) => {
                            lock(&shared.slots[i]).digest = Some(d);
                            lock(&shared.slots[i]).entry = Some(Box::new(entry));
                            lock(&shared.slots[i]).success = true;
                            ("reuse", "inputs unchanged".to_string(), Some(key))
                        }
                        Ok(_) => ("run", "cache entry too old".to_string(), Some(key)),
                        Err(_) => ("run", "corrupt entry".to_string(), Some(key)),
                    }
                }
                (None, Ok(None)) => {
                    let reason = match shared.previous_preimage(&node.id) {
                        None => "new".to_string(),
                        Some(old) => explain_change(&old, &preimage)
                            .unwrap_or_else(|| "no cache entry".into()),
                    };
                    ("run", reason, Some(key))
                }
                (None, Err(_)) => ("run", "corrupt entry".to_string(), Some(key)),
            }
        };
        will_run[i] = action == "run";
        steps[i] = Some(PlanStep {
            id: node.id.clone(),
            node_type: node.node_type.clone(),
            action,
            reason,
            key: key.map(|k| k.hex()),
        });
    }
    steps.into_iter().flatten().collect()
}
