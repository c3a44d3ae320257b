-- podlog PostgreSQL schema version 9: `entries` has no CHECK constraints,
-- and its insert trigger fires before the row; it checks what they
-- checked, for the rows it fires for.
--
-- Why: the server prepares each CHECK constraint of a table, and each
-- row trigger's WHEN condition, afresh in every statement that inserts
-- into it (it reads the stored expression and plans it again), and an
-- AFTER row trigger also costs each statement the queue of events it
-- would fire. A session writer's durable append is one small INSERT, and
-- these were a large part of what the server did for it. Measured on the
-- project's machine (2 cores, PostgreSQL 15, `synchronous_commit=on`),
-- each guarded INSERT in an autocommit transaction of its own, against a
-- raw INSERT into a table of five columns and no constraints: into
-- `entries` as it was, 0.80x of the raw INSERT's rate; into a copy
-- without the three CHECKs, 0.81-0.87x; with the trigger BEFORE the row
-- rather than AFTER it, 0.83-0.86x (docs/performance.md, PG1).
--
-- What changes:
--   * The CHECKs on `seq` (at least 1), `redactions` and `stored_bytes`
--     (not negative) go.
--   * `entry_check` refuses what they refused, with the same SQLSTATE
--     (23514, check_violation) and the constraint's name in the error.
--     It runs:
--       - in `entry_inserted`, for every row that trigger fires for: any
--         row with payloads, and any row without `appended_at` (create,
--         import, fork, compaction, a DBA's INSERT);
--       - in the new trigger `entry_updated`, before every UPDATE.
--   * A session writer's append of an entry without payloads fires
--     nothing; it keeps the rules by construction: its row is inserted
--     only if the seq before it exists (so its seq is at least 2), and its
--     counters are unsigned numbers in the program.
--   * `entry_inserted` fires BEFORE the row is inserted, with the same
--     condition, and does the same work (the row's payload references,
--     and its search row unless a writer's catch-up does that). What it
--     reads, the payloads the row names, podlog writes in earlier
--     statements (create, import, fork, compaction) or does not read
--     (a writer's append: its words come from the catch-up). A hand-written
--     statement that inserts payloads and an entry naming them at once
--     gets that entry's words without the payloads' text; such an entry
--     is indexed in full by writing its payloads first, as podlog does.
--   * The DELETE and UPDATE triggers stay as they were.

ALTER TABLE entries
    DROP CONSTRAINT entries_seq_check,
    DROP CONSTRAINT entries_redactions_check,
    DROP CONSTRAINT entries_stored_bytes_check;

-- Refuses what the dropped CHECKs refused, as they refused it.
CREATE FUNCTION entry_check(seq bigint, redactions bigint, stored_bytes bigint)
RETURNS void LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    broken text;
BEGIN
    IF seq < 1 THEN
        broken := 'entries_seq_check';
    ELSIF redactions < 0 THEN
        broken := 'entries_redactions_check';
    ELSIF stored_bytes < 0 THEN
        broken := 'entries_stored_bytes_check';
    ELSE
        RETURN;
    END IF;
    RAISE EXCEPTION 'new row for relation "entries" violates check constraint "%"', broken
        USING ERRCODE = 'check_violation', CONSTRAINT = broken, TABLE = 'entries';
END
$$;

CREATE OR REPLACE FUNCTION entry_inserted() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM entry_check(NEW.seq, NEW.redactions, NEW.stored_bytes);
    IF NEW.payloads IS NOT NULL THEN
        -- An entry may name the same payload twice (two equal strings):
        -- one row.
        INSERT INTO payload_refs (hash, session_id, seq)
        SELECT DISTINCT r.value ->> 'hash', NEW.session_id, NEW.seq
        FROM json_array_elements(NEW.payloads) AS r
        ON CONFLICT DO NOTHING;
    END IF;
    IF NEW.appended_at IS NULL
       AND NEW.kind IN ('user_input', 'assistant_item', 'tool_result', 'system_item') THEN
        INSERT INTO search (session_id, seq, ts, kind, words)
        VALUES (NEW.session_id, NEW.seq, NEW.ts, NEW.kind,
                search_words(search_text(NEW.kind, NEW.body, NEW.payloads)));
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER entry_inserted ON entries;

CREATE TRIGGER entry_inserted BEFORE INSERT ON entries
FOR EACH ROW WHEN (NEW.payloads IS NOT NULL OR NEW.appended_at IS NULL)
EXECUTE FUNCTION entry_inserted();

CREATE FUNCTION entry_updated() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM entry_check(NEW.seq, NEW.redactions, NEW.stored_bytes);
    RETURN NEW;
END
$$;

CREATE TRIGGER entry_updated BEFORE UPDATE ON entries
FOR EACH ROW EXECUTE FUNCTION entry_updated();
