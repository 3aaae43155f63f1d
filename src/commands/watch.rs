//! `pflow build WORKFLOW --watch`: build, then build again whenever a file the workflow
//! reads changes (see [`crate::watched`]), until Ctrl-C.
//!
//! Files are watched with the `notify` crate (inotify on Linux) through
//! `notify-debouncer-mini`, which gathers a burst of events (an editor's save is several)
//! into one. On a network file system, where inotify sees no remote edits, or when
//! inotify cannot be used (its watch limit reached), or with `PFLOW_WATCH_POLL=1` (or a
//! poll interval in ms), notify's polling watcher is used instead.
//!
//! A change that arrives while a build runs cancels it as Ctrl-C would (its children are
//! killed, nothing interrupted is cached), and the next build starts at once; a Ctrl-C
//! cancels the build and ends the command with exit 130.

use super::{build, ExitCode, Result};
use crate::cli::BuildArgs;
use crate::report::err_line;
use crate::watched::{Dir, Snapshot, WatchSet};
use notify_debouncer_mini::notify::{self, RecursiveMode};
use notify_debouncer_mini::{new_debouncer_opt, Config, DebounceEventResult, Debouncer};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long events must be quiet before they count as one change.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// How often the polling watcher looks, unless `PFLOW_WATCH_POLL` gives a number.
const DEFAULT_POLL: Duration = Duration::from_millis(500);
/// How often the waiting loop looks for Ctrl-C.
const TICK: Duration = Duration::from_millis(50);

/// What the watcher's thread and the build loop share.
struct Shared {
    set: WatchSet,
    /// The files' contents when the current (or last) build started.
    snapshot: Snapshot,
    /// A build is running: a change cancels it.
    building: bool,
}

pub fn run(args: BuildArgs) -> Result {
    crate::interrupt::install_handler();
    let shared = Arc::new(Mutex::new(Shared {
        set: WatchSet::default(),
        snapshot: Snapshot::default(),
        building: false,
    }));
    let (tx, rx) = mpsc::channel::<Vec<PathBuf>>();
    let mut watcher = match Watcher::start(shared.clone(), tx) {
        Ok(w) => w,
        Err(e) => return Err(super::Error::Failed(format!("cannot watch files: {e}"))),
    };
    let mut builds = 0u32;
    loop {
        let set = watch_set(&args);
        watcher.place(&set);
        {
            let mut s = lock(&shared);
            s.snapshot = set.snapshot();
            s.set = set;
            // Cleared under the lock: a change now belongs to the next build.
            crate::interrupt::reset();
            s.building = true;
        }
        builds += 1;
        let result = build::once(&args, build::Then::Continue);
        lock(&shared).building = false;
        if crate::interrupt::signalled() {
            err_line("watch: interrupted; stopping");
            return Ok(ExitCode::Interrupted);
        }
        let code = super::finish(result);
        // The build may have read files no build read before (paths a template built),
        // unwatched while it ran: one changed since it read it is built again at once.
        let mut pending = rewatch(&args, &mut watcher, &shared, Snapshot::add_missing);
        let (watched, via) = (lock(&shared).set.len(), watcher.kind());
        let status = match code {
            ExitCode::Invalid => "the workflow is invalid; waiting for it to change",
            ExitCode::Interrupted => "build cancelled by a change",
            ExitCode::Failed => "build failed; waiting for changes",
            ExitCode::Ok => "build done; waiting for changes",
        };
        err_line(&format!(
            "watch: {status} ({watched} path{} watched{via}; Ctrl-C stops) [build {builds}]",
            if watched == 1 { "" } else { "s" },
        ));
        // Wait for a change that matters, or Ctrl-C.
        let changed = loop {
            if !pending.is_empty() {
                break std::mem::take(&mut pending);
            }
            match rx.recv_timeout(TICK) {
                // A directory on the way to a watched file came or went: place the
                // watches again (files may appear in it next), then look at the files:
                // one made in it before its watch was placed gave no event.
                Ok(paths) if paths.is_empty() => {
                    let fresh = rewatch(&args, &mut watcher, &shared, Snapshot::take_in);
                    if !fresh.is_empty() {
                        break fresh;
                    }
                }
                Ok(paths) => {
                    // Told before the last build started, a change may be in it already.
                    let s = lock(&shared);
                    let fresh: Vec<PathBuf> = paths
                        .into_iter()
                        .filter(|p| s.snapshot.differs(p))
                        .collect();
                    if !fresh.is_empty() {
                        break fresh;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(super::Error::Failed("the file watcher stopped".to_string()))
                }
            }
            if crate::interrupt::signalled() {
                err_line("watch: interrupted; stopping");
                return Ok(ExitCode::Interrupted);
            }
        };
        // Whatever else arrived meanwhile is the same rebuild.
        let mut all: BTreeSet<PathBuf> = changed.into_iter().collect();
        while let Ok(more) = rx.try_recv() {
            all.extend(more);
        }
        err_line(&format!("watch: {} changed; building again", shown(&all)));
    }
}

/// Watch the workflow's files as they are now, then let the snapshot `take` the ones new
/// to it: the files that changed unseen, to build again. After a build that is
/// [`Snapshot::add_missing`] (the files it read that no watch covered while it ran);
/// after a directory on the way came or went, [`Snapshot::take_in`] (a file made in it
/// before its watch was placed gave no event).
fn rewatch(
    args: &BuildArgs,
    watcher: &mut Watcher,
    shared: &Mutex<Shared>,
    take: fn(&mut Snapshot, &WatchSet) -> Vec<PathBuf>,
) -> Vec<PathBuf> {
    let set = watch_set(args);
    watcher.place(&set);
    let mut s = lock(shared);
    let fresh = take(&mut s.snapshot, &set);
    s.set = set;
    fresh
}

/// The files of this workflow, from its file as it is now and the last build's records.
fn watch_set(args: &BuildArgs) -> WatchSet {
    let Ok(file) = super::resolve_workflow_path(&args.workflow) else {
        return WatchSet::of(Path::new(&args.workflow), None, None);
    };
    let loaded = super::load_path(&args.workflow).ok();
    let root = super::cache_dir_of(args.cache_dir.as_ref());
    let records = crate::cache::records::BuildState::load(
        &root,
        &super::records_name::records_name(&file, &root),
    );
    WatchSet::of(&file, loaded.as_ref().map(|(_, _, v)| v), Some(&records))
}

/// `a.txt`, or `a.txt and 2 more`, relative to where pflow runs when possible.
fn shown(paths: &BTreeSet<PathBuf>) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    let name = |p: &PathBuf| p.strip_prefix(&cwd).unwrap_or(p).display().to_string();
    match paths.len() {
        0 => "nothing".into(),
        1 => paths.iter().map(name).collect(),
        n => format!(
            "{} and {} more",
            paths.iter().next().map(name).unwrap_or_default(),
            n - 1
        ),
    }
}

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The events' handler, on the debouncer's thread: keep the paths whose content changed;
/// cancel a running build for them; hand them to the loop.
fn on_events(shared: &Mutex<Shared>, tx: &mpsc::Sender<Vec<PathBuf>>, result: DebounceEventResult) {
    let events = match result {
        Ok(events) => events,
        Err(e) => {
            err_line(&format!("watch: warning: {e}"));
            return;
        }
    };
    let s = lock(shared);
    let mut changed: Vec<PathBuf> = Vec::new();
    let mut dirs_moved = false;
    for e in &events {
        if s.set.covers(&e.path) {
            if s.snapshot.differs(&e.path) {
                changed.push(e.path.clone());
            }
        } else if s.set.leads_to(&e.path) {
            // A directory on the way appeared (or went): look at everything, and have
            // the watches placed again.
            changed.extend(s.snapshot.changed(&s.set));
            dirs_moved = true;
        }
    }
    if changed.is_empty() {
        if dirs_moved && !s.building {
            let _ = tx.send(Vec::new());
        }
        return;
    }
    changed.sort();
    changed.dedup();
    if s.building {
        err_line(&format!(
            "watch: {} changed; cancelling the build in progress",
            shown(&changed.iter().cloned().collect())
        ));
        crate::interrupt::cancel();
    }
    let _ = tx.send(changed);
}

/// The debounced watcher, native or polling, and the directories it watches.
struct Watcher {
    backend: Backend,
    /// Each watched directory, with its identity then (a directory removed and made
    /// again is another one, and inotify's watch went with the old).
    placed: BTreeMap<Dir, Option<(u64, u64)>>,
    shared: Arc<Mutex<Shared>>,
    tx: mpsc::Sender<Vec<PathBuf>>,
}

enum Backend {
    Native(Debouncer<notify::RecommendedWatcher>),
    Poll(Debouncer<notify::PollWatcher>, Duration),
}

impl Watcher {
    fn start(
        shared: Arc<Mutex<Shared>>,
        tx: mpsc::Sender<Vec<PathBuf>>,
    ) -> notify::Result<Watcher> {
        let backend = match poll_requested() {
            Some(every) => Backend::poll(&shared, &tx, every)?,
            None => match Backend::native(&shared, &tx) {
                Ok(b) => b,
                Err(e) => {
                    err_line(&format!(
                        "watch: cannot use inotify ({e}); polling every {} ms",
                        DEFAULT_POLL.as_millis()
                    ));
                    Backend::poll(&shared, &tx, DEFAULT_POLL)?
                }
            },
        };
        Ok(Watcher {
            backend,
            placed: BTreeMap::new(),
            shared,
            tx,
        })
    }

    fn kind(&self) -> String {
        match &self.backend {
            Backend::Native(_) => String::new(),
            Backend::Poll(_, every) => format!(", polling every {} ms", every.as_millis()),
        }
    }

    /// Watch the set's directories (and only those).
    fn place(&mut self, set: &WatchSet) {
        let wanted = set.dirs();
        if matches!(self.backend, Backend::Native(_))
            && wanted.iter().any(|d| on_network_fs(&d.path))
        {
            err_line(&format!(
                "watch: a watched directory is on a network file system; polling every {} ms",
                DEFAULT_POLL.as_millis()
            ));
            self.switch_to_polling();
        }
        let gone: Vec<Dir> = self
            .placed
            .keys()
            .filter(|d| !wanted.contains(*d))
            .cloned()
            .collect();
        for dir in gone {
            let _ = self.backend.watcher().unwatch(&dir.path);
            self.placed.remove(&dir);
        }
        let mut failed = None;
        for dir in &wanted {
            let now = identity(&dir.path);
            if self.placed.get(dir) == Some(&now) {
                continue;
            }
            if self.placed.remove(dir).is_some() {
                let _ = self.backend.watcher().unwatch(&dir.path);
            }
            let mode = if dir.recursive {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            match self.backend.watcher().watch(&dir.path, mode) {
                Ok(()) => {
                    self.placed.insert(dir.clone(), now);
                }
                // Gone since it was looked at: the next build's set will say.
                Err(e) if matches!(e.kind, notify::ErrorKind::PathNotFound) => {}
                Err(e) => {
                    failed = Some((dir.clone(), e));
                    break;
                }
            }
        }
        match failed {
            Some((dir, e)) if matches!(self.backend, Backend::Native(_)) => {
                err_line(&format!(
                    "watch: cannot watch {} with inotify ({e}); polling every {} ms",
                    dir.path.display(),
                    DEFAULT_POLL.as_millis()
                ));
                if self.switch_to_polling() {
                    self.place(set);
                }
            }
            Some((dir, e)) => err_line(&format!(
                "watch: warning: cannot watch {}: {e}",
                dir.path.display()
            )),
            None => {}
        }
    }

    /// Replace the native watcher by the polling one; false if it cannot start.
    fn switch_to_polling(&mut self) -> bool {
        match Backend::poll(&self.shared, &self.tx, DEFAULT_POLL) {
            Ok(b) => {
                self.backend = b;
                self.placed.clear();
                true
            }
            Err(e) => {
                err_line(&format!("watch: warning: cannot start polling: {e}"));
                false
            }
        }
    }
}

impl Backend {
    fn native(
        shared: &Arc<Mutex<Shared>>,
        tx: &mpsc::Sender<Vec<PathBuf>>,
    ) -> notify::Result<Backend> {
        let (shared, tx) = (shared.clone(), tx.clone());
        let d = new_debouncer_opt::<_, notify::RecommendedWatcher>(
            Config::default().with_timeout(DEBOUNCE),
            move |r: DebounceEventResult| on_events(&shared, &tx, r),
        )?;
        Ok(Backend::Native(d))
    }

    fn poll(
        shared: &Arc<Mutex<Shared>>,
        tx: &mpsc::Sender<Vec<PathBuf>>,
        every: Duration,
    ) -> notify::Result<Backend> {
        let (shared, tx) = (shared.clone(), tx.clone());
        // Contents too: the poller's mtimes have whole seconds (two saves in one second
        // would look like one), and a server's clock may be behind.
        let config = notify::Config::default()
            .with_poll_interval(every)
            .with_compare_contents(true);
        let d = new_debouncer_opt::<_, notify::PollWatcher>(
            Config::default()
                .with_timeout(DEBOUNCE)
                .with_notify_config(config),
            move |r: DebounceEventResult| on_events(&shared, &tx, r),
        )?;
        Ok(Backend::Poll(d, every))
    }

    fn watcher(&mut self) -> &mut dyn notify::Watcher {
        match self {
            Backend::Native(d) => d.watcher(),
            Backend::Poll(d, _) => d.watcher(),
        }
    }
}

/// A directory's device and inode, if it exists.
fn identity(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

/// `PFLOW_WATCH_POLL`: `1`/`true` polls every [`DEFAULT_POLL`]; a larger number is the
/// interval in ms; unset, empty or `0` uses inotify.
fn poll_requested() -> Option<Duration> {
    let v = std::env::var("PFLOW_WATCH_POLL").ok()?;
    match v.trim() {
        "" | "0" | "false" | "no" => None,
        "1" | "true" | "yes" => Some(DEFAULT_POLL),
        n => match n.parse::<u64>() {
            Ok(ms) => Some(Duration::from_millis(ms.max(10))),
            Err(_) => Some(DEFAULT_POLL),
        },
    }
}

/// Is `dir` on a file system whose changes inotify may not see (NFS, SMB/CIFS, FUSE
/// mounts such as sshfs)?
fn on_network_fs(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    const NFS: i64 = 0x6969;
    const SMB: i64 = 0x517b;
    const CIFS: i64 = 0xff53_4d42;
    const SMB2: i64 = 0xfe53_4d42;
    const FUSE: i64 = 0x6573_5546;
    const CEPH: i64 = 0x00c3_6400;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs(2) fills the zeroed struct for a NUL-terminated path; nothing else
    // is touched.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    #[allow(clippy::unnecessary_cast)]
    let kind = st.f_type as i64;
    [NFS, SMB, CIFS, SMB2, FUSE, CEPH].contains(&kind)
}
