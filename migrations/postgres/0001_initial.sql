-- podlog PostgreSQL schema version 1: the core of the SQLite schema
-- (migrations/0001 to 0007) on PostgreSQL 15.
--
-- Created in the connection's current schema (the first of its
-- search_path), so one database can hold several podlog stores, one per
-- schema. The schema version is the one row of `podlog_schema_version`,
-- which the program (not this file) creates and bumps in the same
-- transaction as each migration; see `crates/podlog-store/src/pg/migrate.rs`.
--
-- Differences from SQLite, and why:
--   * `entries.body` and `entries.payloads` are `json`, not `jsonb`: `json`
--     keeps the text exactly as written, so a row reads back byte for byte
--     (export from either backend is the same) while the server still
--     checks that it is JSON, as SQLite's `CHECK (json_valid(body))` does.
--   * Integers are `bigint` (SQLite's INTEGER is 64-bit too).
--   * Ids and hashes are `text COLLATE "C"`: compared and ordered byte by
--     byte, as SQLite compares text, whatever the database's locale.
--   * `payload_refs` is kept by PL/pgSQL triggers, as SQLite's triggers
--     keep it, so every way an entry is written or deleted keeps it exact.
--   * No views and no search index yet: they come with the features that
--     use them.

-- One row per session, with the counters every append keeps, so listing
-- sessions never scans entries.
CREATE TABLE sessions (
    id           text    COLLATE "C" NOT NULL PRIMARY KEY,
    -- The session this one was forked or compacted from, and the parent's
    -- seq at the cut; both NULL for a new session.
    parent_id    text    COLLATE "C" REFERENCES sessions (id),
    parent_seq   bigint  CHECK (parent_seq >= 1),
    origin       text    NOT NULL CHECK (origin IN ('new', 'fork', 'compaction')),
    -- Milliseconds since the Unix epoch.
    created_at   bigint  NOT NULL,
    updated_at   bigint  NOT NULL,
    last_seq     bigint  NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    entry_count  bigint  NOT NULL DEFAULT 0 CHECK (entry_count >= 0),
    title        text,
    -- Secrets replaced in the session's entries and title.
    redactions   bigint  NOT NULL DEFAULT 0 CHECK (redactions >= 0),
    -- UTF-8 length of each entry's body plus the size of every payload it
    -- references (see migrations/0007_redaction.sql).
    stored_bytes bigint  NOT NULL DEFAULT 0 CHECK (stored_bytes >= 0),
    CHECK ((parent_id IS NULL) = (parent_seq IS NULL)),
    CHECK ((origin = 'new') = (parent_id IS NULL))
);

CREATE INDEX sessions_by_parent ON sessions (parent_id);
-- The listing's order: newest first.
CREATE INDEX sessions_by_created ON sessions (created_at DESC, id DESC);

-- Every entry, keyed by (session_id, seq); seq starts at 1 (the session's
-- SessionStart) and has no gap. `kind` and `ts` repeat the body's, for
-- queries that must not parse it. `payloads` lists where large strings were
-- cut out of `body` (a JSON array of {"path", "hash", "size"}), NULL when
-- the body is whole.
CREATE TABLE entries (
    session_id text   COLLATE "C" NOT NULL REFERENCES sessions (id),
    seq        bigint NOT NULL CHECK (seq >= 1),
    ts         bigint NOT NULL,
    kind       text   NOT NULL,
    body       json   NOT NULL,
    payloads   json,
    PRIMARY KEY (session_id, seq)
);

-- Strings of 8 KiB or more, stored once, keyed by the BLAKE3 hash of their
-- text (64 lowercase hexadecimal digits). Never updated: a hash names one
-- text forever.
CREATE TABLE payloads (
    hash text   COLLATE "C" NOT NULL PRIMARY KEY CHECK (length(hash) = 64),
    size bigint NOT NULL CHECK (size >= 0),
    text text   NOT NULL
);

-- Which entries reference each payload, one row per (payload, entry) pair:
-- what retention asks before it deletes a payload.
CREATE TABLE payload_refs (
    hash       text   COLLATE "C" NOT NULL,
    session_id text   COLLATE "C" NOT NULL,
    seq        bigint NOT NULL,
    PRIMARY KEY (hash, session_id, seq)
);

CREATE FUNCTION payload_refs_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- An entry may name the same payload twice (two equal strings): one row.
    INSERT INTO payload_refs (hash, session_id, seq)
    SELECT DISTINCT r.value ->> 'hash', NEW.session_id, NEW.seq
    FROM json_array_elements(NEW.payloads) AS r
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE FUNCTION payload_refs_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM payload_refs
    WHERE session_id = OLD.session_id
      AND seq = OLD.seq
      AND hash IN (SELECT r.value ->> 'hash' FROM json_array_elements(OLD.payloads) AS r);
    RETURN NULL;
END
$$;

CREATE TRIGGER payload_refs_insert AFTER INSERT ON entries
FOR EACH ROW WHEN (NEW.payloads IS NOT NULL)
EXECUTE FUNCTION payload_refs_insert();

CREATE TRIGGER payload_refs_delete AFTER DELETE ON entries
FOR EACH ROW WHEN (OLD.payloads IS NOT NULL)
EXECUTE FUNCTION payload_refs_delete();

-- podlog never updates an entry row; these keep the references true if
-- anything else does. Triggers on one event fire in name order: the old
-- references go before the new ones come.
CREATE TRIGGER payload_refs_update_1_old AFTER UPDATE OF session_id, seq, payloads ON entries
FOR EACH ROW WHEN (OLD.payloads IS NOT NULL)
EXECUTE FUNCTION payload_refs_delete();

CREATE TRIGGER payload_refs_update_2_new AFTER UPDATE OF session_id, seq, payloads ON entries
FOR EACH ROW WHEN (NEW.payloads IS NOT NULL)
EXECUTE FUNCTION payload_refs_insert();

-- Read-only share links (see migrations/0004_shares.sql): the token itself
-- is never stored, only its BLAKE3 hash.
CREATE TABLE shares (
    id         text   COLLATE "C" NOT NULL PRIMARY KEY,
    session_id text   COLLATE "C" NOT NULL REFERENCES sessions (id),
    token_hash text   NOT NULL UNIQUE CHECK (length(token_hash) = 64),
    created_at bigint NOT NULL,
    expires_at bigint CHECK (expires_at IS NULL OR expires_at >= created_at),
    revoked_at bigint
);

CREATE INDEX shares_by_session ON shares (session_id);

-- Store-wide switches as name/value text: `redaction` ('on' or 'off', on
-- when absent). The redaction key is not here (see redaction.rs).
CREATE TABLE settings (
    name  text NOT NULL PRIMARY KEY,
    value text NOT NULL
);
