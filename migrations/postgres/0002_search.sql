-- podlog PostgreSQL schema version 2: full-text search over what was said
-- and done, the PostgreSQL form of migrations/0005_search.sql and
-- 0008_search_batches.sql.
--
-- What is indexed is what the SQLite index covers, one text per entry
-- (`search_text`, the SQLite view of that name):
--   user_input      the text the user typed
--   assistant_item  text and reasoning; for a tool call, its name and arguments
--   tool_result     the output
--   system_item     a notification's message and body
-- A string stored out of line is indexed whole, from `payloads`, never its
-- preview. Other kinds are not indexed.
--
-- Layout, chosen for the append's cost: one row per searchable entry in the
-- table `search` (its key, its kind and time, for the filters, and its
-- words as a `tsvector`), with a GIN index on the words. A generated column
-- cannot do it (the text of an entry with payloads needs `payloads`, which a
-- generated column may not read), and a `tsvector` column on `entries` would
-- make every entry row wider for reads that never look at it. The row is
-- written by a trigger on `entries`, in the append's transaction, so a
-- search is never stale and never ahead of the log, a failed append leaves
-- nothing behind, and import, fork, compaction and retention need no code
-- of their own: deleting an entry deletes its search row (a separate table
-- needs no payload to take words out, unlike FTS5). The GIN index keeps
-- `fastupdate` on (PostgreSQL's default, stated here because it matters):
-- an insert appends to the index's pending list instead of updating one
-- posting tree per word, and the list is merged in bulk by vacuum or when it
-- passes `gin_pending_list_limit`; a search reads the pending list too.
-- Measured on the project's machine (PostgreSQL 15, release build): a
-- searchable entry costs the server about 50 us more (its words 15, the
-- row and its three indexes the rest; with `fastupdate` off the GIN index
-- alone adds 60 more). A durable append (`synchronous_commit` on) waits
-- about 3 ms for the WAL flush here, so the index is within the noise
-- there; with `synchronous_commit` off an append goes from about 155 us
-- to about 250 us. Entries of other kinds write nothing for the index.
--
-- Order: `search.id`, an identity, grows with each indexed entry; hits come
-- newest first by it and a page's cursor is the last hit's id. Ids are
-- taken when the row is inserted, not when it commits, so an entry whose
-- transaction commits late may appear below a cursor already handed out: a
-- pager sees every hit that existed when it started exactly once, and may
-- see such a late one too. Entries present when this migration ran are
-- numbered by (ts, session_id, seq).
--
-- Words: the text's ASCII punctuation becomes space first, so a word is a
-- run of letters and digits as in SQLite's `unicode61` tokenizer
-- (`src/main.rs` is `src main rs`, `snake_case` is `snake case`), then the
-- 'simple' configuration lower-cases each word and stems nothing, as FTS5
-- does. Unlike `unicode61 remove_diacritics 2`, diacritics are kept
-- (PostgreSQL ships `unaccent` only as an extension). A `tsvector` holds
-- at most 1 MiB of words and positions, which distinct short words reach
-- with about half as many bytes of text (a word of 3 letters and a space
-- take 4 bytes of text and 8 of `tsvector`), and a longer one fails the
-- statement: so only the first 500,000 bytes of a text are indexed
-- (SQLite indexes it all). Positions stop counting at 16,383 and at 256
-- per word, so a phrase far into a long text may not match as a phrase.
--
-- Queries are built by the program (`crates/podlog-store/src/pg/search.rs`)
-- from podlog's FTS5-style syntax into a `tsquery`, bound as a parameter.

-- A JSON path of the SQLite form the payload references use (`$.output`,
-- `$.item."odd key"[2]`) as a PostgreSQL path array.
CREATE FUNCTION search_json_path(path text) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT coalesce(array_agg(coalesce(m[1], m[2], m[3]) ORDER BY n), '{}')
    FROM regexp_matches(path, '\.([A-Za-z0-9_]+)|\."([^"]*)"|\[([0-9]+)\]', 'g')
         WITH ORDINALITY AS t (m, n)
$$;

-- The searchable text of an entry (NULL for a kind that is not searched),
-- with its payloads put back. The body is read as `jsonb`, which cannot
-- hold the character U+0000: its escapes become spaces first (only when
-- present, and only where the backslash is not itself escaped).
CREATE FUNCTION search_text(kind text, body json, refs json) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    raw text;
    doc jsonb;
    ref record;
BEGIN
    IF kind NOT IN ('user_input', 'assistant_item', 'tool_result', 'system_item') THEN
        RETURN NULL;
    END IF;
    raw := body::text;
    IF strpos(raw, '\u0000') > 0 THEN
        LOOP
            EXIT WHEN raw !~ '(^|[^\\])(\\\\)*\\u0000';
            raw := regexp_replace(raw, '((^|[^\\])(\\\\)*)\\u0000', '\1 ', 'g');
        END LOOP;
    END IF;
    doc := raw::jsonb;
    IF refs IS NOT NULL THEN
        FOR ref IN
            SELECT r ->> 'path' AS path, p.text
            FROM json_array_elements(refs) AS r
            JOIN payloads AS p ON p.hash = r ->> 'hash'
        LOOP
            doc := jsonb_set(doc, search_json_path(ref.path), to_jsonb(ref.text), false);
        END LOOP;
    END IF;
    RETURN CASE kind
        WHEN 'user_input' THEN doc ->> 'text'
        WHEN 'tool_result' THEN doc ->> 'output'
        WHEN 'assistant_item' THEN
            CASE doc #>> '{item,kind}'
                -- The tool's name, then its arguments with the escapes of
                -- line breaks, tabs and quotes undone, as in SQLite.
                WHEN 'tool_call' THEN
                    (doc #>> '{item,name}') || E'\n'
                    || replace(replace(replace(
                         coalesce(doc #>> '{item,arguments}', ''),
                         '\n', E'\n'), '\t', E'\t'), '\"', '"')
                ELSE doc #>> '{item,text}'
            END
        WHEN 'system_item' THEN
            coalesce(doc #>> '{item,message}', '') || E'\n'
            || coalesce(doc #>> '{item,body}', '')
    END;
END
$$;

-- The words of a text: ASCII punctuation as space, at most the first
-- 500,000 bytes (cut at a character), 'simple' configuration.
CREATE FUNCTION search_words(text text) RETURNS tsvector
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    cut text;
    n integer := 500000;
BEGIN
    IF text IS NULL THEN
        RETURN ''::tsvector;
    END IF;
    IF octet_length(text) > 500000 THEN
        -- Each step drops at least the excess in bytes (a character is
        -- one byte or more), so the second prefix fits.
        LOOP
            cut := left(text, n);
            EXIT WHEN octet_length(cut) <= 500000;
            n := n - (octet_length(cut) - 500000);
        END LOOP;
        text := cut;
    END IF;
    -- The four ranges are ASCII's punctuation. (A regular expression:
    -- translate() with 32 characters costs five times as much.)
    RETURN to_tsvector('simple'::regconfig,
        regexp_replace(text, '[!-/:-@[-`{-~]+', ' ', 'g'));
END
$$;

CREATE TABLE search (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id text   COLLATE "C" NOT NULL,
    seq        bigint NOT NULL,
    ts         bigint NOT NULL,
    kind       text   NOT NULL,
    words      tsvector NOT NULL,
    UNIQUE (session_id, seq)
);

CREATE INDEX search_by_words ON search USING gin (words) WITH (fastupdate = on);

INSERT INTO search (session_id, seq, ts, kind, words)
SELECT session_id, seq, ts, kind, search_words(search_text(kind, body, payloads))
FROM entries
WHERE kind IN ('user_input', 'assistant_item', 'tool_result', 'system_item')
ORDER BY ts, session_id, seq;

-- Statistics of the words from the start (autovacuum keeps them later):
-- without them the planner guesses every word common and walks the ids
-- newest first, which for a rare word reads the whole table.
ANALYZE search;

-- The trigger functions keep the search_path they were created with (the
-- store's schema), so a delete run from a session with another
-- search_path (a DBA's psql) still finds `search` and `payloads`.
CREATE FUNCTION search_insert() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO search (session_id, seq, ts, kind, words)
    VALUES (NEW.session_id, NEW.seq, NEW.ts, NEW.kind,
            search_words(search_text(NEW.kind, NEW.body, NEW.payloads)));
    RETURN NULL;
END
$$;

CREATE FUNCTION search_delete() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM search WHERE session_id = OLD.session_id AND seq = OLD.seq;
    RETURN NULL;
END
$$;

-- AFTER the row, so the payloads the append inserts in the same statement
-- are visible to `search_text`.
CREATE TRIGGER search_insert AFTER INSERT ON entries
FOR EACH ROW WHEN (NEW.kind IN ('user_input', 'assistant_item', 'tool_result', 'system_item'))
EXECUTE FUNCTION search_insert();

CREATE TRIGGER search_delete AFTER DELETE ON entries
FOR EACH ROW WHEN (OLD.kind IN ('user_input', 'assistant_item', 'tool_result', 'system_item'))
EXECUTE FUNCTION search_delete();

-- podlog never updates an entry row; these keep the index true if anything
-- else does (name order: the old row goes before the new one comes).
CREATE TRIGGER search_update_1_old AFTER UPDATE ON entries
FOR EACH ROW EXECUTE FUNCTION search_delete();

CREATE TRIGGER search_update_2_new AFTER UPDATE ON entries
FOR EACH ROW WHEN (NEW.kind IN ('user_input', 'assistant_item', 'tool_result', 'system_item'))
EXECUTE FUNCTION search_insert();
