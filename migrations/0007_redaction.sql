-- podlog schema version 7: write-time redaction, its counts, and each
-- session's stored size.
--
-- `settings` holds store-wide switches as name/value text; podlog reads
-- `redaction` ('on' or 'off', on when absent). The key that redaction
-- markers are hashed with is NOT here: it lives in a 0600 file beside the
-- database, so whoever reads the database alone cannot confirm a guessed
-- secret against a marker.
--
-- `sessions.redactions` counts the secrets replaced in the session's
-- entries; `sessions.stored_bytes` is the size of the session's rows: the
-- UTF-8 length of each entry's `body` plus the `size` of every payload
-- reference in its `payloads` (a payload shared by two entries or sessions
-- counts for each, as it would if it were inline). Both are kept by every
-- append in its transaction; `stored_bytes` is filled in for existing rows
-- here, `redactions` starts at 0 (nothing written before was redacted).

CREATE TABLE settings (
    name  TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

ALTER TABLE sessions ADD COLUMN redactions INTEGER NOT NULL DEFAULT 0
    CHECK (redactions >= 0);

ALTER TABLE sessions ADD COLUMN stored_bytes INTEGER NOT NULL DEFAULT 0
    CHECK (stored_bytes >= 0);

UPDATE sessions SET stored_bytes = (
    SELECT coalesce(sum(length(CAST(e.body AS BLOB))
                        + coalesce((SELECT sum(json_extract(r.value, '$.size'))
                                    FROM json_each(e.payloads) AS r), 0)), 0)
    FROM entries AS e
    WHERE e.session_id = sessions.id);
