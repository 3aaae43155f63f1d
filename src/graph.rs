//! The workflow DAG: explicit edges plus the edges implied by template references and
//! by the paths nodes read and write.
//!
//! Nodes are indexed by their position in the workflow's `nodes` array. The graph answers
//! the questions the rest of the engine asks: a topological order, each node's
//! dependencies, the nodes downstream of a set (what an edit or a repair reaches), and,
//! when there is no order, the nodes on a cycle.

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// A hasher for the node indices of links (FxHash's multiply-rotate). SipHash guards
/// maps keyed by user text against crafted collisions; these keys are our own numbers,
/// and hashing 20,000 links with SipHash was a visible part of loading a big workflow.
#[derive(Default)]
struct IndexHasher(u64);

impl Hasher for IndexHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_isize(&mut self, n: isize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Why one node depends on another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Link {
    /// An explicit `default` edge.
    Edge,
    /// An explicit `error` edge: the target runs only when the source failed.
    ErrorEdge,
    /// A `${source...}` template in the target.
    Template,
    /// Implied by paths: the target reads a file the source writes.
    Path,
}

#[derive(Debug, Clone)]
pub struct Graph {
    dag: DiGraph<usize, Link>,
    ids: Vec<String>,
    index: foldhash::HashMap<String, usize>,
}

impl Graph {
    /// Build from node ids and links `(from, to, link)` given as node positions.
    pub fn new(ids: Vec<String>, links: impl IntoIterator<Item = (usize, usize, Link)>) -> Graph {
        let mut dag = DiGraph::with_capacity(ids.len(), ids.len());
        for i in 0..ids.len() {
            dag.add_node(i);
        }
        let mut seen: HashSet<(usize, usize, Link), BuildHasherDefault<IndexHasher>> =
            HashSet::with_capacity_and_hasher(2 * ids.len(), Default::default());
        for (from, to, link) in links {
            if from < ids.len() && to < ids.len() && seen.insert((from, to, link)) {
                dag.add_edge(NodeIndex::new(from), NodeIndex::new(to), link);
            }
        }
        let index = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect();
        Graph { dag, ids, index }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn id(&self, i: usize) -> &str {
        &self.ids[i]
    }

    pub fn position(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// Topological order (stable: ties keep workflow order), or the cycles if there is none.
    pub fn topological_order(&self) -> Result<Vec<usize>, Vec<Vec<usize>>> {
        let n = self.ids.len();
        let mut indegree = vec![0usize; n];
        for e in self.dag.edge_references() {
            indegree[e.target().index()] += 1;
        }
        // A binary heap would give the smallest ready index first; a queue seeded in order
        // and fed in order is close enough and linear.
        let mut ready: VecDeque<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop_front() {
            order.push(i);
            for e in self
                .dag
                .edges_directed(NodeIndex::new(i), Direction::Outgoing)
            {
                let t = e.target().index();
                indegree[t] -= 1;
                if indegree[t] == 0 {
                    ready.push_back(t);
                }
            }
        }
        if order.len() == n {
            Ok(order)
        } else {
            Err(self.cycles())
        }
    }

    /// Each cycle as a path of node positions `a, b, ..., a` (first repeated at the end).
    pub fn cycles(&self) -> Vec<Vec<usize>> {
        let mut out = Vec::new();
        for scc in tarjan_scc(&self.dag) {
            let members: HashSet<usize> = scc.iter().map(|n| n.index()).collect();
            let start = match members.iter().min() {
                Some(&s) => s,
                None => continue,
            };
            let self_loop = self
                .dag
                .edges_directed(NodeIndex::new(start), Direction::Outgoing)
                .any(|e| e.target().index() == start);
            if members.len() == 1 && !self_loop {
                continue;
            }
            out.push(self.cycle_path(start, &members));
        }
        out.sort();
        out
    }

    /// A shortest path from `start` back to itself inside one strongly connected component.
    fn cycle_path(&self, start: usize, members: &HashSet<usize>) -> Vec<usize> {
        let mut prev: HashMap<usize, usize> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        let mut seen = HashSet::from([start]);
        while let Some(u) = queue.pop_front() {
            for e in self
                .dag
                .edges_directed(NodeIndex::new(u), Direction::Outgoing)
            {
                let v = e.target().index();
                if v == start {
                    // Walk back from u to start, then reverse: start, ..., u, start.
                    let mut path = vec![u];
                    let mut cur = u;
                    while cur != start {
                        cur = prev[&cur];
                        path.push(cur);
                    }
                    path.reverse();
                    path.push(start);
                    return path;
                }
                if members.contains(&v) && seen.insert(v) {
                    prev.insert(v, u);
                    queue.push_back(v);
                }
            }
        }
        vec![start, start]
    }

    /// How `from` links to `to`, if it does.
    pub fn links_between(&self, from: usize, to: usize) -> Vec<Link> {
        let mut links: Vec<Link> = self
            .dag
            .edges_connecting(NodeIndex::new(from), NodeIndex::new(to))
            .map(|e| *e.weight())
            .collect();
        links.sort();
        links
    }

    /// Direct dependencies of node `i`, with how each is linked.
    pub fn dependencies(&self, i: usize) -> Vec<(usize, Link)> {
        let mut deps: Vec<(usize, Link)> = self
            .dag
            .edges_directed(NodeIndex::new(i), Direction::Incoming)
            .map(|e| (e.source().index(), *e.weight()))
            .collect();
        deps.sort();
        deps
    }

    /// Direct dependents of node `i`.
    pub fn dependents(&self, i: usize) -> Vec<(usize, Link)> {
        let mut deps: Vec<(usize, Link)> = self
            .dag
            .edges_directed(NodeIndex::new(i), Direction::Outgoing)
            .map(|e| (e.target().index(), *e.weight()))
            .collect();
        deps.sort();
        deps
    }

    /// Every node reachable from `roots` (the roots included).
    pub fn downstream(&self, roots: impl IntoIterator<Item = usize>) -> HashSet<usize> {
        let mut seen = HashSet::new();
        let mut stack: Vec<usize> = roots.into_iter().collect();
        while let Some(u) = stack.pop() {
            if u >= self.ids.len() || !seen.insert(u) {
                continue;
            }
            for e in self
                .dag
                .edges_directed(NodeIndex::new(u), Direction::Outgoing)
            {
                stack.push(e.target().index());
            }
        }
        seen
    }

    /// All links `(from, to, link)`.
    pub fn links(&self) -> impl Iterator<Item = (usize, usize, Link)> + '_ {
        self.dag
            .edge_references()
            .map(|e| (e.source().index(), e.target().index(), *e.weight()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("n{i}")).collect()
    }

    #[test]
    fn orders_dependencies_first() {
        let g = Graph::new(ids(3), [(2, 1, Link::Edge), (1, 0, Link::Template)]);
        assert_eq!(g.topological_order().unwrap(), vec![2, 1, 0]);
    }

    #[test]
    fn independent_nodes_keep_workflow_order() {
        let g = Graph::new(ids(3), []);
        assert_eq!(g.topological_order().unwrap(), vec![0, 1, 2]);
    }

    #[test]
    fn names_the_nodes_on_a_cycle() {
        let g = Graph::new(
            ids(4),
            [
                (0, 1, Link::Edge),
                (1, 2, Link::Template),
                (2, 0, Link::Edge),
                (2, 3, Link::Edge),
            ],
        );
        let cycles = g.topological_order().unwrap_err();
        assert_eq!(cycles, vec![vec![0, 1, 2, 0]]);
    }

    #[test]
    fn self_loop_is_a_cycle() {
        let g = Graph::new(ids(2), [(1, 1, Link::Template)]);
        assert_eq!(g.topological_order().unwrap_err(), vec![vec![1, 1]]);
    }

    #[test]
    fn downstream_includes_roots_and_everything_reachable() {
        let g = Graph::new(
            ids(5),
            [
                (0, 1, Link::Edge),
                (1, 2, Link::Template),
                (3, 4, Link::Edge),
            ],
        );
        let d = g.downstream([1]);
        assert_eq!(d, HashSet::from([1, 2]));
        assert_eq!(g.downstream([0, 3]).len(), 5);
    }
}
