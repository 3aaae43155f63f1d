//! `--dry-run`: which nodes a build would reuse and which it would run, decided by the
//! same [`super::decide`] as a build, in probe mode: nothing runs, and the cache is only
//! read (no recency mark, no download, no restore).

use super::*;

/// What a build would do with a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Reuse,
    Run,
    /// An error handler whose source will not fail (it is reused): the build skips it.
    Skip,
    /// An error handler whose source will run: it runs only if that fails.
    #[serde(rename = "if_failed")]
    IfFailed,
}

/// One line of a `--dry-run` plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanStep {
    pub id: String,
    #[serde(rename = "type")]
    pub node_type: String,
    pub action: Action,
    pub reason: String,
    pub key: Option<String>,
}

/// What a build would do, without running anything or touching the cache.
pub fn plan(
    v: &Validated,
    inputs: &Map<String, Value>,
    cache: &Layered,
    opts: &Options,
) -> Vec<PlanStep> {
    let session = Session::default();
    let n = v.workflow.nodes.len();
    let shared = Shared::new(v, inputs, cache, opts, &session);
    let mut steps: Vec<Option<PlanStep>> = vec![None; n];
    let mut will_run = vec![false; n];
    for &i in v.order.iter().filter(|&&i| shared.covers(i)) {
        let node = &v.workflow.nodes[i];
        let upstream = shared.deps[i]
            .iter()
            .find(|(j, _)| will_run[*j])
            .map(|(j, _)| v.graph.id(*j).to_string());
        // An error handler runs only when its source fails, which a plan cannot know
        // unless the source is reused (then it cannot fail).
        let handled = shared.deps[i]
            .iter()
            .find(|(_, links)| links.contains(&Link::ErrorEdge))
            .map(|(j, _)| (*j, v.graph.id(*j).to_string()));
        let (action, reason, key) = if let Some((j, source)) = handled {
            if will_run[j] {
                (
                    Action::IfFailed,
                    format!("runs only if {source} fails"),
                    None,
                )
            } else {
                (
                    Action::Skip,
                    format!("{source} is reused, so its error handler is not needed"),
                    None,
                )
            }
        } else if let Some(up) = upstream {
            (Action::Run, format!("upstream {up} will run"), None)
        } else {
            let mut kb = shared.base_key(i, false);
            let paths = shared.key_read_paths(i, None).unwrap_or_default();
            shared.add_file_components(&mut kb, &paths);
            let key = kb.finish();
            let ask = Ask {
                key,
                policy: shared.policy(i),
                forced: shared.forced(i),
                recorded_as: Some(&node.id),
                // A probe asks no remote.
                touches: &|_| false,
            };
            match decide(&shared.sources(Mode::Probe), &ask) {
                Decision::Reuse(hit) => {
                    let reason = hit.reason().into_owned();
                    let mut slot = lock(&shared.slots[i]);
                    slot.digest = Some(hit.digest);
                    slot.fast = hit.source == HitSource::FastPath;
                    slot.entry = hit.entry;
                    slot.success = true;
                    (Action::Reuse, reason, Some(key))
                }
                Decision::Run(decide::RunReason::NoEntry) => {
                    let why = shared.explain_miss(&node.id, &key, &kb.short());
                    (Action::Run, why.to_string(), Some(key))
                }
                Decision::Run(why) => (Action::Run, why.to_string(), Some(key)),
            }
        };
        will_run[i] = action == Action::Run;
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
