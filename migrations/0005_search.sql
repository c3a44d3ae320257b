-- podlog schema version 5: full-text search over what was said and done.
--
-- `search` is an FTS5 index with external content: it stores only the
-- index, and reads the text back (for snippet() and highlight()) from the
-- view `search_source`, which computes each entry's searchable text from
-- its row and its payloads. Nothing is stored twice.
--
-- What is indexed, one text per entry:
--   user_input      the text the user typed
--   assistant_item  text and reasoning; for a tool call, its name and arguments
--   tool_result     the output
--   system_item     a notification's message and body
-- A string stored out of line is indexed whole, from `payloads`, never its
-- 512-byte preview. Other kinds (session_start, usage, turn ends, ...) are
-- not indexed.
--
-- The index is kept by triggers on `entries`, so it changes in the same
-- transaction as the rows: a search is never stale and never ahead of the
-- log, and every writer (append, import, fork, compaction) is covered.
-- Deleting entry rows (whole sessions, by retention) removes their index
-- rows in the same statement; the payloads they reference must still exist
-- when they are deleted, so delete entries before the payloads they name.
--
-- `content_rowid` is the rowid of `entries`, which has no INTEGER PRIMARY
-- KEY: a full VACUUM may renumber it. After any VACUUM, rebuild the index
-- (`INSERT INTO search (search) VALUES ('rebuild')`, or
-- `Store::rebuild_search_index`).
--
-- Rows already in the database are indexed by the program that migrates
-- (in chunks, in this migration's transaction), not by this file.
--
-- SQLite 3.40 features only: the stock `sqlite3` shell of Debian 12 opens
-- and queries this index.

-- FTS5 reads its content with statements that may not use virtual
-- tables, so this view puts payloads back the way `entries_full` does (a
-- recursive CTE and json_set), not with json_each.
CREATE VIEW search_source AS
SELECT entry_rowid,
       CASE kind
         WHEN 'user_input' THEN json_extract(body, '$.text')
         WHEN 'tool_result' THEN json_extract(body, '$.output')
         WHEN 'assistant_item' THEN
           CASE json_extract(body, '$.item.kind')
             -- The tool's name, then its arguments as JSON with the escapes
             -- of line breaks, tabs and quotes undone, so that words at the
             -- start of a line are words.
             WHEN 'tool_call' THEN
               json_extract(body, '$.item.name') || char(10)
               || replace(replace(replace(
                    coalesce(json_extract(body, '$.item.arguments'), ''),
                    '\n', char(10)), '\t', char(9)), '\"', '"')
             ELSE json_extract(body, '$.item.text')
           END
         WHEN 'system_item' THEN
           coalesce(json_extract(body, '$.item.message'), '') || char(10)
           || coalesce(json_extract(body, '$.item.body'), '')
       END AS text
FROM (
  SELECT e.rowid AS entry_rowid,
         e.kind,
         CASE WHEN e.payloads IS NULL THEN e.body ELSE (
           WITH RECURSIVE step (n, body) AS (
             SELECT 0, e.body
             UNION ALL
             SELECT step.n + 1,
                    json_set(step.body,
                             json_extract(e.payloads, '$[' || step.n || '].path'),
                             (SELECT p.text FROM payloads AS p
                              WHERE p.hash = json_extract(e.payloads, '$[' || step.n || '].hash')))
             FROM step
             WHERE step.n < json_array_length(e.payloads)
           )
           SELECT body FROM step ORDER BY n DESC LIMIT 1)
         END AS body
  FROM entries AS e
  WHERE e.kind IN ('user_input', 'assistant_item', 'tool_result', 'system_item')
);

CREATE VIRTUAL TABLE search USING fts5 (
    text,
    content = 'search_source',
    content_rowid = 'entry_rowid',
    tokenize = 'unicode61 remove_diacritics 2'
);

-- Kept with the rows, in their transaction. An entry of a kind the view
-- leaves out selects no row, so adds and removes nothing. The delete runs
-- BEFORE the row goes, while the view can still compute the text that was
-- indexed (FTS5 needs it to remove the entry's terms).
CREATE TRIGGER search_after_insert AFTER INSERT ON entries BEGIN
    INSERT INTO search (rowid, text)
    SELECT entry_rowid, text FROM search_source WHERE entry_rowid = new.rowid;
END;

CREATE TRIGGER search_before_delete BEFORE DELETE ON entries BEGIN
    INSERT INTO search (search, rowid, text)
    SELECT 'delete', entry_rowid, text FROM search_source WHERE entry_rowid = old.rowid;
END;

-- podlog never updates an entry row; these keep the index true if anything
-- else does.
CREATE TRIGGER search_before_update BEFORE UPDATE ON entries BEGIN
    INSERT INTO search (search, rowid, text)
    SELECT 'delete', entry_rowid, text FROM search_source WHERE entry_rowid = old.rowid;
END;

CREATE TRIGGER search_after_update AFTER UPDATE ON entries BEGIN
    INSERT INTO search (rowid, text)
    SELECT entry_rowid, text FROM search_source WHERE entry_rowid = new.rowid;
END;
