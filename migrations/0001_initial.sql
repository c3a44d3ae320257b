-- podlog schema version 1: sessions, their entries, and readable views.
--
-- Every object here must load in the sqlite3 shell of Debian 12 (SQLite
-- 3.40): STRICT tables (3.37) and the JSON functions (3.38) are fine.

CREATE TABLE sessions (
    id          TEXT    NOT NULL PRIMARY KEY,
    -- The session this one was forked or compacted from, and the parent's
    -- seq at the cut; both NULL for a new session.
    parent_id   TEXT    REFERENCES sessions (id),
    parent_seq  INTEGER CHECK (parent_seq >= 1),
    origin      TEXT    NOT NULL CHECK (origin IN ('new', 'fork', 'compaction')),
    created_at  INTEGER NOT NULL,
    -- Counters kept by every append, so listing sessions never scans entries.
    updated_at  INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    entry_count INTEGER NOT NULL DEFAULT 0 CHECK (entry_count >= 0),
    title       TEXT,
    CHECK ((parent_id IS NULL) = (parent_seq IS NULL)),
    CHECK ((origin = 'new') = (parent_id IS NULL))
) STRICT;

CREATE INDEX sessions_by_parent ON sessions (parent_id);

CREATE TABLE entries (
    session_id TEXT    NOT NULL REFERENCES sessions (id),
    seq        INTEGER NOT NULL CHECK (seq >= 1),
    ts         INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    body       TEXT    NOT NULL CHECK (json_valid(body)),
    PRIMARY KEY (session_id, seq)
) STRICT;

-- Sessions with readable times, newest first.
CREATE VIEW session_list AS
SELECT id,
       origin,
       parent_id,
       parent_seq,
       strftime('%Y-%m-%dT%H:%M:%fZ', created_at / 1000.0, 'unixepoch') AS created,
       strftime('%Y-%m-%dT%H:%M:%fZ', updated_at / 1000.0, 'unixepoch') AS updated,
       last_seq,
       entry_count,
       title
FROM sessions
ORDER BY created_at DESC, id DESC;

-- One line per entry: ISO-8601 time, kind, and a one-line summary.
CREATE VIEW timeline AS
SELECT session_id,
       seq,
       strftime('%Y-%m-%dT%H:%M:%fZ', ts / 1000.0, 'unixepoch') AS time,
       kind,
       substr(replace(replace(
         CASE kind
           WHEN 'session_start' THEN
             coalesce('compacted from ' || json_extract(body, '$.compacted_from.session_id')
                        || '@' || json_extract(body, '$.compacted_from.seq'),
                      'forked from ' || json_extract(body, '$.forked_from.session_id')
                        || '@' || json_extract(body, '$.forked_from.seq'),
                      'new session')
             || ', model ' || coalesce(json_extract(body, '$.config.model'), '?')
             || ', ' || json_array_length(body, '$.history') || ' history messages'
           WHEN 'user_input' THEN json_extract(body, '$.text')
           WHEN 'assistant_item' THEN
             CASE json_extract(body, '$.item.kind')
               WHEN 'tool_call' THEN 'call ' || json_extract(body, '$.item.name')
                 || ' ' || json_extract(body, '$.item.arguments')
               ELSE json_extract(body, '$.item.kind') || ': ' || json_extract(body, '$.item.text')
             END
           WHEN 'tool_result' THEN
             CASE WHEN json_extract(body, '$.is_error') THEN 'error from ' ELSE 'result of ' END
             || json_extract(body, '$.call_id') || ': ' || json_extract(body, '$.output')
           WHEN 'turn_end' THEN 'turn ' || json_extract(body, '$.turn_count') || ' ended'
           WHEN 'run_completed' THEN 'run completed after '
             || json_extract(body, '$.turn_count') || ' turns'
           WHEN 'run_errored' THEN json_extract(body, '$.kind') || ': ' || json_extract(body, '$.message')
           WHEN 'llm_usage' THEN json_extract(body, '$.model')
             || ' in=' || json_extract(body, '$.input_tokens')
             || ' out=' || json_extract(body, '$.output_tokens')
             || ' cached=' || json_extract(body, '$.cached_tokens')
           WHEN 'system_item' THEN coalesce(json_extract(body, '$.item.message'),
                                            json_extract(body, '$.item.kind'))
           WHEN 'config_changed' THEN 'model ' || json_extract(body, '$.config.model')
           WHEN 'extension' THEN json_extract(body, '$.name') || ' ' || json_extract(body, '$.data')
           ELSE 'entry of a newer version'
         END, char(10), ' '), char(13), ' '), 1, 120) AS summary
FROM entries;

-- Tokens used, per session and model.
CREATE VIEW usage AS
SELECT session_id,
       json_extract(body, '$.model') AS model,
       count(*) AS calls,
       sum(json_extract(body, '$.input_tokens')) AS input_tokens,
       sum(json_extract(body, '$.output_tokens')) AS output_tokens,
       sum(json_extract(body, '$.cached_tokens')) AS cached_tokens
FROM entries
WHERE kind = 'llm_usage'
GROUP BY session_id, model;
