-- podlog schema version 8: the search index is written in batches.
--
-- Every transaction that touches an FTS5 table writes a new index segment
-- and rewrites the index's structure record when it commits, whatever the
-- text: next to a cheap durable commit that is a fifth of an append. From
-- this version the newest entries wait to be indexed, without a write of
-- their own: `search_indexed.upto` is a rowid of `entries`, and every
-- searchable entry at or below it is in the index, every one above it is
-- pending. The append whose rowid reaches `upto + 64` indexes the pending
-- entries (at most 64) in its transaction and moves `upto` to the newest
-- rowid, so FTS5's fixed cost, and the pages it writes, come once per 64
-- entries, and an append writes no page for the index otherwise. (A row
-- inserted at or below `upto`, which only an explicit rowid or the reuse of
-- a deleted top rowid can give, is indexed at once.)
--
-- Searches stay exact: a search reads the index with MATCH and the pending
-- entries (`search_pending_text`, at most 63 rows) through a temporary
-- FTS5 table with the same tokenizer, in one read transaction (see
-- `crates/podlog-store/src/search.rs` and query 13 of docs/inspect.md).
--
-- `search_source`, the index's external content, is now the searchable
-- entries at or below `upto`, so the index and its content agree at every
-- commit (FTS5's integrity check and `podlog verify` compare them) and a
-- 'rebuild' indexes exactly them. The text of every searchable entry is the
-- view `search_text` (what `search_source` was in version 5).
--
-- `INSERT INTO search_flush (flush) VALUES (1)` indexes every pending
-- entry now. A full VACUUM may renumber rowids: after one, set `upto` to
-- the newest rowid and rebuild (`Store::rebuild_search_index`).
--
-- SQLite 3.40 features only.

DROP TRIGGER search_after_insert;
DROP TRIGGER search_before_delete;
DROP TRIGGER search_before_update;
DROP TRIGGER search_after_update;
DROP VIEW search_source;

-- One row: entries at or below `upto` (a rowid) are indexed, the rest
-- pending. Every row of a database from version 7 is indexed.
CREATE TABLE search_indexed (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    upto INTEGER NOT NULL
) STRICT;
INSERT INTO search_indexed (id, upto)
VALUES (1, coalesce((SELECT max(rowid) FROM entries), 0));

-- Each searchable entry's text, as version 5 defined it. FTS5 reads its
-- content with statements that may not use virtual tables, so payloads are
-- put back with a recursive CTE and json_set, not with json_each.
CREATE VIEW search_text AS
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

-- The index's content: the searchable entries at or below `upto`.
CREATE VIEW search_source AS
SELECT entry_rowid, text
FROM search_text
WHERE entry_rowid <= (SELECT upto FROM search_indexed);

-- The searchable entries that are pending, with their text: a range of
-- rowids of `entries`, never a scan.
CREATE VIEW search_pending_text AS
SELECT entry_rowid, text
FROM search_text
WHERE entry_rowid > (SELECT upto FROM search_indexed);

-- Indexes every pending entry now.
CREATE VIEW search_flush (flush) AS SELECT NULL WHERE 0;

CREATE TRIGGER search_flush_pending INSTEAD OF INSERT ON search_flush BEGIN
    INSERT INTO search (rowid, text)
    SELECT entry_rowid, text FROM search_pending_text;
    UPDATE search_indexed
    SET upto = coalesce((SELECT max(rowid) FROM entries), upto);
END;

-- Kept with the rows, in their transaction. An entry above `upto` waits
-- for its batch; the append that reaches `upto + 64` indexes the batch. One
-- trigger, both conditions read before either acts: after the batch
-- `upto` is the new row's own rowid, and the row must not be indexed twice.
CREATE TRIGGER search_after_insert AFTER INSERT ON entries
WHEN new.rowid <= (SELECT upto FROM search_indexed)
  OR new.rowid >= (SELECT upto FROM search_indexed) + 64 BEGIN
    INSERT INTO search (rowid, text)
    SELECT entry_rowid, text FROM search_text
    WHERE entry_rowid = new.rowid AND new.rowid <= (SELECT upto FROM search_indexed);
    INSERT INTO search_flush (flush)
    SELECT 1 WHERE new.rowid >= (SELECT upto FROM search_indexed) + 64;
END;

-- An indexed entry leaves the index, BEFORE the row goes, while the view
-- can still compute the text that was indexed (FTS5 needs it to remove
-- the entry's terms); a pending one has nothing to undo.
CREATE TRIGGER search_before_delete BEFORE DELETE ON entries
WHEN old.rowid <= (SELECT upto FROM search_indexed) BEGIN
    INSERT INTO search (search, rowid, text)
    SELECT 'delete', entry_rowid, text FROM search_text WHERE entry_rowid = old.rowid;
END;

-- podlog never updates an entry row; these keep the index true if anything
-- else does.
CREATE TRIGGER search_before_update BEFORE UPDATE ON entries
WHEN old.rowid <= (SELECT upto FROM search_indexed) BEGIN
    INSERT INTO search (search, rowid, text)
    SELECT 'delete', entry_rowid, text FROM search_text WHERE entry_rowid = old.rowid;
END;

CREATE TRIGGER search_after_update AFTER UPDATE ON entries
WHEN new.rowid <= (SELECT upto FROM search_indexed) BEGIN
    INSERT INTO search (rowid, text)
    SELECT entry_rowid, text FROM search_text WHERE entry_rowid = new.rowid;
END;
