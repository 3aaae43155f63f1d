//! `--target`: which nodes a build covers when it is asked for some of them only.
//!
//! A target brings everything it needs (its upstream, through templates and edges, as
//! `ninja target` does) and the error handlers of what is built: a failure the workflow
//! routes to a handler is handled in a partial build too. Nothing else is built.

use crate::graph::Link;
use crate::validate::Validated;

/// For each node, whether a build with these targets covers it; `None` (everything)
/// when there are no targets. Ids not in the workflow select nothing (the command line
/// checks them first).
pub fn selected(v: &Validated, targets: &[String]) -> Option<Vec<bool>> {
    if targets.is_empty() {
        return None;
    }
    let mut chosen = vec![false; v.graph.len()];
    let mut todo: Vec<usize> = targets.iter().filter_map(|t| v.graph.position(t)).collect();
    while let Some(i) = todo.pop() {
        if std::mem::replace(&mut chosen[i], true) {
            continue;
        }
        todo.extend(v.graph.dependencies(i).into_iter().map(|(j, _)| j));
        todo.extend(
            v.graph
                .dependents(i)
                .into_iter()
                .filter(|(_, link)| *link == Link::ErrorEdge)
                .map(|(j, _)| j),
        );
    }
    Some(chosen)
}

/// How many nodes a build with this selection covers.
pub fn count(v: &Validated, selection: Option<&[bool]>) -> usize {
    match selection {
        None => v.graph.len(),
        Some(s) => s.iter().filter(|&&b| b).count(),
    }
}
