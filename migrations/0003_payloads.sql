-- podlog schema version 3: large strings out of line, each stored once.
--
-- A string of 8 KiB or more in an entry (a tool output, an attachment, a
-- long answer) is stored once in `payloads`, keyed by the BLAKE3 hash of its
-- text; the entry's `body` keeps its first 512 bytes as a preview, and
-- `entries.payloads` lists where each string was cut: a JSON array of
-- {"path": SQLite JSON path, "hash": payload hash, "size": bytes}. NULL
-- means the body is whole, as every row written before this version is:
-- upgrading rewrites no row, and both forms read the same.

CREATE TABLE payloads (
    hash TEXT    NOT NULL PRIMARY KEY CHECK (length(hash) = 64),
    size INTEGER NOT NULL CHECK (size >= 0),
    text TEXT    NOT NULL
) STRICT;

ALTER TABLE entries ADD COLUMN payloads TEXT
    CHECK (payloads IS NULL OR json_valid(payloads));

-- Every entry with its payloads put back: `body` is the whole entry, as
-- `podlog export` writes it. Filter on session_id and seq: the lookup uses
-- the primary key and inlines only the rows asked for.
CREATE VIEW entries_full AS
SELECT e.session_id,
       e.seq,
       e.ts,
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
FROM entries AS e;
