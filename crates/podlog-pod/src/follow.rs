//! Following a session whoever writes it: [`Follow`] and [`Followers`].
//!
//! A pod streams the session it writes. A session that another process
//! writes (another pod, an import), or that no pod of this process holds,
//! is followed instead: a [`Follow`] keeps a windowed mirror of it, loaded
//! tail-first like a restore, and a broadcast channel of its events, and
//! [`Follow::catch_up`] publishes what was committed since, read from the
//! store in seq order. Clients attach to a follow exactly as to a pod
//! ([`Follow::subscribe_tail`], [`Follow::resume_tail`]): the same snapshot
//! and live split under one mutex, the same event ids, resume by id.
//!
//! [`Followers`] shares one follow per session among its clients and runs
//! one watcher thread for all of them: every [`POLL`] it asks SQLite whether
//! any connection committed (`PRAGMA data_version`, see
//! [`podlog_store::ChangeWatch`]), and only then which followed sessions
//! moved (one query over the session rows) and reads their new entries.
//! While nothing is followed the thread sleeps on a condition variable; while
//! nothing is committed each poll is one cheap query.
//!
//! A followed session carries committed entries only: the streaming lane
//! (text deltas, tool-call starts) never reaches the disk, so whoever
//! follows a session another process writes sees each answer when it is
//! committed.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use podlog_entry::{Seq, SessionId};
use podlog_protocol::{Event, SharedEvent};
use podlog_sink::SessionLogSink;
use podlog_store::Store;
use tokio::sync::broadcast;

use crate::error::PodError;
use crate::live;
use crate::pod::EVENT_CAPACITY;

/// How often the watcher asks SQLite whether anything was committed.
pub const POLL: Duration = Duration::from_millis(20);

/// How many entries one read of a catch-up takes at most.
const CATCH_UP_PAGE: usize = 512;

/// A live, read-only view of one session, fed from the store. Cheap to
/// clone (the clones share one follow).
#[derive(Clone)]
pub struct Follow {
    inner: Arc<FollowInner>,
}

struct FollowInner {
    store: Arc<Store>,
    session: SessionId,
    sink: SessionLogSink,
    /// The event channel; publishing to the sink and sending on it happen
    /// under this mutex, as subscribing does.
    tx: Mutex<broadcast::Sender<SharedEvent>>,
}

impl std::fmt::Debug for Follow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follow")
            .field("session", &self.inner.session)
            .field("end_seq", &self.inner.sink.end_seq())
            .finish()
    }
}

impl Follow {
    /// Follows `session` from its current end: loads the `SessionStart` and
    /// the last [`live::MIRROR_WINDOW`] entries. Nothing later is seen until
    /// [`Follow::catch_up`] runs ([`Followers`] runs it).
    pub fn open(store: Arc<Store>, session: &SessionId) -> Result<Follow, PodError> {
        let last = store.session(session)?.last_seq;
        let sink = live::load_tail(&store, session, last)?;
        let (tx, _) = broadcast::channel(EVENT_CAPACITY);
        Ok(Follow {
            inner: Arc::new(FollowInner {
                store,
                session: session.clone(),
                sink,
                tx: Mutex::new(tx),
            }),
        })
    }

    /// The session followed.
    pub fn session_id(&self) -> &SessionId {
        &self.inner.session
    }

    /// The last seq published.
    pub fn end_seq(&self) -> Seq {
        self.inner.sink.end_seq()
    }

    fn lock(&self) -> MutexGuard<'_, broadcast::Sender<SharedEvent>> {
        self.inner.tx.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the entries committed after the last one published, in seq
    /// order, and publishes each (mirror, then event). Returns how many.
    /// Reads the store: call it off the async workers.
    pub fn catch_up(&self) -> Result<usize, PodError> {
        let inner = &*self.inner;
        let tx = self.lock();
        let mut published = 0;
        loop {
            let end = inner.sink.end_seq();
            let page = inner
                .store
                .previews_after(&inner.session, end, CATCH_UP_PAGE)?;
            let full = page.len() == CATCH_UP_PAGE;
            for c in page {
                let seq = c.seq;
                inner
                    .sink
                    .publish(c.clone())
                    .map_err(|source| PodError::Mirror {
                        session: inner.session.clone(),
                        seq,
                        source,
                    })?;
                // An error only means no receiver exists right now.
                let _ = tx.send(SharedEvent::new(
                    inner.session.clone(),
                    Event::from_committed(&c),
                ));
                published += 1;
            }
            if !full {
                return Ok(published);
            }
        }
    }

    /// The session's last `tail` entries (all of them with `None`) as a
    /// snapshot event, and a receiver of every later event, split cleanly.
    /// Reads the store beyond the window: call it off the async workers.
    pub fn subscribe_tail(
        &self,
        tail: Option<usize>,
    ) -> Result<(SharedEvent, broadcast::Receiver<SharedEvent>), PodError> {
        let (snapshot, rx) = {
            let tx = self.lock();
            (self.inner.sink.snapshot(), tx.subscribe())
        };
        let event = live::snapshot_event(
            &self.inner.store,
            self.inner.session.clone(),
            &snapshot,
            tail,
        )?;
        Ok((event, rx))
    }

    /// For a client that saw `session` up to `after`: the events after it
    /// if `session` is the one followed, else `SessionRotated` and a
    /// snapshot shaped by `tail`; plus a receiver, split cleanly.
    pub fn resume_tail(
        &self,
        session: &SessionId,
        after: Seq,
        tail: Option<usize>,
    ) -> Result<(Vec<SharedEvent>, broadcast::Receiver<SharedEvent>), PodError> {
        let (snapshot, rx) = {
            let tx = self.lock();
            (self.inner.sink.snapshot(), tx.subscribe())
        };
        let events = live::resume_events(
            &self.inner.store,
            &self.inner.session,
            &snapshot,
            session,
            after,
            tail,
        )?;
        Ok((events, rx))
    }
}

/// One [`Follow`] per session, shared by its clients, and the watcher
/// thread that feeds them all. Dropping the last clone stops the thread.
#[derive(Clone)]
pub struct Followers {
    shared: Arc<Shared>,
}

struct Shared {
    store: Arc<Store>,
    state: Mutex<Registry>,
    wake: Condvar,
}

#[derive(Default)]
struct Registry {
    follows: HashMap<SessionId, Weak<FollowInner>>,
    watcher: Option<JoinHandle<()>>,
    stopping: bool,
}

impl std::fmt::Debug for Followers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Followers")
            .field("followed", &self.followed())
            .finish()
    }
}

impl Followers {
    /// Followers of `store`'s sessions. The watcher thread starts with the
    /// first follow.
    pub fn new(store: Arc<Store>) -> Self {
        Followers {
            shared: Arc::new(Shared {
                store,
                state: Mutex::new(Registry::default()),
                wake: Condvar::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// How many sessions are followed now.
    pub fn followed(&self) -> usize {
        self.lock()
            .follows
            .values()
            .filter(|f| f.strong_count() > 0)
            .count()
    }

    /// The follow of `session`, shared with its other clients (opened if
    /// none is live), caught up to what is committed now. Reads the store:
    /// call it off the async workers.
    pub fn follow(&self, session: &SessionId) -> Result<Follow, PodError> {
        let existing = self.lock().follows.get(session).and_then(Weak::upgrade);
        let follow = match existing {
            Some(inner) => Follow { inner },
            None => {
                let opened = Follow::open(self.shared.store.clone(), session)?;
                let mut registry = self.lock();
                // Another client may have opened it meanwhile: keep one.
                match registry.follows.get(session).and_then(Weak::upgrade) {
                    Some(inner) => Follow { inner },
                    None => {
                        registry
                            .follows
                            .insert(session.clone(), Arc::downgrade(&opened.inner));
                        self.start_watcher(&mut registry);
                        self.shared.wake.notify_all();
                        opened
                    }
                }
            }
        };
        // Registered before this catch-up: whatever is committed after it
        // changes the data version the watcher looks at next.
        follow.catch_up()?;
        Ok(follow)
    }

    fn start_watcher(&self, registry: &mut Registry) {
        if registry.watcher.is_some() {
            return;
        }
        let shared = Arc::downgrade(&self.shared);
        registry.watcher = std::thread::Builder::new()
            .name("podlog-follow".to_owned())
            .spawn(move || watch(shared))
            .ok();
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let watcher = {
            let mut registry = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            registry.stopping = true;
            registry.watcher.take()
        };
        self.wake.notify_all();
        // The watcher holds only a weak reference and lets go of it between
        // polls, so it sees `stopping` at its next wake-up.
        if let Some(watcher) = watcher {
            if watcher.thread().id() != std::thread::current().id() {
                let _ = watcher.join();
            }
        }
    }
}

/// The watcher: sleeps while nothing is followed; otherwise every [`POLL`]
/// checks the data version and catches up the sessions that moved.
fn watch(shared: Weak<Shared>) {
    let mut changes = None;
    let mut retry = false;
    let mut known: HashMap<SessionId, Seq> = HashMap::new();
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        {
            let registry = strong.state.lock().unwrap_or_else(PoisonError::into_inner);
            if registry.stopping {
                return;
            }
            if registry.follows.values().all(|f| f.strong_count() == 0) {
                known.clear();
                // Nothing to watch: sleep until a follow arrives.
                let _ = strong
                    .wake
                    .wait_timeout(registry, Duration::from_secs(1))
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
        }
        let store = strong.store.clone();
        if changes.is_none() {
            changes = store.change_watch().ok();
        }
        let changed = match changes.as_mut().map(|w| w.changed()) {
            Some(Ok(changed)) => changed,
            // A watch that cannot read: start a new one, and look anyway.
            _ => {
                changes = None;
                true
            }
        };
        // Only a change costs more than the one query above. A follow that
        // failed to catch up is tried again at the next poll, whether or not
        // anything else was committed.
        if changed || retry {
            let follows: Vec<Follow> = {
                let mut registry = strong.state.lock().unwrap_or_else(PoisonError::into_inner);
                registry.follows.retain(|_, f| f.strong_count() > 0);
                registry
                    .follows
                    .values()
                    .filter_map(Weak::upgrade)
                    .map(|inner| Follow { inner })
                    .collect()
            };
            drop(strong);
            retry = !catch_up_moved(&store, &follows, &mut known);
        } else {
            drop(strong);
        }
        std::thread::sleep(POLL);
    }
}

/// Catches up every follow whose session's `last_seq` moved past what it
/// published, after one query over the session rows. Returns whether every
/// one that moved caught up.
fn catch_up_moved(store: &Store, follows: &[Follow], known: &mut HashMap<SessionId, Seq>) -> bool {
    let ids: Vec<SessionId> = follows.iter().map(|f| f.session_id().clone()).collect();
    let mut ok = true;
    let Ok(last_seqs) = store.last_seqs(&ids) else {
        // Could not tell which moved: ask each.
        for f in follows {
            if let Err(e) = f.catch_up() {
                warn(f.session_id(), &e);
                ok = false;
            }
        }
        return ok;
    };
    known.retain(|id, _| ids.contains(id));
    for (id, last) in last_seqs {
        if known.get(&id) == Some(&last) {
            continue;
        }
        let Some(f) = follows.iter().find(|f| *f.session_id() == id) else {
            continue;
        };
        if f.end_seq() < last {
            if let Err(e) = f.catch_up() {
                warn(&id, &e);
                ok = false;
                continue;
            }
        }
        known.insert(id, last);
    }
    ok
}

fn warn(session: &SessionId, e: &PodError) {
    tracing::warn!(session = %session, error = %e, "cannot catch up a followed session");
}
