-- podlog schema version 2: views for the session lineage and for errors.
-- Views only: upgrading from version 1 touches no row.

-- Every session with its place in the fork/compaction tree: depth (0 for a
-- session started afresh), root, the path from the root, and an indented
-- `tree` column that reads as a tree when ordered by `path`.
CREATE VIEW lineage AS
WITH RECURSIVE tree (id, parent_id, parent_seq, origin, depth, root, path) AS (
    SELECT id, parent_id, parent_seq, origin, 0, id,
           printf('%020d/%s', created_at, id)
    FROM sessions
    WHERE parent_id IS NULL
    UNION ALL
    SELECT s.id, s.parent_id, s.parent_seq, s.origin, t.depth + 1, t.root,
           t.path || '|' || printf('%020d/%s', s.created_at, s.id)
    FROM sessions AS s
    JOIN tree AS t ON s.parent_id = t.id
)
SELECT tree.id,
       tree.parent_id,
       tree.parent_seq,
       tree.origin,
       tree.depth,
       tree.root,
       tree.path,
       substr('                                                            ', 1, 2 * min(tree.depth, 30))
         || tree.id
         || CASE WHEN tree.parent_id IS NULL THEN ''
                 ELSE ' (' || tree.origin || ' at ' || tree.parent_seq || ')' END AS tree,
       sessions.entry_count,
       sessions.title
FROM tree
JOIN sessions ON sessions.id = tree.id;

-- Everything that went wrong: runs that ended in an error and tool calls
-- whose result is an error.
CREATE VIEW errors AS
SELECT session_id,
       seq,
       strftime('%Y-%m-%dT%H:%M:%fZ', ts / 1000.0, 'unixepoch') AS time,
       kind,
       CASE kind
         WHEN 'run_errored' THEN json_extract(body, '$.kind')
         ELSE 'tool'
       END AS error_kind,
       substr(CASE kind
         WHEN 'run_errored' THEN json_extract(body, '$.message')
         ELSE json_extract(body, '$.call_id') || ': ' || json_extract(body, '$.output')
       END, 1, 200) AS message
FROM entries
WHERE kind = 'run_errored'
   OR (kind = 'tool_result' AND json_extract(body, '$.is_error'));
