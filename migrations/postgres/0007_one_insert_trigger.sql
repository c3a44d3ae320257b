-- podlog PostgreSQL schema version 7: one trigger on an inserted entry,
-- and only when it has work to do.
--
-- Why: every INSERT into `entries` had two row triggers to consider,
-- `payload_refs_insert` and `search_insert`. Neither fires for a session
-- writer's plain append, but the server prepares each trigger's WHEN
-- condition afresh in every statement, and `search_insert`'s (a list of
-- kinds and a `current_setting` call) is not small. Measured on the
-- project's machine with pgbench, at synchronous_commit=off: about 0.04 ms
-- of an INSERT that takes 0.12 ms on a table without them, in a durable
-- append whose whole budget next to a raw `INSERT` is a few tenths of a
-- millisecond (docs/performance.md, PG1).
--
-- What changes:
--   * `entry_inserted` does what both did: the payload references of an
--     entry with payloads (as `payload_refs_insert`), and the search row
--     of a searchable entry that is not a session writer's (as
--     `search_insert`), in that order.
--   * A session writer's row is now told by its `appended_at`, which only
--     a writer's append sets (0004_session_tail.sql), instead of by the
--     connection setting `podlog.search_deferred`: its words are written
--     after the commit by `search_catch_up` (0003_search_deferred.sql),
--     as before. Every other way an entry is written (create, import,
--     fork, compaction, a DBA's INSERT without `appended_at`) still
--     indexes it in its own transaction.
--   * Its WHEN condition is two NULL tests, so a writer's plain append
--     costs the server one small condition.
--   * The UPDATE and DELETE triggers stay as they were.

DROP TRIGGER payload_refs_insert ON entries;
DROP TRIGGER search_insert ON entries;

CREATE FUNCTION entry_inserted() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
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
    RETURN NULL;
END
$$;

-- AFTER the row, so the payloads the append inserts in the same statement
-- are visible to `search_text`.
CREATE TRIGGER entry_inserted AFTER INSERT ON entries
FOR EACH ROW WHEN (NEW.payloads IS NOT NULL OR NEW.appended_at IS NULL)
EXECUTE FUNCTION entry_inserted();
