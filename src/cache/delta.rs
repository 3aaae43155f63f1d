//! A record table saved in two layers: a base, rewritten whole now and then, and a small
//! delta beside it that a save of a few rows replaces instead.
//!
//! An edit of one node near the end of a 10,000-node workflow decides a dozen nodes, but
//! rewriting its build and `--explain` records whole wrote two megabytes and was a fifth
//! of the build. So a save that keeps every row and changes few of them writes only the
//! changed rows, with the earlier delta's, as the delta; the base is rewritten (and the
//! delta removed) when the delta would hold more than [`DELTA_SHARE`] of the base's rows
//! or the save drops rows. As ninja's log, the cost of a save follows what changed, not
//! the size of the workflow.
//!
//! Each base carries a random tag, written again into the delta made on it: a delta is
//! used only over the base it names, so a delta left behind by a base rewritten since
//! (a crash between the rewrite and the removal, another build) is ignored, never
//! applied to rows it did not see. A row in the delta hides the base's row of the same
//! id.

use super::table::Table;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// The largest delta, as a share of the base's rows (and at least [`DELTA_MIN`] rows):
/// a lookup asks the delta first, and a save rewrites it whole.
pub const DELTA_SHARE: usize = 8;
pub const DELTA_MIN: usize = 64;

/// Which loaded rows a save keeps, by id, of those the updates do not replace.
#[derive(Clone, Copy)]
pub enum Keep<'a> {
    /// Every one (and the save may write only a delta).
    All,
    /// Those whose id passes.
    If(&'a dyn Fn(&[u8]) -> bool),
    /// None: the updates hold a row for every id worth keeping (every node of the
    /// workflow decided anew), so the save writes them alone without reading the
    /// loaded rows, as a first save does (merging 10,000 rows that are all replaced
    /// was an edit's only extra work in saving its records).
    Nothing,
}

/// A base table and the delta over it.
#[derive(Debug, Default)]
pub struct Overlay {
    base: Table,
    delta: Table,
    /// The base's tag; `None` when no base was loaded (a save then writes one).
    tag: Option<u64>,
}

/// How a save writes the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Save {
    /// Only the delta: the earlier delta's rows with the updates.
    Delta,
    /// The base, with the delta and the updates merged into it; the delta removed.
    Whole,
}

impl Overlay {
    /// The base tagged `tag`, with `delta` over it: the caller has checked that the
    /// delta's file names this tag (else it passes an empty table).
    pub fn new(base: Table, tag: u64, delta: Table) -> Overlay {
        Overlay {
            base,
            delta,
            tag: Some(tag),
        }
    }

    /// At least as many rows as there are ids (an id in both layers counts twice).
    pub fn len(&self) -> usize {
        self.base.len() + self.delta.len()
    }

    pub fn is_empty(&self) -> bool {
        self.base.is_empty() && self.delta.is_empty()
    }

    /// See [`Table::hash_ahead`].
    pub fn hash_ahead(&self, lookups: usize) {
        self.base.hash_ahead(lookups);
        self.delta.hash_ahead(lookups);
    }

    /// The payload recorded for `id`.
    pub fn get(&self, id: &str) -> Option<&[u8]> {
        match self.in_delta(id) {
            Some(found) => found,
            None => self.base.get(id),
        }
    }

    /// The payload recorded for `id` when it starts with `lead` (see
    /// [`Table::get_leading`]).
    pub fn get_leading(&self, id: &str, lead: &[u8; 8]) -> Option<&[u8]> {
        match self.in_delta(id) {
            Some(found) => found.filter(|p| p.starts_with(lead)),
            None => self.base.get_leading(id, lead),
        }
    }

    /// `Some` when the delta decides `id` (it has a row for it), with that row.
    fn in_delta(&self, id: &str) -> Option<Option<&[u8]>> {
        if self.delta.is_empty() {
            return None;
        }
        self.delta.get(id).map(Some)
    }

    /// How a save of `updates` rows writes the table; `keeps_all` when no row is to be
    /// dropped.
    fn plan(&self, updates: usize, keeps_all: bool) -> Save {
        let room = (self.base.len() / DELTA_SHARE).max(DELTA_MIN);
        let over_a_base = self.tag.is_some() && !self.base.is_empty();
        if keeps_all && over_a_base && self.delta.len() + updates <= room {
            Save::Delta
        } else {
            Save::Whole
        }
    }

    /// Save the table with `updates` applied, an old row surviving as `keep` says: as
    /// the delta at `delta_file` over the loaded base when it is allowed, else as a new
    /// base at `base_file` (with a new tag) and the delta removed. `head` writes the
    /// file's header before the rows, given the base tag the file carries. Atomic, as
    /// every record ([`crate::fsutil::replace_record`]).
    pub fn save(
        &self,
        base_file: &Path,
        delta_file: &Path,
        updates: &BTreeMap<String, Vec<u8>>,
        keep: Keep<'_>,
        head: impl FnOnce(&mut dyn Write, u64) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let plan = self.plan(updates.len(), matches!(keep, Keep::All));
        let (file, tag) = match (plan, self.tag) {
            (Save::Delta, Some(tag)) => (delta_file, tag),
            _ => (base_file, fastrand::u64(..)),
        };
        crate::fsutil::replace_record(file, |w| {
            head(w, tag)?;
            match plan {
                Save::Delta => self.delta_into(w, updates),
                Save::Whole => self.whole_into(w, updates, keep),
            }
        })?;
        if plan == Save::Whole {
            // Its tag names a base no longer there: never used again.
            let _ = crate::fsutil::remove_record(delta_file);
        }
        Ok(())
    }

    /// Write the delta for a [`Save::Delta`]: the earlier delta's rows with `updates`.
    fn delta_into(
        &self,
        out: &mut impl std::io::Write,
        updates: &BTreeMap<String, Vec<u8>>,
    ) -> std::io::Result<()> {
        self.delta.merged_into(out, updates, |_| true)
    }

    /// Write the base for a [`Save::Whole`]: both layers' rows with `updates`, a row of
    /// either layer surviving when `keep` says so.
    fn whole_into(
        &self,
        out: &mut impl std::io::Write,
        updates: &BTreeMap<String, Vec<u8>>,
        keep: Keep<'_>,
    ) -> std::io::Result<()> {
        let keep = match keep {
            Keep::Nothing => return Table::default().merged_into(out, updates, |_| false),
            Keep::All => &|_: &[u8]| true,
            Keep::If(k) => k,
        };
        if self.delta.is_empty() {
            return self.base.merged_into(out, updates, keep);
        }
        // The delta is small (see `plan`): its rows join the updates.
        let mut all = updates.clone();
        for (id, payload) in self.delta.rows() {
            let Ok(id) = std::str::from_utf8(id) else {
                continue;
            };
            if keep(id.as_bytes()) && !all.contains_key(id) {
                all.insert(id.to_string(), payload.to_vec());
            }
        }
        self.base.merged_into(out, &all, keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::table::of_rows as table;

    fn updates(rows: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        rows.iter()
            .map(|(i, p)| (i.to_string(), p.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn a_row_in_the_delta_hides_the_base_row_even_when_it_does_not_lead_as_asked() {
        let o = Overlay::new(
            table(&[("a", "old-a-payload"), ("b", "base-b-payload")]),
            1,
            table(&[("a", "new-a-payload")]),
        );
        assert_eq!(o.get("a"), Some(&b"new-a-payload"[..]));
        assert_eq!(o.get("b"), Some(&b"base-b-payload"[..]));
        assert_eq!(o.get("c"), None);
        assert_eq!(o.get_leading("a", b"new-a-pa"), Some(&b"new-a-payload"[..]));
        // The base's stale row for "a" leads this way, but the delta's row decides.
        assert_eq!(o.get_leading("a", b"old-a-pa"), None);
        assert_eq!(
            o.get_leading("b", b"base-b-p"),
            Some(&b"base-b-payload"[..])
        );
    }

    #[test]
    fn a_save_writes_the_delta_only_while_it_is_small_and_every_row_is_kept() {
        let rows: Vec<(String, String)> = (0..1000)
            .map(|i| (format!("n{i:04}"), "p".into()))
            .collect();
        let rows: Vec<(&str, &str)> = rows.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let o = Overlay::new(table(&rows), 1, Table::default());
        assert_eq!(o.plan(10, true), Save::Delta);
        assert_eq!(
            o.plan(10, false),
            Save::Whole,
            "a save that drops rows rewrites the base"
        );
        assert_eq!(o.plan(1000 / DELTA_SHARE + 1, true), Save::Whole);
        let empty = Overlay::default();
        assert_eq!(
            empty.plan(1, true),
            Save::Whole,
            "no base to lay a delta over"
        );
    }

    #[test]
    fn a_save_that_keeps_nothing_writes_a_base_of_the_updates_alone_never_a_delta() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (base, delta) = (dir.path().join("t.bin"), dir.path().join("t.delta.bin"));
        let rows: Vec<(String, String)> = (0..200)
            .map(|i| (format!("n{i:03}"), "old".into()))
            .collect();
        let rows: Vec<(&str, &str)> = rows.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let o = Overlay::new(table(&rows), 1, Table::default());
        let two = updates(&[("n001", "new"), ("x", "new")]);
        let saved = |keep: Keep<'_>| {
            o.save(&base, &delta, &two, keep, |_, _| Ok(()))
                .expect("saved");
            let rows = |p: &Path| {
                let t = Table::parse(std::fs::read(p).ok()?, 0)?;
                Some(
                    t.rows()
                        .map(|(id, p)| (id.to_vec(), p.to_vec()))
                        .collect::<Vec<_>>(),
                )
            };
            let (b, d) = (rows(&base), rows(&delta));
            let _ = std::fs::remove_file(&base);
            let _ = std::fs::remove_file(&delta);
            (b, d)
        };
        // Two rows of 200 kept: a delta of the two beside the base.
        let (b, d) = saved(Keep::All);
        assert_eq!(b, None, "the base is not rewritten");
        assert_eq!(d.map(|d| d.len()), Some(2));
        // None kept: a new base of the two, no delta.
        let (b, d) = saved(Keep::Nothing);
        let new = |id: &str| (id.as_bytes().to_vec(), b"new".to_vec());
        assert_eq!(b, Some(vec![new("n001"), new("x")]));
        assert_eq!(d, None);
    }

    #[test]
    fn a_whole_save_merges_both_layers_and_the_updates_and_drops_what_keep_refuses() {
        let o = Overlay::new(
            table(&[("a", "1"), ("b", "1"), ("c", "1")]),
            1,
            table(&[("b", "2"), ("d", "2"), ("e", "2")]),
        );
        let mut out = Vec::new();
        let keep = |id: &[u8]| id != b"d";
        o.whole_into(
            &mut out,
            &updates(&[("c", "3"), ("e", "3")]),
            Keep::If(&keep),
        )
        .expect("a Vec takes every write");
        let t = Table::parse(out, 0).expect("a table");
        let got: Vec<(&[u8], &[u8])> = t.rows().collect();
        let want: Vec<(&[u8], &[u8])> =
            vec![(b"a", b"1"), (b"b", b"2"), (b"c", b"3"), (b"e", b"3")];
        assert_eq!(got, want);

        // Updates for every id worth keeping: they alone are written.
        let mut out = Vec::new();
        o.whole_into(&mut out, &updates(&[("b", "5"), ("f", "5")]), Keep::Nothing)
            .expect("a Vec takes every write");
        let t = Table::parse(out, 0).expect("a table");
        let got: Vec<(&[u8], &[u8])> = t.rows().collect();
        assert_eq!(got, vec![(&b"b"[..], &b"5"[..]), (b"f", b"5")]);

        let mut delta = Vec::new();
        o.delta_into(&mut delta, &updates(&[("a", "4")]))
            .expect("written");
        let t = Table::parse(delta, 0).expect("a table");
        let got: Vec<(&[u8], &[u8])> = t.rows().collect();
        let want: Vec<(&[u8], &[u8])> =
            vec![(b"a", b"4"), (b"b", b"2"), (b"d", b"2"), (b"e", b"2")];
        assert_eq!(got, want);
    }
}
