//! Node keys: a BLAKE3 hash over everything that can change a node's result.
//!
//! A key is built from named components, each reduced to a 32-byte digest first, so the
//! recorded *preimage* (component name → digest) lets `--explain` say exactly what changed
//! between two builds without ever storing a value (secrets included) in the cache.
//!
//! Components: the engine's cache version, the node id, its type and implementation
//! version, every static param (templates unresolved), the batch config, the cache
//! policy, the output digest of every dependency, the value of every workflow input the
//! node reads, the content digest of every file it reads, the environment variables it
//! declares (`reads_env`; a secret's value is sealed: keyed, never in the preimage) and,
//! for a shell node, strict mode when it is on, and for a batch item the item (and its
//! position when the params read `${__index__}`). Nothing machine-specific (no
//! absolute paths of the workflow or the cache, no host or user names) goes in, so
//! checkouts in different folders and machines share entries.

use std::collections::BTreeMap;
use std::fmt;

/// Bumped when the meaning of cached entries changes.
pub const ENGINE_CACHE_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub [u8; 32]);

impl Key {
    pub fn hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

/// Keys are BLAKE3 outputs, already uniform: a map keyed by them hashes 8 of their bytes
/// instead of running SipHash over all 32.
#[derive(Default)]
pub struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(word);
    }

    fn write_usize(&mut self, _len: usize) {
        // The length prefix of the key's bytes: always 32.
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map keyed by node keys.
pub type KeyMap<V> = std::collections::HashMap<Key, V, std::hash::BuildHasherDefault<KeyHasher>>;

/// Component name → digest (the first 16 hex digits). Safe to store: it holds no values.
pub type Preimage = BTreeMap<String, String>;

/// The keyed-hash key for components, derived once per process (derive-key mode over a
/// purpose string with a schema version, as DESIGN §3 asks, without re-deriving per call).
fn component_key() -> &'static [u8; 32] {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    KEY.get_or_init(|| blake3::derive_key("pflow 2026-11 key component v1", b""))
}

/// A component's name: `"engine"`, or a kind and a name, `("param", "command")`, which
/// stands for `"param:command"` without building that string.
pub trait ComponentName {
    fn write_to(&self, out: &mut String);
}

impl ComponentName for &str {
    fn write_to(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl ComponentName for (&str, &str) {
    fn write_to(&self, out: &mut String) {
        out.push_str(self.0);
        out.push(':');
        out.push_str(self.1);
    }
}

/// The digest of the engine component, the same for every key.
fn engine_digest() -> [u8; 32] {
    static DIGEST: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    *DIGEST.get_or_init(|| {
        *blake3::keyed_hash(component_key(), ENGINE_CACHE_VERSION.to_string().as_bytes()).as_bytes()
    })
}

#[derive(Debug, Default, Clone)]
pub struct KeyBuilder {
    /// Component names back to back, so that adding a component allocates nothing.
    names: String,
    /// (where its name is in `names`, digest, sealed), in the order added; for a name
    /// added twice, the later one counts. A sealed component counts in the key but its
    /// digest never reaches the preimage (a secret's).
    parts: Vec<(std::ops::Range<usize>, [u8; 32], bool)>,
    /// Which parts count, in name order ([`KeyBuilder::components`]), once asked: a
    /// build asks for the key and then for the preimage, and sorting the parts twice
    /// was a twentieth of a worker's instructions on the 10,000-node chain.
    order: std::cell::OnceCell<Vec<u32>>,
}

/// Components of a key worked out ahead, none sealed ([`KeyBuilder::parts`]): what a
/// node's own definition puts in its key, kept with its compiled form
/// ([`crate::node_form`]) so that a build that runs it again starts from them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyParts {
    /// The names back to back.
    names: String,
    /// Where each name ends in `names` (it starts where the one before ends), and its
    /// digest, in the order added.
    ends: Vec<(usize, [u8; 32])>,
}

impl KeyParts {
    /// Add the component `name` of digest `digest`.
    pub fn push(&mut self, name: &str, digest: [u8; 32]) {
        self.names.push_str(name);
        self.ends.push((self.names.len(), digest));
    }

    /// The names back to back.
    pub fn names(&self) -> &str {
        &self.names
    }

    /// Each component's name length (in [`KeyParts::names`], one after another) and
    /// digest.
    pub fn lens(&self) -> impl ExactSizeIterator<Item = (usize, &[u8; 32])> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |(end, digest)| {
            let len = end.saturating_sub(start);
            start = *end;
            (len, digest)
        })
    }

    /// Parts of names `names` (back to back) of these lengths and digests, if the
    /// lengths split `names` into whole characters and cover all of it.
    pub fn of(names: String, lens: impl IntoIterator<Item = (usize, [u8; 32])>) -> Option<Self> {
        let mut end = 0usize;
        let mut ends = Vec::new();
        for (len, digest) in lens {
            end = end.checked_add(len)?;
            if !names.is_char_boundary(end) {
                return None;
            }
            ends.push((end, digest));
        }
        (end == names.len()).then_some(KeyParts { names, ends })
    }
}

/// What the preimage shows for a sealed component, whatever its value: the first 16 hex
/// digits of the keyed hash of this marker.
const SEALED_MARKER: &[u8] = b"pflow sealed component: value not recorded";

/// The preimage digest every sealed component shows.
pub fn sealed_digest() -> String {
    format!("{:016x}", sealed_short())
}

/// [`sealed_digest`] as a number.
fn sealed_short() -> u64 {
    static SHORT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SHORT.get_or_init(|| first_64(blake3::keyed_hash(component_key(), SEALED_MARKER).as_bytes()))
}

/// The first 16 hex digits of a digest, as the number they spell.
fn first_64(digest: &[u8; 32]) -> u64 {
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(head)
}

/// A preimage component as records keep it: its name, and its digest's first 64 bits
/// (what the preimage shows as 16 hex digits). Lists of them are in name order, each
/// name once.
pub type Short<'a> = (&'a str, u64);

impl KeyBuilder {
    pub fn new() -> Self {
        let mut b = KeyBuilder {
            names: String::with_capacity(128),
            parts: Vec::with_capacity(8),
            order: std::cell::OnceCell::new(),
        };
        b.add_digest("engine", engine_digest());
        b
    }

    /// Add a component from raw bytes.
    pub fn add_bytes(&mut self, name: impl ComponentName, bytes: &[u8]) {
        let digest = blake3::keyed_hash(component_key(), bytes);
        self.add_digest(name, *digest.as_bytes());
    }

    pub fn add_text(&mut self, name: impl ComponentName, text: &str) {
        self.add_bytes(name, text.as_bytes());
    }

    /// Add a component whose bytes are `pieces` one after the other (as if joined first).
    pub fn add_pieces(&mut self, name: impl ComponentName, pieces: &[&[u8]]) {
        let mut h = blake3::Hasher::new_keyed(component_key());
        for p in pieces {
            h.update(p);
        }
        self.add_digest(name, *h.finalize().as_bytes());
    }

    /// Add a component whose digest is already computed.
    pub fn add_digest(&mut self, name: impl ComponentName, digest: [u8; 32]) {
        let start = self.names.len();
        name.write_to(&mut self.names);
        self.parts.push((start..self.names.len(), digest, false));
        self.order.take();
    }

    /// Add a component from `pieces` (as [`Self::add_pieces`]) that counts in the key
    /// but shows in the preimage only as [`sealed_digest`]: a secret's value must not be
    /// recorded even as a short digest that a guess could be checked against.
    pub fn add_sealed(&mut self, name: impl ComponentName, pieces: &[&[u8]]) {
        self.add_pieces(name, pieces);
        if let Some(last) = self.parts.last_mut() {
            last.2 = true;
        }
    }

    pub fn add_value(&mut self, name: impl ComponentName, v: &serde_json::Value) {
        self.add_bytes(name, &crate::canonical::to_key_bytes(v));
    }

    /// What was added to this builder since [`KeyBuilder::new`], to start another with
    /// ([`KeyBuilder::from_parts`]), if none of it is sealed: a sealed component's digest
    /// is kept nowhere.
    pub fn parts(&self) -> Option<KeyParts> {
        let added = self.parts.get(1..)?;
        if added.iter().any(|(_, _, sealed)| *sealed) {
            return None;
        }
        let mut parts = KeyParts::default();
        for (range, digest, _) in added {
            parts.push(self.names.get(range.clone())?, *digest);
        }
        Some(parts)
    }

    /// A new builder ([`KeyBuilder::new`]) with `parts` added.
    pub fn from_parts(parts: &KeyParts) -> Self {
        let mut b = KeyBuilder::new();
        let mut start = 0;
        for &(end, digest) in &parts.ends {
            if let Some(name) = parts.names.get(start..end) {
                b.add_digest(name, digest);
            }
            start = end;
        }
        b
    }

    pub fn remove(&mut self, name: &str) {
        let names = &self.names;
        self.parts.retain(|(r, _, _)| &names[r.clone()] != name);
        self.order.take();
    }

    /// The components in name order, each name once (the last added wins).
    fn components(&self) -> impl Iterator<Item = (&str, &[u8; 32], bool)> + '_ {
        let order = self.order.get_or_init(|| {
            let mut all: Vec<(&str, u32)> = (self.parts.iter().zip(0u32..))
                .map(|((r, _, _), i)| (&self.names[r.clone()], i))
                .collect();
            // Stable: equal names stay in the order added, and the last of them is kept.
            all.sort_by(|a, b| a.0.cmp(b.0));
            all.dedup_by(|later, kept| {
                let same = later.0 == kept.0;
                if same {
                    *kept = *later;
                }
                same
            });
            all.into_iter().map(|(_, i)| i).collect()
        });
        order.iter().filter_map(move |&i| {
            let (r, d, sealed) = self.parts.get(i as usize)?;
            Some((&self.names[r.clone()], d, *sealed))
        })
    }

    pub fn finish(&self) -> Key {
        static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
        let key = KEY.get_or_init(|| blake3::derive_key("pflow 2026-11 node key v1", b""));
        // One buffer, one hash: many tiny `update` calls cost more than the hashing.
        let mut buf = Vec::with_capacity(self.names.len() + self.parts.len() * 40);
        for (name, digest, _) in self.components() {
            buf.extend_from_slice(&(name.len() as u64).to_le_bytes());
            buf.extend_from_slice(name.as_bytes());
            buf.extend_from_slice(digest);
        }
        let h = blake3::keyed_hash(key, &buf);
        Key(*h.as_bytes())
    }

    pub fn preimage(&self) -> Preimage {
        self.short()
            .into_iter()
            .map(|(name, d)| (name.to_string(), format!("{d:016x}")))
            .collect()
    }

    /// The preimage without a string made per component: what records keep and
    /// explanations compare.
    pub fn short(&self) -> Vec<Short<'_>> {
        self.components()
            .map(|(name, d, sealed)| (name, if sealed { sealed_short() } else { first_64(d) }))
            .collect()
    }
}

/// Describe what differs between two preimages, most telling first:
/// `param command changed`, `upstream fetch changed`, `input file data.csv changed`.
/// Both in name order, each name once (as [`KeyBuilder::short`] gives them).
pub fn explain_change(old: &[Short<'_>], new: &[Short<'_>]) -> Option<String> {
    // Written straight into one string: an edit near the start explains every node.
    let mut text = String::with_capacity(64);
    let mut removed: Vec<&str> = Vec::new();
    let (mut o, mut n) = (old.iter().peekable(), new.iter().peekable());
    loop {
        match (o.peek(), n.peek()) {
            (Some(a), Some(b)) if a.0 == b.0 => {
                if a.1 != b.1 {
                    describe_into(&mut text, b.0, "changed");
                }
                o.next();
                n.next();
            }
            (Some(a), Some(b)) if a.0 < b.0 => {
                removed.push(a.0);
                o.next();
            }
            (_, Some(b)) => {
                describe_into(&mut text, b.0, "added");
                n.next();
            }
            (Some(a), None) => {
                removed.push(a.0);
                o.next();
            }
            (None, None) => break,
        }
    }
    for name in removed {
        describe_into(&mut text, name, "removed");
    }
    (!text.is_empty()).then_some(text)
}

/// When the key moved but no recorded digest did, a sealed component changed: say
/// which ones it may have been (`environment variable DB_PASSWORD changed (secret: its
/// value is not recorded)`). None when the preimage has no sealed component.
pub fn explain_sealed_change(now: &[Short<'_>]) -> Option<String> {
    let marker = sealed_short();
    let names: Vec<String> = now
        .iter()
        .filter(|(_, d)| *d == marker)
        .map(|(name, _)| describe(name, ""))
        .map(|s| s.trim_end().to_string())
        .collect();
    match names.len() {
        0 => None,
        1 => Some(format!(
            "{} changed (secret: its value is not recorded)",
            names[0]
        )),
        _ => Some(format!(
            "one of {} changed (secrets: their values are not recorded)",
            names.join(", ")
        )),
    }
}

fn describe(component: &str, what: &str) -> String {
    let mut text = String::new();
    describe_into(&mut text, component, what);
    text
}

/// Append what happened to `component` to `text`, after a ", " if it is not empty.
fn describe_into(text: &mut String, component: &str, what: &str) {
    if !text.is_empty() {
        text.push_str(", ");
    }
    let (kind, name) = component.split_once(':').unwrap_or((component, ""));
    let (prefix, name) = match kind {
        "param" => ("param ", name),
        "dep" => ("upstream ", name),
        "input" => ("input ", name),
        "file" => ("input file ", name),
        "type" => ("node type", ""),
        "batch" => ("batch config", ""),
        "item" => ("batch item", ""),
        "index" => ("batch index", ""),
        "cache" => ("cache policy", ""),
        "reads" | "writes" => ("declared ", kind),
        "env" => ("environment variable ", name),
        "env-mode" => ("strict environment mode", ""),
        "engine" => {
            text.push_str("pflow cache version changed");
            return;
        }
        other => (other, ""),
    };
    text.push_str(prefix);
    text.push_str(name);
    text.push(' ');
    text.push_str(what);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_builder_started_from_parts_gives_the_key_and_preimage_they_were_taken_from() {
        let mut a = KeyBuilder::new();
        a.add_text("id", "fetch");
        a.add_value(("param", "url"), &serde_json::json!("https://example.com"));
        a.add_text("id", "fetch-2");
        let parts = a.parts().unwrap();
        let mut b = KeyBuilder::from_parts(&parts);
        assert_eq!(b.finish(), a.finish());
        assert_eq!(b.short(), a.short());
        // And goes on as a builder: what is added after counts as it would have.
        a.add_digest(("dep", "x"), [7; 32]);
        b.add_digest(("dep", "x"), [7; 32]);
        assert_eq!(b.finish(), a.finish());
        assert_ne!(b.finish(), KeyBuilder::from_parts(&parts).finish());
    }

    #[test]
    fn a_builder_with_a_sealed_component_gives_no_parts() {
        let mut a = KeyBuilder::new();
        a.add_text("id", "n");
        assert!(a.parts().is_some());
        a.add_sealed(("param", "token"), &[b"hunter2"]);
        assert_eq!(a.parts(), None);
    }

    #[test]
    fn order_of_adding_does_not_matter() {
        let mut a = KeyBuilder::new();
        a.add_text("param:x", "1");
        a.add_text("param:y", "2");
        let mut b = KeyBuilder::new();
        b.add_text("param:y", "2");
        b.add_text("param:x", "1");
        assert_eq!(a.finish(), b.finish());
    }

    #[test]
    fn a_name_added_twice_counts_once_with_its_last_digest() {
        let mut a = KeyBuilder::new();
        a.add_text("param:x", "1");
        a.add_text(("param", "x"), "2");
        let mut b = KeyBuilder::new();
        b.add_text("param:x", "2");
        assert_eq!(a.finish(), b.finish());
        assert_eq!(a.preimage(), b.preimage());
        b.remove("param:x");
        assert_eq!(b.preimage().len(), 1, "only the engine is left");
    }

    #[test]
    fn a_builder_asked_for_its_key_then_changed_gives_the_changed_key() {
        // The order of the components is kept once asked for: a change must drop it.
        let mut a = KeyBuilder::new();
        a.add_text("param:y", "2");
        let _ = (a.finish(), a.short());
        a.add_text("param:x", "1");
        a.add_text("param:z", "3");
        let mut b = KeyBuilder::new();
        b.add_text("param:x", "1");
        b.add_text("param:y", "2");
        b.add_text("param:z", "3");
        assert_eq!(a.finish(), b.finish());
        assert_eq!(a.short(), b.short());
        a.remove("param:x");
        b = KeyBuilder::new();
        b.add_text("param:y", "2");
        b.add_text("param:z", "3");
        assert_eq!(a.finish(), b.finish());
        assert_eq!(a.preimage(), b.preimage());
    }

    #[test]
    fn keys_are_stable_across_releases() {
        // Shared caches depend on this: a change here must bump ENGINE_CACHE_VERSION.
        let mut kb = KeyBuilder::new();
        kb.add_text("id", "fetch");
        kb.add_text(("param", "command"), "echo hi");
        kb.add_digest(("dep", "up"), [7; 32]);
        assert_eq!(
            kb.finish().hex(),
            "a17b85d55e246176a8672550854aebf766512fc3975d5f5249bf5704ae3a8f2b"
        );
    }

    #[test]
    fn pieces_hash_as_their_concatenation() {
        let mut a = KeyBuilder::new();
        a.add_text("type", "shell@1");
        let mut b = KeyBuilder::new();
        b.add_pieces("type", &[b"shell", b"@", b"1"]);
        assert_eq!(a.finish(), b.finish());
    }

    #[test]
    fn component_names_are_not_ambiguous() {
        let mut a = KeyBuilder::new();
        a.add_text("param:ab", "c");
        let mut b = KeyBuilder::new();
        b.add_text("param:a", "bc");
        assert_ne!(a.finish(), b.finish());
    }

    #[test]
    fn a_sealed_component_keys_on_its_value_and_records_none_of_it() {
        let sealed = |v: &[u8]| {
            let mut kb = KeyBuilder::new();
            kb.add_text("id", "n");
            kb.add_sealed(("env", "DB_PASSWORD"), &[b"1", v]);
            kb
        };
        let (a, b) = (sealed(b"hunter2"), sealed(b"hunter3"));
        assert_ne!(a.finish(), b.finish(), "the value is part of the key");
        assert_eq!(
            a.preimage(),
            b.preimage(),
            "the preimage does not depend on it"
        );
        assert_eq!(a.preimage()["env:DB_PASSWORD"], sealed_digest());
        assert_eq!(explain_change(&a.short(), &b.short()), None);
        assert_eq!(
            explain_sealed_change(&b.short()).unwrap(),
            "environment variable DB_PASSWORD changed (secret: its value is not recorded)"
        );
        let mut plain = KeyBuilder::new();
        plain.add_pieces(("env", "DB_PASSWORD"), &[b"1", b"hunter2"]);
        assert_eq!(plain.finish(), {
            let mut k = KeyBuilder::new();
            k.add_sealed(("env", "DB_PASSWORD"), &[b"1", b"hunter2"]);
            k.finish()
        });
        assert_eq!(explain_sealed_change(&plain.short()), None);
    }

    #[test]
    fn the_short_preimage_is_the_preimage_as_numbers() {
        let mut kb = KeyBuilder::new();
        kb.add_text("param:x", "1");
        kb.add_sealed(("env", "TOKEN"), &[b"1", b"s3cret"]);
        let hex: Vec<(String, String)> = kb.preimage().into_iter().collect();
        let short: Vec<(String, String)> = kb
            .short()
            .into_iter()
            .map(|(n, d)| (n.to_string(), format!("{d:016x}")))
            .collect();
        assert_eq!(hex, short);
        let x = blake3::keyed_hash(component_key(), b"1").to_hex();
        assert_eq!(kb.preimage()["param:x"], x[..16]);
    }

    #[test]
    fn a_change_lists_changed_and_added_in_name_order_then_removed() {
        let old = [("dep:a", 1), ("param:a", 1), ("param:c", 3)];
        let new = [("dep:a", 1), ("param:b", 2), ("param:c", 4), ("param:d", 5)];
        assert_eq!(
            explain_change(&old, &new).unwrap(),
            "param b added, param c changed, param d added, param a removed"
        );
        assert_eq!(explain_change(&new, &new), None);
        assert_eq!(
            explain_change(&new, &[]).unwrap(),
            "upstream a removed, param b removed, param c removed, param d removed"
        );
    }

    #[test]
    fn every_kind_of_component_is_told_in_words() {
        let cases = [
            ("param:cmd", "param cmd changed"),
            ("dep:fetch", "upstream fetch changed"),
            ("input:n", "input n changed"),
            ("file:a.txt", "input file a.txt changed"),
            ("type", "node type changed"),
            ("batch", "batch config changed"),
            ("item", "batch item changed"),
            ("index", "batch index changed"),
            ("cache", "cache policy changed"),
            ("reads", "declared reads changed"),
            ("writes", "declared writes changed"),
            ("env:HOME", "environment variable HOME changed"),
            ("env-mode", "strict environment mode changed"),
            ("engine", "pflow cache version changed"),
            ("identity", "identity changed"),
        ];
        for (component, told) in cases {
            assert_eq!(
                explain_change(&[(component, 1)], &[(component, 2)]).unwrap(),
                told
            );
        }
    }

    #[test]
    fn explains_changes() {
        let mut a = KeyBuilder::new();
        a.add_text("param:command", "echo 1");
        a.add_text("dep:fetch", "d1");
        let mut b = a.clone();
        b.add_text("param:command", "echo 2");
        assert_eq!(
            explain_change(&a.short(), &b.short()).unwrap(),
            "param command changed"
        );
        let mut c = a.clone();
        c.add_text("dep:fetch", "d2");
        c.add_text("file:data.csv", "x");
        assert_eq!(
            explain_change(&a.short(), &c.short()).unwrap(),
            "upstream fetch changed, input file data.csv added"
        );
        let mut d = a.clone();
        d.add_text("env:PFLOW_MODEL", "x");
        assert_eq!(
            explain_change(&a.short(), &d.short()).unwrap(),
            "environment variable PFLOW_MODEL added"
        );
    }
}
