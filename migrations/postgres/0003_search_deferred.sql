-- podlog PostgreSQL schema version 3: a session writer's entries are
-- indexed for search after their commit instead of inside it.
--
-- Why: computing an entry's words (`search_words(search_text(...))`) and
-- inserting its search row took about 0.07 ms of a durable append whose
-- whole budget, next to a raw `INSERT`, is about 0.3 ms (docs/performance.md,
-- PG1). The words are derived data: the append's transaction now writes the
-- entry alone, and the index catches up from another connection.
--
-- How:
--   * A session writer's connection sets `podlog.search_deferred` to `on`;
--     the `search_insert` trigger skips the rows such a connection inserts.
--     Every other way an entry is written (create, import, fork,
--     compaction, a DBA's INSERT) still indexes it in its own transaction.
--   * `search_progress` has a row for each session whose entries may be
--     ahead of the index: the writer inserts it when it opens the session
--     (`indexed_seq` = the session's end then; a row already there, left by
--     a writer that died, is kept with its older mark). Every entry of the
--     session up to `indexed_seq` is indexed; entries above it may not be.
--   * `search_catch_up(sessions)` indexes what is above the mark and moves
--     it, under the row's lock, so two catch-ups of one session take turns
--     and the second finds nothing to do. It runs: after every commit, from
--     the store's announcer thread, in the transaction that sends the
--     commit's notice (so a follower woken by the notice finds the entry
--     searchable); before every search, for all sessions (so a search sees
--     every committed entry, as before); in `rebuild_search_index`.
--   * When a writer closes it catches its session up and deletes the row
--     (`search_release`). A writer that dies leaves its row, with possibly
--     some entries above the mark, until a search or the next writer of
--     the session catches it up; each search then checks it once more (an
--     index probe a row).
--   * Deleting a session deletes its row (the foreign key cascades).

CREATE TABLE search_progress (
    session_id  text   COLLATE "C" NOT NULL PRIMARY KEY
                REFERENCES sessions (id) ON DELETE CASCADE,
    indexed_seq bigint NOT NULL CHECK (indexed_seq >= 0)
);

-- Indexes the entries of the sessions `wanted` (all sessions with a
-- progress row when NULL) above their marks, up to `bounds` (the seq each
-- announced commit reached, in the order of `wanted`; no bound when NULL or
-- a NULL element), and moves the marks; returns how many search rows it
-- wrote. The progress rows are locked in id order, so concurrent catch-ups
-- take turns per session and cannot deadlock. The rows are inserted in one
-- statement ordered by (ts, session, seq): search hits come newest first
-- by insertion, and announced batches are in commit order, so the bound
-- keeps a batch from indexing commits that a later batch announces.
CREATE FUNCTION search_catch_up(wanted text[], bounds bigint[]) RETURNS bigint LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    p record;
    upto bigint;
    ids text[] := '{}';
    lows bigint[] := '{}';
    highs bigint[] := '{}';
    n bigint;
BEGIN
    FOR p IN
        SELECT g.session_id, g.indexed_seq, w.bound
        FROM search_progress AS g
        LEFT JOIN unnest(wanted, bounds) AS w (session_id, bound)
               ON w.session_id = g.session_id
        WHERE (wanted IS NULL OR w.session_id IS NOT NULL)
          AND EXISTS (SELECT 1 FROM entries AS e
                      WHERE e.session_id = g.session_id AND e.seq > g.indexed_seq)
        ORDER BY g.session_id
        FOR UPDATE OF g
    LOOP
        SELECT max(e.seq) INTO upto
        FROM entries AS e
        WHERE e.session_id = p.session_id AND e.seq > p.indexed_seq
          AND (p.bound IS NULL OR e.seq <= p.bound);
        CONTINUE WHEN upto IS NULL;
        ids := ids || p.session_id;
        lows := lows || p.indexed_seq;
        highs := highs || upto;
    END LOOP;
    IF cardinality(ids) = 0 THEN
        RETURN 0;
    END IF;
    INSERT INTO search (session_id, seq, ts, kind, words)
    SELECT e.session_id, e.seq, e.ts, e.kind,
           search_words(search_text(e.kind, e.body, e.payloads))
    FROM unnest(ids, lows, highs) AS r (session_id, low, high)
    JOIN entries AS e ON e.session_id = r.session_id AND e.seq > r.low AND e.seq <= r.high
    WHERE e.kind IN ('user_input', 'assistant_item', 'tool_result', 'system_item')
    ORDER BY e.ts, e.session_id, e.seq
    ON CONFLICT (session_id, seq) DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    UPDATE search_progress AS g SET indexed_seq = r.high
    FROM unnest(ids, highs) AS r (session_id, high)
    WHERE g.session_id = r.session_id;
    RETURN n;
END
$$;

-- A writer closing `session`: catches it up, then deletes its row unless
-- entries were added above the mark meanwhile.
CREATE FUNCTION search_release(session text) RETURNS void LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM search_catch_up(ARRAY[session], NULL);
    DELETE FROM search_progress AS g
    WHERE g.session_id = session
      AND NOT EXISTS (SELECT 1 FROM entries AS e
                      WHERE e.session_id = g.session_id AND e.seq > g.indexed_seq);
END
$$;

-- The trigger of schema 2, now skipping the rows of a writer's connection.
DROP TRIGGER search_insert ON entries;
CREATE TRIGGER search_insert AFTER INSERT ON entries
FOR EACH ROW WHEN (NEW.kind IN ('user_input', 'assistant_item', 'tool_result', 'system_item')
                   AND current_setting('podlog.search_deferred', true) IS DISTINCT FROM 'on')
EXECUTE FUNCTION search_insert();
