-- podlog PostgreSQL schema version 8: a tool call's arguments are searched
-- as they were written, as on SQLite.
--
-- Why: `search_text` (0002_search.sql) read a tool call's arguments from
-- the entry as `jsonb`, which orders an object's members by length and
-- writes a space after each colon and comma. SQLite reads them as they were
-- written (`json_extract`: the members in their order, no space added). So
-- a phrase across two members (`"rs n 1"` in `{"path":"src/a.rs","n":1}`)
-- matched on SQLite only, and snippets read differently.
--
-- What changes:
--   * When the arguments are an object or an array, their text is taken
--     from the entry's `json`, which keeps it as written; a string stored
--     out of line among them (a payload, 0001_initial.sql) replaces its
--     preview in that text, each in document order, written as `jsonb`
--     writes a string (the same escapes as the JSON podlog writes). Other
--     arguments (a string, a number) read as before.
--   * The search rows of existing tool calls are written again with the
--     new text, in this migration's transaction (one pass over the
--     `assistant_item` entries).

CREATE OR REPLACE FUNCTION search_text(kind text, body json, refs json) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    raw text;
    lean jsonb;
    doc jsonb;
    ref record;
    args text;
    preview text;
    whole text;
    at integer := 1;
    pos integer;
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
    lean := raw::jsonb;
    doc := lean;
    IF refs IS NOT NULL THEN
        FOR ref IN
            SELECT r ->> 'path' AS path, p.text
            FROM json_array_elements(refs) AS r
            JOIN payloads AS p ON p.hash = r ->> 'hash'
        LOOP
            doc := jsonb_set(doc, search_json_path(ref.path), to_jsonb(ref.text), false);
        END LOOP;
    END IF;
    IF kind = 'assistant_item' AND doc #>> '{item,kind}' = 'tool_call' THEN
        IF jsonb_typeof(doc #> '{item,arguments}') IN ('object', 'array') THEN
            args := raw::json #>> '{item,arguments}';
            IF refs IS NOT NULL THEN
                FOR ref IN
                    SELECT r.value ->> 'path' AS path, p.text
                    FROM json_array_elements(refs) WITH ORDINALITY AS r (value, n)
                    JOIN payloads AS p ON p.hash = r.value ->> 'hash'
                    WHERE r.value ->> 'path' LIKE '$.item.arguments%'
                    ORDER BY r.n
                LOOP
                    preview := (lean #> search_json_path(ref.path))::text;
                    whole := to_jsonb(ref.text)::text;
                    pos := strpos(substr(args, at), preview);
                    IF pos > 0 THEN
                        pos := at + pos - 1;
                        args := overlay(args PLACING whole FROM pos FOR length(preview));
                        at := pos + length(whole);
                    END IF;
                END LOOP;
            END IF;
        ELSE
            args := doc #>> '{item,arguments}';
        END IF;
        -- The tool's name, then its arguments with the escapes of line
        -- breaks, tabs and quotes undone, as in SQLite.
        RETURN (doc #>> '{item,name}') || E'\n'
            || replace(replace(replace(coalesce(args, ''),
                 '\n', E'\n'), '\t', E'\t'), '\"', '"');
    END IF;
    RETURN CASE kind
        WHEN 'user_input' THEN doc ->> 'text'
        WHEN 'tool_result' THEN doc ->> 'output'
        WHEN 'assistant_item' THEN doc #>> '{item,text}'
        WHEN 'system_item' THEN
            coalesce(doc #>> '{item,message}', '') || E'\n'
            || coalesce(doc #>> '{item,body}', '')
    END;
END
$$;

UPDATE search AS s
SET words = search_words(search_text(e.kind, e.body, e.payloads))
FROM entries AS e
WHERE e.session_id = s.session_id AND e.seq = s.seq
  AND e.kind = 'assistant_item' AND e.body -> 'item' ->> 'kind' = 'tool_call';
