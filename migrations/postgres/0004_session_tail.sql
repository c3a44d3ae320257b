-- podlog PostgreSQL schema version 4: a session writer's appends leave the
-- session row alone; its counters catch up every 64 entries.
--
-- Why: before, each append's transaction also wrote a new version of the
-- session row (its last seq, entry count, time, redaction count and size),
-- about 0.05 ms of a durable append whose budget next to a raw `INSERT` is
-- about 0.3 ms (docs/performance.md, PG1). The entry rows now carry what the
-- counters need, and the row is brought up to date ("folded") in the
-- transaction of every 64th seq, when its writer opens the session and when
-- it closes it.
--
-- How:
--   * `entries` gains the three numbers an append added to its session's
--     row: `redactions` (secrets replaced in the entry), `stored_bytes`
--     (its body's UTF-8 length plus the sizes of the payloads it
--     references) and `appended_at` (the store's clock at the append). They
--     are set by a session writer's appends only, and NULL in every other
--     row (entries written by create, import, fork and compaction, whose
--     transactions set the session row's counters themselves).
--   * `sessions.tail` is true while a writer may have appended past
--     `last_seq`: set by the writer's open, cleared by its close. The
--     session's true counters are the row's plus its entries above
--     `last_seq` ("the tail", fewer than 64 while the writer lives; more
--     only if one died and no writer opened the session since).
--   * `sessions_now` is the session table as readers see it: each row with
--     its tail added, looked for only when `tail` is set (one index probe).
--     Every read of counters (a session, the listing, a follower's last
--     seqs, lineage, fork, retention, verify, export) goes through it.
--   * The append's transaction inserts the entry alone, guarded: its seq's
--     predecessor must exist and the seq must be free (the primary key), so
--     seqs stay gap-free and a second writer's entry is refused, as the
--     row's guard refused it before.
--   * The foreign key from `entries` to `sessions` goes: checking it locked
--     the session row at every append (a row lock is written to the WAL),
--     about 0.03 to 0.05 ms of it. What it guarded holds without it: an
--     append needs its predecessor, so a session's entries chain down to
--     its seq 1, which is only ever written in the transaction that writes
--     the session row (create, import, fork, compaction); a session is only
--     deleted by retention, which holds the session's lock (so no writer
--     appends meanwhile) and deletes its entries in the same transaction.
--     An entry without a session, written behind podlog's back, is what
--     `podlog verify` reports as an orphan.

ALTER TABLE entries
    ADD COLUMN redactions   bigint CHECK (redactions >= 0),
    ADD COLUMN stored_bytes bigint CHECK (stored_bytes >= 0),
    ADD COLUMN appended_at  bigint;

ALTER TABLE sessions ADD COLUMN tail boolean NOT NULL DEFAULT false;

ALTER TABLE entries DROP CONSTRAINT entries_session_id_fkey;

CREATE VIEW sessions_now AS
SELECT s.id, s.origin, s.parent_id, s.parent_seq, s.created_at,
       greatest(s.updated_at, t.updated_at) AS updated_at,
       coalesce(t.last_seq, s.last_seq) AS last_seq,
       s.entry_count + t.n AS entry_count,
       s.title,
       s.redactions + coalesce(t.redactions, 0) AS redactions,
       s.stored_bytes + coalesce(t.stored_bytes, 0) AS stored_bytes
FROM sessions AS s
CROSS JOIN LATERAL (
    SELECT max(e.seq) AS last_seq,
           count(*) AS n,
           max(e.appended_at) AS updated_at,
           sum(e.redactions)::bigint AS redactions,
           sum(e.stored_bytes)::bigint AS stored_bytes
    FROM entries AS e
    WHERE s.tail AND e.session_id = s.id AND e.seq > s.last_seq
) AS t;
