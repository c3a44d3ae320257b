-- podlog PostgreSQL schema version 6: the search index catches up by
-- index, whatever the table statistics say.
--
-- Why: `search_catch_up` (0003_search_deferred.sql) runs once per batch of
-- announced commits. PL/pgSQL keeps its statements' plans, and a plan made
-- while `entries` was new or small (a fresh schema, before autovacuum has
-- analyzed it) read the entries to index with a hash join over a
-- sequential scan of the whole table, and found the sessions with
-- something to index with a hash semi-join over another one. Kept as the
-- table grew, those plans made every catch-up read every entry. Measured
-- on the project's machine: the lookup of the sessions to index, planned
-- on an empty table, took 100 ms once the table held 200,000 entries, and
-- 0.1 to 0.4 ms in this version's form; in profiles of PG2
-- (docs/performance.md) the announcer's backend spent most of its time
-- in sequential scans.
--
-- What changes: both lookups are per session and per seq range, written
-- as `LATERAL` subqueries, which the planner can only run as a nested loop
-- probing the primary key (session_id, seq) for each session. The first
-- entry above a mark is found with `LIMIT 1` (an `EXISTS` is turned into
-- a semi-join, which is free to scan). The rows inserted, their order
-- and the marks are the same as version 3's.

CREATE OR REPLACE FUNCTION search_catch_up(wanted text[], bounds bigint[]) RETURNS bigint
LANGUAGE plpgsql
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
        CROSS JOIN LATERAL (
            SELECT e.seq FROM entries AS e
            WHERE e.session_id = g.session_id AND e.seq > g.indexed_seq
            ORDER BY e.seq LIMIT 1) AS ahead
        WHERE (wanted IS NULL OR w.session_id IS NOT NULL)
        ORDER BY g.session_id
        FOR UPDATE OF g
    LOOP
        SELECT e.seq INTO upto
        FROM entries AS e
        WHERE e.session_id = p.session_id AND e.seq > p.indexed_seq
          AND e.seq <= coalesce(p.bound, 9223372036854775807)
        ORDER BY e.seq DESC LIMIT 1;
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
    CROSS JOIN LATERAL (
        SELECT e.session_id, e.seq, e.ts, e.kind, e.body, e.payloads
        FROM entries AS e
        WHERE e.session_id = r.session_id AND e.seq > r.low AND e.seq <= r.high
        ORDER BY e.seq) AS e
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
