-- podlog schema version 6: which entries reference each payload.
--
-- Retention (`podlog gc`, `podlog rm`) deletes whole sessions, and with
-- them every payload no remaining entry references. Finding whether a
-- payload is referenced from `entries.payloads` alone means reading every
-- entry that has payloads (0.4 s per payload on a database of a million
-- entries), inside the write transaction that deletes; this table answers
-- it with one index lookup. It holds one row per (payload, entry) pair and
-- is kept by the triggers below, so every way an entry is inserted,
-- deleted or (by hand: podlog never does) changed keeps it exact;
-- upgrading fills it from the existing rows.

CREATE TABLE payload_refs (
    hash       TEXT    NOT NULL,
    session_id TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    PRIMARY KEY (hash, session_id, seq)
) STRICT, WITHOUT ROWID;

INSERT OR IGNORE INTO payload_refs (hash, session_id, seq)
SELECT json_extract(r.value, '$.hash'), e.session_id, e.seq
FROM entries AS e, json_each(e.payloads) AS r
WHERE e.payloads IS NOT NULL;

-- An entry may name the same payload twice (two equal strings): one row.
CREATE TRIGGER payload_refs_insert AFTER INSERT ON entries
WHEN new.payloads IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO payload_refs (hash, session_id, seq)
    SELECT json_extract(r.value, '$.hash'), new.session_id, new.seq
    FROM json_each(new.payloads) AS r;
END;

CREATE TRIGGER payload_refs_delete AFTER DELETE ON entries
WHEN old.payloads IS NOT NULL
BEGIN
    DELETE FROM payload_refs
    WHERE session_id = old.session_id
      AND seq = old.seq
      AND hash IN (SELECT json_extract(r.value, '$.hash') FROM json_each(old.payloads) AS r);
END;

CREATE TRIGGER payload_refs_update AFTER UPDATE OF session_id, seq, payloads ON entries
BEGIN
    DELETE FROM payload_refs
    WHERE session_id = old.session_id
      AND seq = old.seq
      AND hash IN (SELECT json_extract(r.value, '$.hash') FROM json_each(old.payloads) AS r);
    INSERT OR IGNORE INTO payload_refs (hash, session_id, seq)
    SELECT json_extract(r.value, '$.hash'), new.session_id, new.seq
    FROM json_each(new.payloads) AS r;
END;
