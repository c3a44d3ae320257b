//! Lineage, shares and the redaction switch, written once and run against
//! both backends: a SQLite [`Store`] in a temporary folder and a
//! [`PgStore`] in a schema of its own on the test server, with the same
//! injected clock and ids. Each scenario renders what every operation
//! returned (results and error messages) as text; the two texts must be
//! equal, and each is also checked against what the contract says.
//!
//! Failures guarded against: a fork that carries what its parent wrote
//! after the cut; a compaction or fork whose `SessionStart`, session row or
//! lineage differs from SQLite's; an unknown session or a bad cut failing
//! with another error (or writing something); a share token stored, or a
//! share whose state (active, expired, revoked) or errors differ; a
//! redaction switch that does not persist across a reopen or does not take
//! effect at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use podlog_entry::payload::THRESHOLD;
use podlog_entry::{AssistantContent, Clock, Committed, LogEntry, Message, Seq, SessionId};

use super::tests::{turn_end, Schema};
use super::PgStore;
use crate::payloads::tests::{output, result};
use crate::{
    NewSession, Result, SequentialIds, SessionInfo, ShareCheck, ShareInfo, ShareToken, Store,
    StoreOptions,
};

/// A clock the test moves by hand.
struct HandClock(AtomicU64);

impl Clock for HandClock {
    fn now_millis(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

const START: u64 = 1_700_000_000_000;

fn options(clock: &Arc<HandClock>, ids: &str) -> StoreOptions {
    StoreOptions {
        clock: clock.clone(),
        ids: Arc::new(SequentialIds::new(ids)),
        ..StoreOptions::default()
    }
}

/// What the scenarios ask of a store: the same methods, with the same
/// signatures, on both backends.
trait Backend {
    fn create_session(&self, new: NewSession) -> Result<(SessionId, Committed)>;
    /// Appends `entries` through a writer of `session`, then lets it go.
    fn append(&self, session: &SessionId, entries: Vec<LogEntry>) -> Result<Vec<Seq>>;
    fn compact(&self, session: &SessionId, summary: Vec<Message>)
        -> Result<(SessionId, Committed)>;
    fn fork(&self, session: &SessionId, at: Seq) -> Result<(SessionId, Committed)>;
    fn ancestors(&self, session: &SessionId) -> Result<Vec<SessionInfo>>;
    fn descendants(&self, session: &SessionId) -> Result<Vec<SessionInfo>>;
    fn session(&self, id: &SessionId) -> Result<SessionInfo>;
    fn sessions(&self) -> Result<Vec<Result<SessionInfo>>>;
    fn entries(&self, session: &SessionId) -> Result<Vec<Committed>>;
    fn previews_after(
        &self,
        session: &SessionId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<Committed>>;
    fn create_share(
        &self,
        session: &str,
        expires: Option<Duration>,
    ) -> Result<(ShareInfo, ShareToken)>;
    fn list_shares(&self) -> Result<Vec<ShareInfo>>;
    fn share(&self, id: &str) -> Result<ShareInfo>;
    fn revoke_share(&self, id: &str) -> Result<ShareInfo>;
    fn check_share(&self, token: &str) -> Result<ShareCheck>;
    fn active_shares(&self, ids: &[String]) -> Result<Vec<String>>;
    fn session_references_payload(&self, session: &SessionId, hash: &str) -> Result<bool>;
    fn payload_totals(&self) -> Result<(u64, u64)>;
    fn set_redaction(&self, on: bool) -> Result<()>;
    fn redaction_enabled(&self) -> bool;
}

/// The same forwarding for both store types, whose methods share names.
macro_rules! backend {
    ($store:ty) => {
        impl Backend for Arc<$store> {
            fn create_session(&self, new: NewSession) -> Result<(SessionId, Committed)> {
                <$store>::create_session(self, new)
            }
            fn append(&self, session: &SessionId, entries: Vec<LogEntry>) -> Result<Vec<Seq>> {
                let sink = <$store>::load_sink(self, session)?;
                let mut writer = self.session_writer(session)?;
                entries
                    .into_iter()
                    .map(|e| writer.append(e, &sink))
                    .collect()
            }
            fn compact(
                &self,
                session: &SessionId,
                summary: Vec<Message>,
            ) -> Result<(SessionId, Committed)> {
                <$store>::compact(self, session, summary)
            }
            fn fork(&self, session: &SessionId, at: Seq) -> Result<(SessionId, Committed)> {
                <$store>::fork(self, session, at)
            }
            fn ancestors(&self, session: &SessionId) -> Result<Vec<SessionInfo>> {
                <$store>::ancestors(self, session)
            }
            fn descendants(&self, session: &SessionId) -> Result<Vec<SessionInfo>> {
                <$store>::descendants(self, session)
            }
            fn session(&self, id: &SessionId) -> Result<SessionInfo> {
                <$store>::session(self, id)
            }
            fn sessions(&self) -> Result<Vec<Result<SessionInfo>>> {
                <$store>::sessions(self)
            }
            fn entries(&self, session: &SessionId) -> Result<Vec<Committed>> {
                <$store>::entries(self, session)
            }
            fn previews_after(
                &self,
                session: &SessionId,
                after: Seq,
                limit: usize,
            ) -> Result<Vec<Committed>> {
                <$store>::previews_after(self, session, after, limit)
            }
            fn create_share(
                &self,
                session: &str,
                expires: Option<Duration>,
            ) -> Result<(ShareInfo, ShareToken)> {
                <$store>::create_share(self, session, expires)
            }
            fn list_shares(&self) -> Result<Vec<ShareInfo>> {
                <$store>::list_shares(self)
            }
            fn share(&self, id: &str) -> Result<ShareInfo> {
                <$store>::share(self, id)
            }
            fn revoke_share(&self, id: &str) -> Result<ShareInfo> {
                <$store>::revoke_share(self, id)
            }
            fn check_share(&self, token: &str) -> Result<ShareCheck> {
                <$store>::check_share(self, token)
            }
            fn active_shares(&self, ids: &[String]) -> Result<Vec<String>> {
                <$store>::active_shares(self, ids)
            }
            fn session_references_payload(&self, session: &SessionId, hash: &str) -> Result<bool> {
                <$store>::session_references_payload(self, session, hash)
            }
            fn payload_totals(&self) -> Result<(u64, u64)> {
                <$store>::payload_totals(self)
            }
            fn set_redaction(&self, on: bool) -> Result<()> {
                <$store>::set_redaction(self, on)
            }
            fn redaction_enabled(&self) -> bool {
                <$store>::redaction_enabled(self)
            }
        }
    };
}

backend!(Store);
backend!(PgStore);

/// Both backends, empty, on one hand clock each (set to the same time),
/// opened again by [`Pair::reopen`].
struct Pair {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    schema: Schema,
    clocks: [Arc<HandClock>; 2],
    lite: Arc<Store>,
    pg: Arc<PgStore>,
}

impl Pair {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("podlog.db");
        let schema = Schema::new();
        let clocks = [
            Arc::new(HandClock(AtomicU64::new(START))),
            Arc::new(HandClock(AtomicU64::new(START))),
        ];
        let lite = Arc::new(Store::open(&path, options(&clocks[0], "s")).unwrap());
        let pg = Arc::new(pg_open(&schema, &clocks[1], "s"));
        Pair {
            _dir: dir,
            path,
            schema,
            clocks,
            lite,
            pg,
        }
    }

    /// Both stores closed and opened again, their new sessions named
    /// `<ids>-0001` and on.
    fn reopen(&mut self, ids: &str) {
        self.lite = Arc::new(Store::open(&self.path, options(&self.clocks[0], ids)).unwrap());
        self.pg = Arc::new(pg_open(&self.schema, &self.clocks[1], ids));
    }

    /// Runs `scenario` on each backend and returns the two renderings,
    /// SQLite's first.
    fn run(&self, scenario: impl Fn(&dyn Backend, &HandClock) -> String) -> (String, String) {
        (
            scenario(&self.lite, &self.clocks[0]),
            scenario(&self.pg, &self.clocks[1]),
        )
    }
}

fn pg_open(schema: &Schema, clock: &Arc<HandClock>, ids: &str) -> PgStore {
    PgStore::open_with_key(
        &schema.url,
        &options(clock, ids),
        &schema.keys.path().join("pg"),
    )
    .unwrap()
}

/// `Ok` as `ok(<debug>)`, an error as its message.
fn shown<T: std::fmt::Debug>(result: Result<T>) -> String {
    match result {
        Ok(v) => format!("ok({v:?})"),
        Err(e) => format!("error: {e}"),
    }
}

fn user(text: &str) -> LogEntry {
    LogEntry::UserInput {
        ts: 1,
        text: text.to_owned(),
        attachments: vec![],
    }
}

fn call(id: &str) -> LogEntry {
    LogEntry::AssistantItem {
        ts: 1,
        item: AssistantContent::ToolCall {
            id: id.to_owned(),
            name: "read_file".to_owned(),
            arguments: serde_json::json!({"path": "a"}),
        },
    }
}

fn call_result(id: &str) -> LogEntry {
    LogEntry::ToolResult {
        ts: 1,
        call_id: id.to_owned(),
        output: format!("output of {id}"),
        is_error: false,
    }
}

/// seq 1 start, 2 user "one", 3 call c1, 4 result c1, 5 turn end,
/// 6 user "two", 7 call c2, 8 result c2 (the SQLite tests' conversation).
fn conversation(store: &dyn Backend, title: Option<&str>) -> SessionId {
    let (id, _) = store
        .create_session(NewSession {
            title: title.map(str::to_owned),
            system_prompt: Some("be brief".to_owned()),
            ..NewSession::default()
        })
        .unwrap();
    store
        .append(
            &id,
            vec![
                user("one"),
                call("c1"),
                call_result("c1"),
                turn_end(1),
                user("two"),
                call("c2"),
                call_result("c2"),
            ],
        )
        .unwrap();
    id
}

/// A session row as a line: id, origin, parent, counters, title.
fn row(info: &SessionInfo) -> String {
    let parent = info
        .parent
        .as_ref()
        .map_or("-".to_owned(), |p| format!("{}@{}", p.session_id, p.seq));
    format!(
        "{} {} parent={parent} last={} count={} created={} title={:?}",
        info.id,
        info.origin.as_str(),
        info.last_seq,
        info.entry_count,
        info.created_at - START,
        info.title
    )
}

fn ids(infos: Result<Vec<SessionInfo>>) -> String {
    match infos {
        Ok(infos) => infos
            .iter()
            .map(|i| i.id.to_string())
            .collect::<Vec<_>>()
            .join(" "),
        Err(e) => format!("error: {e}"),
    }
}

/// A derived session as text: its committed `SessionStart` as stored JSON,
/// and its row.
fn derived(store: &dyn Backend, made: Result<(SessionId, Committed)>) -> String {
    match made {
        Ok((id, start)) => {
            let stored = store.entries(&id).unwrap();
            assert_eq!(
                stored,
                vec![start.clone()],
                "the start reads back as returned"
            );
            format!(
                "{}\n  start: {}",
                row(&store.session(&id).unwrap()),
                start.entry.to_json()
            )
        }
        Err(e) => format!("error: {e}"),
    }
}

fn lineage(store: &dyn Backend, _: &HandClock) -> String {
    let mut out = Vec::new();
    let root = conversation(store, Some("the root"));
    let before = store.entries(&root).unwrap();
    // A fork at 5, then the parent goes on: the fork has nothing after 5.
    let fork = store.fork(&root, Seq(5));
    out.push(format!("fork at 5: {}", derived(store, fork)));
    let seqs = store
        .append(&root, vec![user("three"), turn_end(2)])
        .unwrap();
    out.push(format!("parent appends after the fork: {seqs:?}"));
    let forked = SessionId::new("s-0002").unwrap();
    out.push(format!(
        "the fork after the parent went on: {}",
        derived(
            store,
            Ok((forked.clone(), store.entries(&forked).unwrap()[0].clone()))
        )
    ));
    // A chain of compactions, and a fork at the start of the last.
    let c1 = store.compact(
        &root,
        vec![Message::System {
            text: "the user asked three times".to_owned(),
        }],
    );
    out.push(format!("compact root: {}", derived(store, c1)));
    let c1 = SessionId::new("s-0003").unwrap();
    let c2 = store.compact(&c1, vec![]);
    out.push(format!("compact s-0003: {}", derived(store, c2)));
    let c2 = SessionId::new("s-0004").unwrap();
    let f2 = store.fork(&c2, Seq(1));
    out.push(format!("fork s-0004 at 1: {}", derived(store, f2)));
    let f3 = store.fork(&root, Seq(2));
    out.push(format!("fork root at 2: {}", derived(store, f3)));
    let leaf = SessionId::new("s-0005").unwrap();
    out.push(format!(
        "ancestors of s-0005: {}",
        ids(store.ancestors(&leaf))
    ));
    out.push(format!(
        "ancestors of root: {}",
        ids(store.ancestors(&root))
    ));
    out.push(format!(
        "descendants of root: {}",
        ids(store.descendants(&root))
    ));
    out.push(format!(
        "descendants of s-0003: {}",
        ids(store.descendants(&c1))
    ));
    out.push(format!(
        "descendants of s-0005: {}",
        ids(store.descendants(&leaf))
    ));
    // Errors, and that they wrote nothing.
    let count = store.sessions().unwrap().len();
    let ghost = SessionId::new("ghost").unwrap();
    for at in [0, 3, 7, 11, 12] {
        out.push(format!(
            "fork root at {at}: {}",
            shown(store.fork(&root, Seq(at)).map(|(id, _)| id))
        ));
    }
    out.push(format!(
        "fork ghost at 1: {}",
        shown(store.fork(&ghost, Seq(1)).map(|(id, _)| id))
    ));
    out.push(format!(
        "compact ghost: {}",
        shown(store.compact(&ghost, vec![]).map(|(id, _)| id))
    ));
    out.push(format!(
        "ancestors of ghost: {}",
        ids(store.ancestors(&ghost))
    ));
    out.push(format!(
        "descendants of ghost: {}",
        ids(store.descendants(&ghost))
    ));
    assert_eq!(
        store.sessions().unwrap().len(),
        count,
        "errors wrote nothing"
    );
    let after = store.entries(&root).unwrap();
    assert_eq!(
        after[..before.len()],
        before[..],
        "the parent's history is kept"
    );
    out.push(format!("root ends at {}", after.len()));
    out.join("\n")
}

#[test]
fn lineage_is_the_same_on_both_backends() {
    let pair = Pair::new();
    let (lite, pg) = pair.run(lineage);
    assert_eq!(pg, lite, "PostgreSQL (left) and SQLite (right) differ");
    println!("{pg}");
    let lines: Vec<&str> = pg.lines().collect();
    // The fork at 5 holds the conversation up to 5, and still does after
    // the parent wrote seqs 9 and 10.
    let fork: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("\"forked_from\":{\"session_id\":\"s-0001\",\"seq\":5}"))
        .collect();
    assert_eq!(fork.len(), 2, "{pg}");
    for start in fork {
        assert!(
            start.contains("one") && start.contains("output of c1"),
            "{start}"
        );
        assert!(
            !start.contains("two") && !start.contains("three"),
            "{start}"
        );
    }
    for want in [
        "fork at 5: s-0002 fork parent=s-0001@5 last=1 count=1",
        "title=Some(\"the root\")",
        "parent appends after the fork: [Seq(9), Seq(10)]",
        "compact root: s-0003 compaction parent=s-0001@10",
        "the user asked three times",
        "compact s-0003: s-0004 compaction parent=s-0003@1",
        "fork s-0004 at 1: s-0005 fork parent=s-0004@1",
        "ancestors of s-0005: s-0004 s-0003 s-0001\n",
        "ancestors of root: \n",
        "descendants of root: s-0002 s-0003 s-0004 s-0005 s-0006\n",
        "descendants of s-0003: s-0004 s-0005\n",
        "descendants of s-0005: \n",
        "fork root at 0: error: cannot cut session s-0001 at seq 0: the session has seqs 1 to 10",
        "fork root at 3: error: cannot cut session s-0001 at seq 3: seq 3 cuts tool call c1 \
         from its result; fork at or after the result, or before the call",
        "fork root at 11: error: cannot cut session s-0001 at seq 11: the session has seqs 1 to 10",
        "fork root at 12: error: cannot cut session s-0001 at seq 12",
        "fork ghost at 1: error: unknown session ghost",
        "compact ghost: error: unknown session ghost",
        "ancestors of ghost: error: unknown session ghost",
        "descendants of ghost: error: unknown session ghost",
        "root ends at 10",
    ] {
        assert!(pg.contains(want), "missing {want:?} in\n{pg}");
    }
}

/// Siblings made at the same millisecond are ordered by id, byte by byte,
/// on both backends; a later sibling comes after an earlier one whatever
/// its id.
#[test]
fn descendants_order_siblings_by_time_then_id_on_both_backends() {
    let pair = Pair::new();
    let (lite, pg) = pair.run(|store, clock| {
        let root = conversation(store, None);
        store.fork(&root, Seq(2)).unwrap();
        store.fork(&root, Seq(2)).unwrap();
        clock.0.fetch_add(1000, Ordering::SeqCst);
        store.compact(&root, vec![]).unwrap();
        let grandchild = store.fork(&SessionId::new("s-0002").unwrap(), Seq(1));
        grandchild.unwrap();
        ids(store.descendants(&root))
    });
    assert_eq!(pg, lite);
    assert_eq!(pg, "s-0002 s-0005 s-0003 s-0004");
}

/// A share's fields with its random id replaced by `name`.
fn share_line(info: &ShareInfo, name: &str) -> String {
    format!(
        "{name} of {} created={} expires={:?} revoked={:?}",
        info.session_id,
        info.created_at - START,
        info.expires_at.map(|t| t - START),
        info.revoked_at.map(|t| t - START),
    )
}

fn check_line(check: Result<ShareCheck>, names: &[(String, &str)]) -> String {
    let name = |info: &ShareInfo| {
        names
            .iter()
            .find(|(id, _)| *id == info.id)
            .map_or("?", |(_, n)| n)
            .to_owned()
    };
    match check {
        Ok(ShareCheck::Unknown) => "unknown".to_owned(),
        Ok(ShareCheck::Active(info)) => format!("active: {}", share_line(&info, &name(&info))),
        Ok(ShareCheck::Inactive(info, state)) => {
            format!("{}: {}", state.as_str(), share_line(&info, &name(&info)))
        }
        Err(e) => format!("error: {e}"),
    }
}

fn shares(store: &dyn Backend, clock: &HandClock) -> String {
    let mut out = Vec::new();
    let session = conversation(store, None);
    let (other, _) = store.create_session(NewSession::default()).unwrap();
    let (a, token_a) = store.create_share("s-0001", None).unwrap();
    // A millisecond apart, so that the listing's order (newest first) does
    // not fall back to the random ids.
    clock.0.fetch_add(1, Ordering::SeqCst);
    let (b, token_b) = store
        .create_share(session.as_str(), Some(Duration::from_secs(60)))
        .unwrap();
    assert_eq!(token_a.expose().len(), 43);
    assert_ne!(token_a, token_b);
    assert!(!format!("{token_a:?}").contains(token_a.expose()));
    let names = [(a.id.clone(), "a"), (b.id.clone(), "b")];
    out.push(format!("created: {}", share_line(&a, "a")));
    out.push(format!("created: {}", share_line(&b, "b")));
    out.push(format!(
        "check a: {}",
        check_line(store.check_share(token_a.expose()), &names)
    ));
    out.push(format!(
        "check nope: {}",
        check_line(store.check_share("nope"), &names)
    ));
    let mut near = token_a.expose().to_owned();
    let last = near.pop();
    near.push(if last == Some('A') { 'B' } else { 'A' });
    out.push(format!(
        "check a near miss: {}",
        check_line(store.check_share(&near), &names)
    ));
    let both = [a.id.clone(), b.id.clone(), "x".to_owned()];
    let active = |store: &dyn Backend| {
        let mut active: Vec<&str> = store
            .active_shares(&both)
            .unwrap()
            .iter()
            .map(|id| names.iter().find(|(i, _)| i == id).map_or("?", |(_, n)| n))
            .collect();
        active.sort();
        active.join(" ")
    };
    out.push(format!("active: {}", active(store)));
    clock.0.fetch_add(59_999, Ordering::SeqCst);
    out.push(format!(
        "b just before expiry: {}",
        check_line(store.check_share(token_b.expose()), &names)
    ));
    out.push(format!("active: {}", active(store)));
    clock.0.fetch_add(1, Ordering::SeqCst);
    out.push(format!(
        "b at expiry: {}",
        check_line(store.check_share(token_b.expose()), &names)
    ));
    out.push(format!("active: {}", active(store)));
    clock.0.fetch_add(5, Ordering::SeqCst);
    out.push(format!(
        "revoke a: {}",
        shown(store.revoke_share(&a.id).map(|i| share_line(&i, "a")))
    ));
    clock.0.fetch_add(5, Ordering::SeqCst);
    out.push(format!(
        "revoke a again: {}",
        shown(store.revoke_share(&a.id).map(|i| share_line(&i, "a")))
    ));
    out.push(format!(
        "revoke b (expired): {}",
        shown(store.revoke_share(&b.id).map(|i| share_line(&i, "b")))
    ));
    out.push(format!(
        "check a: {}",
        check_line(store.check_share(token_a.expose()), &names)
    ));
    out.push(format!(
        "check b: {}",
        check_line(store.check_share(token_b.expose()), &names)
    ));
    out.push(format!("active: {}", active(store)));
    out.push(format!(
        "share a: {}",
        shown(store.share(&a.id).map(|i| share_line(&i, "a")))
    ));
    out.push(format!("share 0123: {}", shown(store.share("0123"))));
    out.push(format!(
        "revoke 0123: {}",
        shown(store.revoke_share("0123"))
    ));
    out.push(format!(
        "share zzz: {}",
        shown(store.create_share("zzz", None).map(|(i, _)| i.id))
    ));
    out.push(format!(
        "share s- (ambiguous): {}",
        shown(store.create_share("s-", None).map(|(i, _)| i.id))
    ));
    let listed: Vec<String> = store
        .list_shares()
        .unwrap()
        .iter()
        .map(|i| {
            let name = names
                .iter()
                .find(|(id, _)| *id == i.id)
                .map_or("?", |(_, n)| n);
            share_line(i, name)
        })
        .collect();
    out.push(format!("listed: {}", listed.join("; ")));
    // Payloads a share of a session may read: those its entries reference.
    out.push(format!(
        "payloads before: {}",
        shown(store.payload_totals())
    ));
    store
        .append(&session, vec![result(9, output(9, 2 * THRESHOLD))])
        .unwrap();
    let lean = store.previews_after(&session, Seq(8), 1).unwrap();
    let hash = lean[0].payload_refs()[0].hash.as_str().to_owned();
    out.push(format!(
        "references its payload: {}",
        shown(store.session_references_payload(&session, &hash))
    ));
    out.push(format!(
        "the other session references it: {}",
        shown(store.session_references_payload(&other, &hash))
    ));
    let unknown = crate::payloads::hash("not stored");
    out.push(format!(
        "references an unknown payload: {}",
        shown(store.session_references_payload(&session, unknown.as_str()))
    ));
    // The same output again is stored once.
    store
        .append(&session, vec![result(10, output(9, 2 * THRESHOLD))])
        .unwrap();
    out.push(format!("payloads after: {}", shown(store.payload_totals())));
    out.join("\n")
}

#[test]
fn shares_are_the_same_on_both_backends() {
    let pair = Pair::new();
    let (lite, pg) = pair.run(shares);
    assert_eq!(pg, lite, "PostgreSQL (left) and SQLite (right) differ");
    println!("{pg}");
    assert_eq!(
        pg.lines().collect::<Vec<_>>(),
        [
            "created: a of s-0001 created=0 expires=None revoked=None",
            "created: b of s-0001 created=1 expires=Some(60001) revoked=None",
            "check a: active: a of s-0001 created=0 expires=None revoked=None",
            "check nope: unknown",
            "check a near miss: unknown",
            "active: a b",
            "b just before expiry: active: b of s-0001 created=1 expires=Some(60001) revoked=None",
            "active: a b",
            "b at expiry: expired: b of s-0001 created=1 expires=Some(60001) revoked=None",
            "active: a",
            "revoke a: ok(\"a of s-0001 created=0 expires=None revoked=Some(60006)\")",
            "revoke a again: ok(\"a of s-0001 created=0 expires=None revoked=Some(60006)\")",
            "revoke b (expired): ok(\"b of s-0001 created=1 expires=Some(60001) revoked=Some(60011)\")",
            "check a: revoked: a of s-0001 created=0 expires=None revoked=Some(60006)",
            "check b: revoked: b of s-0001 created=1 expires=Some(60001) revoked=Some(60011)",
            "active: ",
            "share a: ok(\"a of s-0001 created=0 expires=None revoked=Some(60006)\")",
            "share 0123: error: unknown share 0123 (`podlog share --list` lists them)",
            "revoke 0123: error: unknown share 0123 (`podlog share --list` lists them)",
            "share zzz: error: unknown session zzz",
            "share s- (ambiguous): error: session prefix \"s-\" is ambiguous: it matches s-0001, s-0002",
            "listed: b of s-0001 created=1 expires=Some(60001) revoked=Some(60011); \
             a of s-0001 created=0 expires=None revoked=Some(60006)",
            "payloads before: ok((0, 0))",
            "references its payload: ok(true)",
            "the other session references it: ok(false)",
            "references an unknown payload: ok(false)",
            "payloads after: ok((1, 16384))",
        ]
    );
}

/// The share table on PostgreSQL holds the token's hash and never the
/// token.
#[test]
fn a_share_token_is_never_stored_on_postgresql() {
    let mut s = Schema::new();
    let store = s.open();
    let (session, _) = store.create_session(NewSession::default()).unwrap();
    let (info, token) = store.create_share(session.as_str(), None).unwrap();
    let hash = blake3::hash(token.expose().as_bytes()).to_hex().to_string();
    let found = s
        .admin
        .query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE token_hash = $1), \
                 count(*) FILTER (WHERE strpos(s::text, $2) > 0) FROM {}.shares AS s",
                s.name
            ),
            &[&hash, &token.expose()],
        )
        .unwrap();
    assert_eq!((found.get::<_, i64>(0), found.get::<_, i64>(1)), (1, 0));
    // A row changed behind podlog's back to another hash no longer checks
    // as the token's share.
    let other = blake3::hash(b"other").to_hex().to_string();
    s.admin
        .execute(
            &format!("UPDATE {}.shares SET token_hash = $1 WHERE id = $2", s.name),
            &[&other, &info.id],
        )
        .unwrap();
    assert_eq!(
        store.check_share(token.expose()).unwrap(),
        ShareCheck::Unknown
    );
}

const SECRET: &str = "ghp_FAKEfake0000000000000000000000000000";

fn redaction(store: &dyn Backend, _: &HandClock) -> String {
    let mut out = Vec::new();
    let (id, _) = store.create_session(NewSession::default()).unwrap();
    let said = |store: &dyn Backend, seq: u64| {
        let entries = store.entries(&id).unwrap();
        let json = entries[seq as usize - 1].entry.to_json();
        if json.contains(SECRET) {
            "verbatim"
        } else if json.contains("[REDACTED:") {
            "redacted"
        } else {
            "missing"
        }
    };
    out.push(format!("on by default: {}", store.redaction_enabled()));
    store
        .append(&id, vec![user(&format!("token {SECRET}"))])
        .unwrap();
    out.push(format!("seq 2: {}", said(store, 2)));
    store.set_redaction(false).unwrap();
    out.push(format!("after off: {}", store.redaction_enabled()));
    store
        .append(&id, vec![user(&format!("token {SECRET}"))])
        .unwrap();
    out.push(format!("seq 3: {}", said(store, 3)));
    out.join("\n")
}

/// What the reopened store says and does, and that it turns on again.
fn redaction_after_reopen(store: &dyn Backend, _: &HandClock) -> String {
    let mut out = Vec::new();
    let id = SessionId::new("s-0001").unwrap();
    let said = |store: &dyn Backend, seq: u64| {
        let json = store.entries(&id).unwrap()[seq as usize - 1]
            .entry
            .to_json();
        if json.contains(SECRET) {
            "verbatim"
        } else {
            "redacted"
        }
    };
    out.push(format!("reopened: {}", store.redaction_enabled()));
    store
        .append(&id, vec![user(&format!("token {SECRET}"))])
        .unwrap();
    out.push(format!("seq 4: {}", said(store, 4)));
    store.set_redaction(true).unwrap();
    out.push(format!("after on: {}", store.redaction_enabled()));
    store
        .append(&id, vec![user(&format!("token {SECRET}"))])
        .unwrap();
    out.push(format!("seq 5: {}", said(store, 5)));
    // A compaction's summary is new text: redacted when written.
    let (child, start) = store
        .compact(
            &id,
            vec![Message::System {
                text: format!("the user pasted {SECRET}"),
            }],
        )
        .unwrap();
    out.push(format!(
        "compaction summary: {}",
        if start.entry.to_json().contains(SECRET) {
            "verbatim"
        } else {
            "redacted"
        }
    ));
    out.push(format!(
        "compaction's redactions: {}",
        store.session(&child).unwrap().redactions
    ));
    out.join("\n")
}

#[test]
fn the_redaction_switch_is_the_same_on_both_backends_and_survives_a_reopen() {
    let mut pair = Pair::new();
    let (lite, pg) = pair.run(redaction);
    assert_eq!(pg, lite);
    assert_eq!(
        pg,
        "on by default: true\nseq 2: redacted\nafter off: false\nseq 3: verbatim"
    );
    pair.reopen("r");
    let (lite, pg) = pair.run(redaction_after_reopen);
    assert_eq!(pg, lite);
    assert_eq!(
        pg,
        "reopened: false\nseq 4: verbatim\nafter on: true\nseq 5: redacted\n\
         compaction summary: redacted\ncompaction's redactions: 1"
    );
    pair.reopen("t");
    assert!(pair.pg.redaction_enabled() && pair.lite.redaction_enabled());
    assert_eq!(
        pair.schema
            .admin
            .query_one(
                &format!(
                    "SELECT value FROM {}.settings WHERE name = 'redaction'",
                    pair.schema.name
                ),
                &[],
            )
            .unwrap()
            .get::<_, String>(0),
        "on"
    );
}

/// Fork (at `at`, or compaction when `None`) of the 8-entry conversation
/// after `sql` edited its rows behind podlog's back (`{s}` standing for
/// the PostgreSQL schema), on each backend: the two outcomes, SQLite's
/// first, each the error or "ok"; an error must have written nothing.
fn derive_from_broken_parent(sql: &str, at: Option<u64>) -> (String, String) {
    let mut pair = Pair::new();
    let outcome = |store: &dyn Backend, parent: &SessionId| {
        let count = store.sessions().unwrap().len();
        let made = match at {
            Some(at) => store.fork(parent, Seq(at)),
            None => store.compact(parent, vec![]),
        };
        match made {
            Ok(_) => "ok".to_owned(),
            Err(e) => {
                assert_eq!(store.sessions().unwrap().len(), count, "{e}");
                e.to_string()
            }
        }
    };
    let parent = conversation(&pair.lite, None);
    assert_eq!(conversation(&pair.pg, None), parent);
    rusqlite::Connection::open(&pair.path)
        .unwrap()
        .execute_batch(&format!(
            "PRAGMA ignore_check_constraints = ON; {}",
            sql.replace("{s}.", "")
        ))
        .unwrap();
    pair.schema.sql(sql);
    (outcome(&pair.lite, &parent), outcome(&pair.pg, &parent))
}

#[test]
fn fork_and_compaction_refuse_a_broken_parent_as_sqlite_does() {
    let cases = [
        ("DELETE FROM {s}.entries WHERE seq = 8", Some(6), "ok"),
        (
            "DELETE FROM {s}.entries WHERE seq = 8",
            None,
            "session s-0001 seq 8: the session row's last_seq is 8 but the entries end at seq 7",
        ),
        (
            "DELETE FROM {s}.entries WHERE seq = 3",
            Some(5),
            "session s-0001 seq 3: entry missing (the next stored entry is seq 4)",
        ),
        (
            "UPDATE {s}.entries SET body = '{\"type\":\"user_input\",\"ts\":2}' WHERE seq = 2",
            Some(5),
            "session s-0001 seq 2: stored entry does not decode: malformed user_input entry: \
             missing field `text`",
        ),
        (
            "UPDATE {s}.entries SET body = (SELECT body FROM {s}.entries WHERE seq = 1) \
             WHERE seq = 4",
            None,
            "session s-0001 seq 4: a SessionStart after seq 1 (only seq 1 may hold one)",
        ),
    ];
    for (sql, at, want) in cases {
        let (lite, pg) = derive_from_broken_parent(sql, at);
        assert_eq!(lite, want, "SQLite: {sql} at {at:?}");
        assert_eq!(pg, want, "PostgreSQL: {sql} at {at:?}");
    }
}

/// A fork or compaction does not wait for, or disturb, the parent's
/// writer: the advisory lock is a writer's, and the parent goes on at the
/// next seq.
#[test]
fn a_parent_with_an_open_writer_can_be_forked_and_goes_on() {
    let s = Schema::new();
    let store = s.open();
    let parent = conversation(&store, None);
    let sink = store.load_sink(&parent).unwrap();
    let mut writer = store.session_writer(&parent).unwrap();
    let (fork, _) = store.fork(&parent, Seq(8)).unwrap();
    let (compacted, _) = store.compact(&parent, vec![]).unwrap();
    assert_eq!(writer.append(user("after"), &sink).unwrap(), Seq(9));
    assert_eq!(store.entries(&fork).unwrap().len(), 1);
    let parents: Vec<_> = [&fork, &compacted]
        .iter()
        .map(|id| store.session(id).unwrap().parent.unwrap().seq)
        .collect();
    assert_eq!(parents, [Seq(8), Seq(8)]);
}

/// A compaction's cut is the parent's last committed seq when it reads:
/// an append in flight on the parent (here a transaction of another
/// connection that inserted seq 9 as a writer does, not yet committed)
/// neither delays it nor is cut into; once committed, the parent has it.
#[test]
fn a_compaction_cuts_at_the_last_commit_while_an_append_is_in_flight() {
    let mut s = Schema::new();
    let store = s.open();
    let parent = conversation(&store, None);
    s.sql("UPDATE {s}.sessions SET tail = true");
    let entry = super::tests::note(9);
    let mut tx = s.admin.transaction().unwrap();
    tx.execute(
        &format!(
            "INSERT INTO {0}.entries (session_id, seq, ts, kind, body, \
               redactions, stored_bytes, appended_at) \
             VALUES ($1, 9, 9, $2, $3::text::json, 0, 10, 9)",
            s.name
        ),
        &[&parent.as_str(), &entry.kind(), &entry.to_json()],
    )
    .unwrap();
    // The store's connections give up on a lock after their busy timeout,
    // so a compaction that waited for the append would fail, not hang.
    let (child, _) = store.compact(&parent, vec![]).unwrap();
    assert_eq!(
        store.session(&child).unwrap().parent.map(|p| p.seq),
        Some(Seq(8))
    );
    assert_eq!(store.session(&parent).unwrap().last_seq, Seq(8));
    tx.commit().unwrap();
    let info = store.session(&parent).unwrap();
    assert_eq!((info.last_seq, info.entry_count), (Seq(9), 9));
}

/// A share time below 0 (a row edited behind podlog's back) is an error
/// naming the share and its session, never read as another time.
#[test]
fn a_negative_share_time_is_an_error_naming_the_share() {
    let mut s = Schema::new();
    let store = s.open();
    let (session, _) = store.create_session(NewSession::default()).unwrap();
    let (info, _) = store.create_share(session.as_str(), None).unwrap();
    s.admin
        .execute(
            &format!("UPDATE {}.shares SET created_at = -1 WHERE id = $1", s.name),
            &[&info.id],
        )
        .unwrap();
    let want = format!("session s-0001: share {}: created_at is -1", info.id);
    assert_eq!(store.list_shares().unwrap_err().to_string(), want);
    assert_eq!(store.share(&info.id).unwrap_err().to_string(), want);
}
