//! The no-op record: what a build that found nothing to do needs to say so again without
//! parsing, validating or keying anything (as `git status` trusts its index, or ninja
//! its log).
//!
//! One small file per workflow beside the build records (`state/<name>.noop2`), written
//! only after a successful build whose next build would find nothing to do (see
//! [`crate::commands`]' no-op path for which), and taken away by every other build
//! before it can change anything (its file kept as a spare the next record is written
//! over, [`super::spare`]; a build that maps a record holds it under a shared lock).
//! It holds:
//!
//! - a fingerprint of everything outside the files that decides the build: the workflow's
//!   bytes, the inputs, the environment, the flags, pflow itself (computed by
//!   [`crate::commands`], one BLAKE3 over all of it, the way a node key holds a secret:
//!   never a value, never the digest of one value alone);
//! - the cache's generation (maintenance bumps it) and the header of the build record it
//!   was made with (any build that learns something rewrites that record);
//! - until when it holds (the build record's own age limit, `"cache": "<duration>"`
//!   expiries);
//! - the identity (size, mtime, ctime, inode, device) of every file whose content entered
//!   a key or that a node wrote, or that it must still be absent; and a time every one of
//!   them was last touched before, so that a file changed within the file system's
//!   timestamp granularity of the build that made the record ("racy", as git calls it)
//!   keeps the record from being written at all;
//! - what the build printed that does not come from the cache: validation warnings;
//! - the declared outputs' sources and each node's id, type, key, output digest and run
//!   time, in the order the build finished them;
//! - for a workflow the edit path can serve ([`EditBase`]): the fingerprint without the
//!   workflow's bytes, the BLAKE3 of the workflow's text (a copy of which is kept beside
//!   the record, [`super::kept_text`]), which pflow made it, where each node is in that
//!   text, and the nodes each one reads.
//!
//! Anything missing, damaged, older or different is simply not used: the build then
//! takes the normal path, which is always right. Layout: little-endian; strings and lists
//! as a `u32` length, then their bytes or items; at the end, the first 16 bytes of the
//! BLAKE3 of all before. That sum, not an fsync, is what makes a record torn by a crash
//! one that is refused: losing a record costs a build time, never a wrong result, and
//! syncing a 10,000-node record took longer than the rest of an edit's build.

use super::table::{put_str, Reader};
use crate::fsutil::{stat, FileId};
use crate::node_texts::Layout;
use std::path::{Path, PathBuf};

const FORMAT: u32 = 6;
/// Bytes of the trailing check.
const SUM_LEN: usize = super::checksum::LEN;

/// How long before a record's build started every file it covers must have been last
/// touched: a change within this much of the build could have the same identity as
/// what the build saw (the coarsest timestamps, FAT's, are 2 s apart).
pub const GRANULARITY_NS: i128 = 2_000_000_000;

/// Where a declared output's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputSource {
    /// A template over node values: its text, as written, and the nodes (by position)
    /// it reads.
    Template(String, Vec<u32>),
    /// No source: the field of that name from the last of these nodes (by position,
    /// latest first) that has it.
    Field(Vec<u32>),
}

/// One node as the recorded build reported it (nodes are kept in workflow order).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeEntry<'a> {
    pub id: &'a str,
    pub node_type: &'a str,
    pub end: NodeEnd<'a>,
}

/// How a recorded node ended: reused, or skipped (an error handler whose source
/// succeeded, and what only it leads to).
#[derive(Debug, Clone, PartialEq)]
pub enum NodeEnd<'a> {
    Cached {
        key: [u8; 32],
        digest: [u8; 32],
        /// Its run time when it ran (the time the cache saves).
        duration_ms: u64,
    },
    Skipped {
        reason: &'a str,
    },
}

/// Where each node's entry lies in a record's encoded nodes ([`NoopRecord::node_spans`]):
/// node i's is `at[i]..at[i + 1]`. Offsets, not ranges: an edit pays for each page of
/// fresh memory in a fault, and 10,000 ranges took 40 of them.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpans(Vec<u32>);

impl NodeSpans {
    /// Node `i`'s span.
    pub fn get(&self, i: usize) -> Option<std::ops::Range<usize>> {
        Some(*self.0.get(i)? as usize..*self.0.get(i + 1)? as usize)
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        self.0.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the last node ends.
    pub fn end(&self) -> usize {
        self.0.last().map_or(0, |&e| e as usize)
    }
}

/// A record as written: see the module docs.
#[derive(Debug, Clone, Default)]
pub struct NoopRecord {
    pub fingerprint: [u8; 32],
    pub generation: u64,
    /// The build record's own `written_ms` when this record was made.
    pub state_written_ms: u64,
    /// Unix ms after which the record no longer holds.
    pub valid_until_ms: u64,
    /// Every present file was last touched before this (unix ns).
    pub settled_before_ns: i128,
    /// The workflow file's identity when the record was made. Never trusted to say the
    /// file is unchanged (its bytes are hashed for that); one that differs says it was
    /// written, so a record with an edit base goes to the edit path without hashing it.
    pub workflow: Option<FileId>,
    /// Variables whose values go into the fingerprint besides pflow's own.
    pub env_names: Vec<String>,
    /// Each file, and its identity (None: it must not exist).
    pub files: Vec<(String, Option<FileId>)>,
    /// Validation warning lines, as a text build prints them.
    pub warnings: Vec<String>,
    pub outputs: Vec<(String, OutputSource)>,
    /// The nodes' positions in the order the build finished them (its lines' order).
    pub order: Vec<u32>,
    /// Encoded [`NodeEntry`]s, in workflow order, from `nodes_at` on (see [`NoopRecord::push_node`]): a
    /// decoded record keeps the file's bytes, not a copy of its biggest part.
    nodes: crate::fsutil::Bytes,
    nodes_at: usize,
    nodes_end: usize,
    node_count: u32,
    /// What the edit path starts from, when the recorded build allows one. A decoded
    /// record leaves its base encoded (`edit_at`) until [`NoopRecord::take_edit`] asks
    /// for it: a no-op never does, and decoding it was a twelfth of one.
    pub edit: Option<EditBase>,
    /// Where a decoded record's encoded base starts in `nodes` (it runs to the check).
    edit_at: Option<usize>,
}

/// What an edited workflow is compared with to find what an edit changed and what it
/// reaches (`pflow build`'s edit path).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EditBase {
    /// The record's fingerprint without the workflow's bytes.
    pub context: [u8; 32],
    /// BLAKE3 of the workflow's text: what the kept copy of it must hash to.
    pub text: [u8; 32],
    /// Which pflow made it (its version and executable, as the context has them): a
    /// build whose context differs takes the layout from it only if it is this one.
    pub maker: [u8; 32],
    /// Where the nodes are in that text.
    pub layout: Layout,
    /// The positions of the nodes each node reads, flat: node i's are
    /// `deps[starts[i]..starts[i + 1]]`.
    deps: Vec<u32>,
    starts: Vec<u32>,
}

impl EditBase {
    /// An empty base with room for `nodes` nodes and `deps` dependencies.
    /// A base for the text hashing to `text`, whose nodes are where `layout` says, with
    /// room for `deps` dependencies; [`EditBase::push`] adds each node's.
    pub fn with_capacity(context: [u8; 32], text: [u8; 32], layout: Layout, deps: usize) -> Self {
        let mut starts = Vec::with_capacity(layout.nodes.len() + 1);
        starts.push(0);
        EditBase {
            context,
            text,
            maker: [0; 32],
            layout,
            deps: Vec::with_capacity(deps),
            starts,
        }
    }

    /// How many dependencies all nodes have together.
    pub fn dep_count(&self) -> usize {
        self.deps.len()
    }

    /// Add the next node's dependencies (the nodes it reads).
    pub fn push(&mut self, deps: &[u32]) {
        self.deps.extend_from_slice(deps);
        self.starts.push(self.deps.len() as u32);
    }

    /// How many nodes the base has.
    pub fn len(&self) -> usize {
        self.layout.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.layout.nodes.is_empty()
    }

    /// Make the nodes node `i` reads `deps` (in place: an edit changes a few of
    /// 10,000). `None` for a node it does not have.
    pub fn set_deps(&mut self, i: usize, deps: &[u32]) -> Option<()> {
        let (a, b) = (
            *self.starts.get(i)? as usize,
            *self.starts.get(i + 1)? as usize,
        );
        if deps.len() == b - a {
            self.deps.get_mut(a..b)?.copy_from_slice(deps);
            return Some(());
        }
        self.deps.splice(a..b, deps.iter().copied());
        let (grew, shrank) = (
            deps.len().saturating_sub(b - a),
            (b - a).saturating_sub(deps.len()),
        );
        for s in self.starts.get_mut(i + 1..)? {
            *s = (*s as usize + grew - shrank) as u32;
        }
        Some(())
    }

    /// The nodes node `i` reads.
    pub fn deps(&self, i: usize) -> &[u32] {
        match (self.starts.get(i), self.starts.get(i + 1)) {
            (Some(&a), Some(&b)) => self.deps.get(a as usize..b as usize).unwrap_or_default(),
            _ => &[],
        }
    }

    /// Write it to `w` a few pages at a time: encoded whole first, its 200 KB at
    /// 10,000 nodes were 50 page faults of fresh memory.
    fn encode<W: std::io::Write + ?Sized>(&self, w: &mut W) -> std::io::Result<()> {
        const CHUNK: usize = 16 * 1024;
        fn spill<W: std::io::Write + ?Sized>(out: &mut Vec<u8>, w: &mut W) -> std::io::Result<()> {
            if out.len() >= CHUNK {
                w.write_all(out)?;
                out.clear();
            }
            Ok(())
        }
        let mut out = Vec::with_capacity(CHUNK + 64);
        out.extend_from_slice(&self.context);
        out.extend_from_slice(&self.text);
        out.extend_from_slice(&self.maker);
        put_u32(&mut out, self.layout.open);
        put_u32(&mut out, self.layout.close);
        put_u32(&mut out, self.len() as u32);
        for (start, end) in &self.layout.nodes {
            put_u32(&mut out, *start);
            put_u32(&mut out, *end);
            spill(&mut out, w)?;
        }
        for i in 0..self.len() {
            let deps = self.deps(i);
            put_u32(&mut out, deps.len() as u32);
            for d in deps {
                put_u32(&mut out, *d);
            }
            spill(&mut out, w)?;
        }
        w.write_all(&out)
    }

    /// Read back; every dependency names a node of the record, and the nodes lie in
    /// order inside the array's brackets.
    fn decode(r: &mut Reader<'_>, node_count: u32) -> Option<EditBase> {
        let (context, text, maker) = (r.array()?, r.array()?, r.array()?);
        let (open, close) = (r.u32()?, r.u32()?);
        let n = get_count(r, 12)?;
        if n != node_count as usize {
            return None;
        }
        let mut layout = Layout {
            open,
            close,
            nodes: Vec::with_capacity(n),
        };
        let mut after = open;
        for _ in 0..n {
            let (start, end) = (r.u32()?, r.u32()?);
            if start <= after || end <= start || end > close {
                return None;
            }
            layout.nodes.push((start, end));
            after = end;
        }
        // About two dependencies a node: a guess, not a limit.
        let mut base = EditBase::with_capacity(context, text, layout, r.remaining() / 4);
        base.maker = maker;
        for _ in 0..n {
            for _ in 0..get_count(r, 4)? {
                let d = r.u32()?;
                if d >= node_count {
                    return None;
                }
                base.deps.push(d);
            }
            base.starts.push(base.deps.len() as u32);
        }
        Some(base)
    }
}

fn put_u32(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_id(out: &mut Vec<u8>, id: &FileId) {
    out.extend_from_slice(&id.size.to_le_bytes());
    out.extend_from_slice(&id.mtime_ns.to_le_bytes());
    out.extend_from_slice(&id.ctime_ns.to_le_bytes());
    out.extend_from_slice(&id.ino.to_le_bytes());
    out.extend_from_slice(&id.dev.to_le_bytes());
}

fn get_id(r: &mut Reader<'_>) -> Option<FileId> {
    Some(FileId {
        size: r.u64()?,
        mtime_ns: r.i128()?,
        ctime_ns: r.i128()?,
        ino: r.u64()?,
        dev: r.u64()?,
    })
}

fn put_node(out: &mut Vec<u8>, n: &NodeEntry<'_>) {
    put_str(out, n.id);
    put_str(out, n.node_type);
    match &n.end {
        NodeEnd::Cached {
            key,
            digest,
            duration_ms,
        } => {
            out.push(0);
            out.extend_from_slice(key);
            out.extend_from_slice(digest);
            out.extend_from_slice(&duration_ms.to_le_bytes());
        }
        NodeEnd::Skipped { reason } => {
            out.push(1);
            put_str(out, reason);
        }
    }
}

/// Read past one encoded node, without decoding it.
fn skip_node(r: &mut Reader<'_>) -> Option<()> {
    r.sized()?;
    r.sized()?;
    match r.take(1)?.first()? {
        0 => r.take(32 + 32 + 8).map(drop),
        1 => r.sized().map(drop),
        _ => None,
    }
}

/// How many whole encoded nodes `bytes` holds, `None` unless it is nothing else.
fn count_nodes(bytes: &[u8]) -> Option<u32> {
    let mut r = Reader::new(bytes, 0);
    let mut n = 0;
    while r.remaining() > 0 {
        skip_node(&mut r)?;
        n += 1;
    }
    Some(n)
}

/// A node as a record encodes it (for [`NoopRecord::save_with`]).
pub fn encode_node(n: &NodeEntry<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(80 + n.id.len() + n.node_type.len());
    put_node(&mut out, n);
    out
}

fn get_node<'a>(r: &mut Reader<'a>) -> Option<NodeEntry<'a>> {
    Some(NodeEntry {
        id: r.str()?,
        node_type: r.str()?,
        end: match r.take(1)?.first()? {
            0 => NodeEnd::Cached {
                key: r.array()?,
                digest: r.array()?,
                duration_ms: r.u64()?,
            },
            1 => NodeEnd::Skipped { reason: r.str()? },
            _ => return None,
        },
    })
}

fn get_indexes(r: &mut Reader<'_>) -> Option<Vec<u32>> {
    (0..get_count(r, 4)?).map(|_| r.u32()).collect()
}

/// A count of items that each take at least `min` bytes, checked against what is left
/// (a damaged count must not become a huge allocation).
fn get_count(r: &mut Reader<'_>, min: usize) -> Option<usize> {
    let n = r.u32()? as usize;
    (n <= r.remaining() / min.max(1)).then_some(n)
}

impl NoopRecord {
    /// Add the next node of the workflow.
    pub fn push_node(&mut self, n: &NodeEntry<'_>) {
        let nodes = self.nodes.to_mut();
        put_node(nodes, n);
        self.node_count += 1;
        self.nodes_end = nodes.len();
    }

    /// The record without its encoded nodes (and edit base): what a test builds another
    /// record's nodes into. (Builds keep the mapping to the end: see `Then::leave`.)
    #[cfg(test)]
    fn drop_nodes(&mut self) {
        self.nodes = Default::default();
        self.nodes_at = 0;
        self.nodes_end = 0;
        self.node_count = 0;
        self.edit_at = None;
    }

    /// The encoded base of a decoded record (without its check).
    fn encoded_edit(&self) -> Option<&[u8]> {
        let end = self.nodes.len().checked_sub(SUM_LEN)?;
        self.nodes.get(self.edit_at?..end)
    }

    /// The edit base's context, without decoding the rest of it.
    pub fn edit_context(&self) -> Option<[u8; 32]> {
        match &self.edit {
            Some(base) => Some(base.context),
            None => self.encoded_edit()?.first_chunk::<32>().copied(),
        }
    }

    /// The edit base, decoded now if the record was; `None` when there is none or it
    /// does not decode whole.
    pub fn take_edit(&mut self) -> Option<EditBase> {
        if let Some(base) = self.edit.take() {
            return Some(base);
        }
        let mut r = Reader::new(self.encoded_edit()?, 0);
        let base = EditBase::decode(&mut r, self.node_count).filter(|_| r.remaining() == 0);
        self.edit_at = None;
        base
    }

    pub fn node_count(&self) -> usize {
        self.node_count as usize
    }

    /// The nodes, in workflow order (a decoded record's all decode: `decode` checked
    /// them; `None` cannot happen but is not a panic).
    pub fn nodes(&self) -> impl Iterator<Item = Option<NodeEntry<'_>>> {
        let mut r = Reader::new(&self.nodes, self.nodes_at);
        (0..self.node_count).map(move |_| get_node(&mut r))
    }

    /// Where each node's encoding is in [`NoopRecord::encoded`], found without decoding
    /// the nodes (to copy runs of them into another record, [`NoopRecord::save_with`]);
    /// `None` for a damaged record.
    pub fn node_spans(&self) -> Option<NodeSpans> {
        let mut r = Reader::new(self.encoded(), 0);
        let mut at = Vec::with_capacity(self.node_count as usize + 1);
        at.push(0);
        for _ in 0..self.node_count {
            skip_node(&mut r)?;
            at.push(u32::try_from(r.offset()).ok()?);
        }
        Some(NodeSpans(at))
    }

    /// The node whose encoding is at `span` (one of [`NoopRecord::node_spans`]).
    pub fn node_at(&self, span: std::ops::Range<usize>) -> Option<NodeEntry<'_>> {
        get_node(&mut Reader::new(self.encoded().get(span)?, 0))
    }

    /// The encoded nodes, as [`NoopRecord::save`] writes them.
    pub fn encoded(&self) -> &[u8] {
        self.nodes
            .get(self.nodes_at..self.nodes_end)
            .unwrap_or_default()
    }

    /// The record's bytes as [`NoopRecord::save`] writes them.
    #[cfg(test)]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.nodes.len());
        let written = self.encode_into(&mut out, self.node_count, &[self.encoded()]);
        debug_assert!(written.is_ok(), "a Vec takes every write");
        out
    }

    /// [`NoopRecord::encode`] with `node_count` nodes encoded in `nodes` (pieces written
    /// one after another), to `w`: the encoded nodes (the biggest part) are not copied
    /// first.
    fn encode_into(
        &self,
        w: &mut impl std::io::Write,
        node_count: u32,
        nodes: &[&[u8]],
    ) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(256 + 12 * self.order.len());
        put_u32(&mut out, FORMAT);
        out.extend_from_slice(&self.fingerprint);
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&self.state_written_ms.to_le_bytes());
        out.extend_from_slice(&self.valid_until_ms.to_le_bytes());
        out.extend_from_slice(&self.settled_before_ns.to_le_bytes());
        match &self.workflow {
            Some(id) => {
                out.push(1);
                put_id(&mut out, id);
            }
            None => out.push(0),
        }
        put_u32(&mut out, self.env_names.len() as u32);
        for n in &self.env_names {
            put_str(&mut out, n);
        }
        put_u32(&mut out, self.files.len() as u32);
        for (path, id) in &self.files {
            put_str(&mut out, path);
            match id {
                Some(id) => {
                    out.push(1);
                    put_id(&mut out, id);
                }
                None => out.push(0),
            }
        }
        put_u32(&mut out, self.warnings.len() as u32);
        for w in &self.warnings {
            put_str(&mut out, w);
        }
        put_u32(&mut out, self.outputs.len() as u32);
        for (name, source) in &self.outputs {
            put_str(&mut out, name);
            match source {
                OutputSource::Template(t, nodes) => {
                    out.push(0);
                    put_str(&mut out, t);
                    put_u32(&mut out, nodes.len() as u32);
                    for n in nodes {
                        put_u32(&mut out, *n);
                    }
                }
                OutputSource::Field(nodes) => {
                    out.push(1);
                    put_u32(&mut out, nodes.len() as u32);
                    for n in nodes {
                        put_u32(&mut out, *n);
                    }
                }
            }
        }
        put_u32(&mut out, self.order.len() as u32);
        for i in &self.order {
            put_u32(&mut out, *i);
        }
        put_u32(&mut out, node_count);
        use std::io::Write;
        let mut w = super::checksum::Checked::new(w);
        for piece in std::iter::once(&out[..]).chain(nodes.iter().copied()) {
            w.write_all(piece)?;
        }
        match (&self.edit, self.encoded_edit()) {
            (Some(base), _) => {
                w.write_all(&[1])?;
                base.encode(&mut w)?;
            }
            (None, Some(encoded)) => {
                w.write_all(&[1])?;
                w.write_all(encoded)?;
            }
            (None, None) => w.write_all(&[0])?,
        }
        w.finish()
    }

    /// A record read back; `None` for anything but a whole record of this format.
    pub fn decode(bytes: impl Into<crate::fsutil::Bytes>) -> Option<NoopRecord> {
        let bytes: crate::fsutil::Bytes = bytes.into();
        let text = super::checksum::verified(&bytes)?;
        let mut r = Reader::new(text, 0);
        if r.u32()? != FORMAT {
            return None;
        }
        let mut rec = NoopRecord {
            fingerprint: r.array()?,
            generation: r.u64()?,
            state_written_ms: r.u64()?,
            valid_until_ms: r.u64()?,
            settled_before_ns: r.i128()?,
            ..NoopRecord::default()
        };
        rec.workflow = match r.take(1)?.first()? {
            1 => Some(get_id(&mut r)?),
            0 => None,
            _ => return None,
        };
        for _ in 0..get_count(&mut r, 4)? {
            rec.env_names.push(r.str()?.to_string());
        }
        for _ in 0..get_count(&mut r, 5)? {
            let path = r.str()?.to_string();
            let id = match r.take(1)?.first()? {
                0 => None,
                1 => Some(get_id(&mut r)?),
                _ => return None,
            };
            rec.files.push((path, id));
        }
        for _ in 0..get_count(&mut r, 4)? {
            rec.warnings.push(r.str()?.to_string());
        }
        for _ in 0..get_count(&mut r, 5)? {
            let name = r.str()?.to_string();
            let source = match r.take(1)?.first()? {
                0 => {
                    let text = r.str()?.to_string();
                    OutputSource::Template(text, get_indexes(&mut r)?)
                }
                1 => OutputSource::Field(get_indexes(&mut r)?),
                _ => return None,
            };
            rec.outputs.push((name, source));
        }
        rec.order = get_indexes(&mut r)?;
        // Two lengths, the end's tag and a reason's length: at least 13 bytes a node.
        rec.node_count = get_count(&mut r, 13)? as u32;
        // The order names each node once.
        let mut seen = vec![false; rec.node_count as usize];
        for &i in &rec.order {
            match seen.get_mut(i as usize) {
                Some(slot) if !*slot => *slot = true,
                _ => return None,
            }
        }
        if rec.order.len() != seen.len() {
            return None;
        }
        // The nodes' shape only: an id, a type or a reason that is no UTF-8 is refused
        // where the node is read ([`NoopRecord::nodes`], [`NoopRecord::node_at`]), and
        // a no-op reads each one once.
        rec.nodes_at = r.offset();
        for _ in 0..rec.node_count {
            skip_node(&mut r)?;
        }
        rec.nodes_end = r.offset();
        match r.take(1)?.first()? {
            0 if r.remaining() == 0 => {}
            1 => rec.edit_at = Some(r.offset()),
            _ => return None,
        }
        rec.nodes = bytes;
        Some(rec)
    }

    /// The record of workflow `name` in the cache at `root`, if there is a whole one.
    pub fn load(root: &Path, name: &str) -> Option<NoopRecord> {
        NoopRecord::decode(crate::fsutil::read_bytes_held(&path_for(root, name)).ok()?)
    }

    /// Write it (atomically: a build killed meanwhile leaves none or the whole; not
    /// synced, as the trailing sum refuses a record a crash tore).
    pub fn save(&self, root: &Path, name: &str) -> std::io::Result<()> {
        let nodes = [self.encoded()];
        super::spare::replace(&path_for(root, name), |w| {
            self.encode_into(w, self.node_count, &nodes)
        })
    }

    /// [`NoopRecord::save`], with `node_count` nodes encoded in `nodes` in place of its
    /// own: runs of another record's ([`NoopRecord::node_spans`]) and nodes encoded
    /// anew ([`encode_node`]), so that a record made from another is written without
    /// a copy of it in memory first.
    pub fn save_with(
        &self,
        root: &Path,
        name: &str,
        node_count: u32,
        nodes: &[&[u8]],
    ) -> std::io::Result<()> {
        debug_assert_eq!(
            nodes.iter().map(|p| count_nodes(p)).sum::<Option<u32>>(),
            Some(node_count),
            "the pieces hold whole nodes, as many as said"
        );
        super::spare::replace(&path_for(root, name), |w| {
            self.encode_into(w, node_count, nodes)
        })
    }

    /// The first file that is not as recorded (or is too recent to vouch for), named.
    pub fn changed_file(&self) -> Option<&str> {
        self.files
            .iter()
            .find(|(path, id)| !unchanged(Path::new(path), id.as_ref(), self.settled_before_ns))
            .map(|(path, _)| path.as_str())
    }
}

/// Is the file at `path` as recorded: absent when `id` is None, else with that identity
/// and last touched before `settled_before_ns`?
pub fn unchanged(path: &Path, id: Option<&FileId>, settled_before_ns: i128) -> bool {
    match (stat(path), id) {
        (None, None) => std::fs::symlink_metadata(path).is_err(),
        (Some(now), Some(id)) => now == *id && now.touched_ns() < settled_before_ns,
        _ => false,
    }
}

/// Take workflow `name`'s record away (its file kept as a spare for the next one,
/// [`super::spare`]): a build that may change anything does this first. Whether it is
/// gone (true when there was none).
pub fn forget(root: &Path, name: &str) -> bool {
    // The record as pflow before spares named it: never read now, only in the way.
    let legacy = path_for(root, name).with_extension(super::layout::LEGACY_NOOP);
    let _ = crate::fsutil::remove_record(&legacy);
    super::spare::set_aside(&path_for(root, name)).is_ok()
}

fn path_for(root: &Path, name: &str) -> PathBuf {
    super::layout::record_path(root, name, super::layout::Record::Noop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NoopRecord {
        let mut rec = NoopRecord {
            fingerprint: [3; 32],
            generation: 4,
            state_written_ms: 5,
            valid_until_ms: 6,
            settled_before_ns: -7,
            workflow: Some(FileId {
                size: 9,
                mtime_ns: 10,
                ctime_ns: 11,
                ino: 12,
                dev: 13,
            }),
            env_names: vec!["HOME".into(), "TOKEN".into()],
            files: vec![
                (
                    "in.txt".into(),
                    Some(FileId {
                        size: 1,
                        mtime_ns: 2,
                        ctime_ns: 3,
                        ino: 4,
                        dev: 5,
                    }),
                ),
                ("gone.txt".into(), None),
            ],
            warnings: vec!["warning: x".into()],
            outputs: vec![
                (
                    "a".into(),
                    OutputSource::Template("${n1.stdout}".into(), vec![1]),
                ),
                ("b".into(), OutputSource::Field(vec![2, 0])),
            ],
            ..NoopRecord::default()
        };
        for i in 0..3u32 {
            rec.push_node(&NodeEntry {
                id: &format!("n{i}"),
                node_type: "echo",
                end: NodeEnd::Cached {
                    key: [i as u8; 32],
                    digest: [9; 32],
                    duration_ms: u64::from(i) * 10,
                },
            });
        }
        rec.push_node(&NodeEntry {
            id: "handler",
            node_type: "shell",
            end: NodeEnd::Skipped {
                reason: "n2 succeeded, so its error handler is not needed",
            },
        });
        rec.order = vec![1, 0, 2, 3];
        let layout = Layout {
            open: 10,
            close: 50,
            nodes: vec![(11, 15), (17, 20), (22, 30), (31, 49)],
        };
        let mut base = EditBase::with_capacity([1; 32], [2; 32], layout, 0);
        for deps in [vec![], vec![0], vec![0, 1], vec![2]] {
            base.push(&deps);
        }
        rec.edit = Some(base);
        rec
    }

    #[test]
    fn a_nodes_dependencies_change_in_place() {
        let mut base = sample().edit.expect("a base");
        base.set_deps(1, &[0]).expect("node 1, as it was");
        base.set_deps(2, &[1]).expect("node 2, one fewer");
        base.set_deps(0, &[3, 2]).expect("node 0, two more");
        let all: Vec<Vec<u32>> = (0..4).map(|i| base.deps(i).to_vec()).collect();
        assert_eq!(all, [vec![3, 2], vec![0], vec![1], vec![2]]);
        assert_eq!(base.dep_count(), 5);
        assert!(base.set_deps(4, &[]).is_none(), "no node 4");
    }

    #[test]
    fn records_decode_to_what_was_encoded_and_damage_is_refused() {
        let rec = sample();
        let bytes = rec.encode();
        let back = NoopRecord::decode(bytes.clone()).expect("decodes");
        assert_eq!(back.encode(), bytes);
        let nodes: Vec<_> = back.nodes().collect::<Option<_>>().expect("nodes decode");
        assert_eq!(nodes.len(), 4);
        assert_eq!(nodes[2].id, "n2");
        assert!(matches!(
            nodes[2].end,
            NodeEnd::Cached {
                duration_ms: 20,
                ..
            }
        ));
        assert!(matches!(nodes[3].end, NodeEnd::Skipped { reason } if reason.starts_with("n2 ")));
        assert_eq!(
            back.edit_context(),
            Some(rec.edit.as_ref().unwrap().context)
        );
        let base = back.clone().take_edit().expect("the edit base decodes");
        assert_eq!(
            (base.len(), base.deps(2), base.deps(3)),
            (4, &[0, 1][..], &[2][..])
        );
        assert_eq!(base.layout.nodes[3], (31, 49));
        let mut without = rec.clone();
        without.edit = None;
        let mut back = NoopRecord::decode(without.encode()).expect("decodes without a base");
        assert_eq!(back.edit_context(), None);
        assert!(back.take_edit().is_none());
        // A base that does not hold is found when the edit path asks for it (a no-op
        // never does), and then there is none.
        let mut bad = rec.clone();
        if let Some(b) = bad.edit.as_mut() {
            b.layout.nodes.push((49, 50));
            b.push(&[0]);
        }
        let mut back = NoopRecord::decode(bad.encode()).expect("the rest decodes");
        assert!(back.take_edit().is_none(), "a base of another length");
        let mut disordered = rec.clone();
        if let Some(b) = disordered.edit.as_mut() {
            b.layout.nodes.swap(0, 1);
        }
        let mut back = NoopRecord::decode(disordered.encode()).expect("the rest decodes");
        assert!(back.take_edit().is_none(), "nodes out of order");
        // A node id that is no UTF-8 (under a check that holds): refused where the
        // node is read.
        let mut foreign = bytes.clone();
        let at = foreign
            .windows(6)
            .position(|w| w == [2, 0, 0, 0, b'n', b'2'])
            .expect("n2's id")
            + 4;
        foreign[at] = 0xff;
        let body = foreign.len() - SUM_LEN;
        let check = crate::cache::checksum::of(&foreign[..body]);
        foreign[body..].copy_from_slice(&check);
        let back = NoopRecord::decode(foreign).expect("its shape holds");
        assert!(back.nodes().any(|n| n.is_none()));
        for cut in 0..bytes.len() {
            assert!(
                NoopRecord::decode(bytes[..cut].to_vec()).is_none(),
                "torn at {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(NoopRecord::decode(longer).is_none(), "trailing bytes");
        let mut twice = rec.clone();
        twice.order = vec![1, 1, 2, 3];
        assert!(NoopRecord::decode(twice.encode()).is_none(), "a node twice");
        let mut short = rec.clone();
        short.order.pop();
        assert!(
            NoopRecord::decode(short.encode()).is_none(),
            "a node left out"
        );
        let mut other = bytes.clone();
        other[0] = 9;
        assert!(NoopRecord::decode(other).is_none(), "another format");
        for at in [4, bytes.len() / 2, bytes.len() - 20, bytes.len() - 1] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 1;
            assert!(
                NoopRecord::decode(flipped).is_none(),
                "a byte changed at {at}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_or_are_refused(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            if let Some(mut rec) = NoopRecord::decode(bytes.clone()) {
                proptest::prop_assert_eq!(rec.encode(), bytes);
                // Read whole, as the edit path does: never a panic.
                let _ = rec.nodes().count();
                let _ = rec.take_edit();
            }
        }
    }

    #[test]
    fn files_must_keep_their_identity_and_be_settled() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("in.txt");
        std::fs::write(&f, "x").unwrap();
        let id = stat(&f).unwrap();
        let later = id.touched_ns() + 1;
        assert!(unchanged(&f, Some(&id), later));
        assert!(!unchanged(&f, Some(&id), id.touched_ns()), "racy");
        assert!(!unchanged(&f, None, later), "must be absent");
        std::fs::write(&f, "yy").unwrap();
        assert!(!unchanged(&f, Some(&id), i128::MAX), "edited");
        std::fs::remove_file(&f).unwrap();
        assert!(unchanged(&f, None, later));
        assert!(!unchanged(&f, Some(&id), later), "deleted");
        // A dangling link is something where nothing must be.
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &f).unwrap();
        assert!(!unchanged(&f, None, later));
    }

    #[test]
    fn a_record_saved_from_runs_of_another_and_fresh_nodes_is_the_one_pushed_whole() {
        let rec = sample();
        let spans = rec.node_spans().expect("spans");
        assert_eq!(spans.len(), 4);
        assert_eq!(spans.end(), rec.encoded().len());
        let spans: Vec<_> = (0..4).map(|i| spans.get(i).expect("a span")).collect();
        let nodes: Vec<_> = rec.nodes().collect::<Option<_>>().expect("nodes");
        for (span, node) in spans.iter().zip(&nodes) {
            let back = rec.node_at(span.clone()).expect("a span is a node");
            assert_eq!((back.id, back.node_type), (node.id, node.node_type));
        }
        // Node 1 replaced: nodes 0, then the fresh one, then 2 and 3 as one run.
        let new_one = NodeEntry {
            id: "n1",
            node_type: "echo",
            end: NodeEnd::Cached {
                key: [7; 32],
                digest: [8; 32],
                duration_ms: 99,
            },
        };
        let fresh = encode_node(&new_one);
        let e = rec.encoded();
        let pieces = [
            &e[spans[0].clone()],
            &fresh[..],
            &e[spans[2].start..spans[3].end],
        ];
        assert_eq!(count_nodes(&pieces.concat()), Some(4));
        assert_eq!(
            count_nodes(&e[..spans[1].end - 1]),
            None,
            "a node cut short"
        );
        let mut bare = rec.clone();
        bare.drop_nodes();
        let dir = tempfile::tempdir().unwrap();
        bare.save_with(dir.path(), "wf.json", 4, &pieces).unwrap();
        let mut whole = bare.clone();
        for (i, node) in nodes.iter().enumerate() {
            whole.push_node(if i == 1 { &new_one } else { node });
        }
        let loaded = NoopRecord::load(dir.path(), "wf.json").expect("loads");
        assert_eq!(loaded.encode(), whole.encode());
        let mut damaged = rec.encoded().to_vec();
        damaged[spans[1].start + 4 + 2 + 4 + 4] = 5; // n1's end: neither cached nor skipped
        let r = NoopRecord {
            nodes_end: damaged.len(),
            nodes: crate::fsutil::Bytes::Owned(damaged),
            node_count: 4,
            ..NoopRecord::default()
        };
        assert_eq!(r.node_spans(), None, "a damaged node has no span");
        let mut first = r.clone();
        first.node_count = 1;
        assert_eq!(
            first.node_spans().and_then(|s| s.get(0)),
            Some(spans[0].clone())
        );
    }

    #[test]
    fn a_saved_record_loads_and_forget_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        assert!(NoopRecord::load(dir.path(), "wf.json").is_none());
        assert!(forget(dir.path(), "wf.json"), "nothing to remove is fine");
        sample().save(dir.path(), "wf.json").unwrap();
        let loaded = NoopRecord::load(dir.path(), "wf.json").expect("loads");
        assert_eq!(loaded.encode(), sample().encode());
        assert_eq!(loaded.files, sample().files);
        assert!(NoopRecord::load(dir.path(), "other.json").is_none());
        assert!(forget(dir.path(), "wf.json"));
        assert!(NoopRecord::load(dir.path(), "wf.json").is_none());
    }
}
