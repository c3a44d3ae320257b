-- podlog PostgreSQL schema version 5: an entry's words cost a third as
-- much to compute.
--
-- Why: `search_words` turned ASCII punctuation into spaces with
-- `regexp_replace`, about 0.09 ms for each KiB of text, as much as
-- `to_tsvector` itself; with the index caught up after each commit
-- (0003_search_deferred.sql) that is CPU the appends of other sessions
-- wait for on a busy server (docs/performance.md, PG2). One `replace` per
-- punctuation character (32 of them, each a plain substring scan in C)
-- costs about a quarter of the regular expression, measured on tool output.
--
-- Same words: a character becomes a space either way; the regular
-- expression made a run of them one space, and `to_tsvector` reads any run
-- of spaces as one separator, so every lexeme and position is the same and
-- the index built by version 2 stays valid. (`translate()` would be the
-- obvious call, but it walks the text a character at a time and costs five
-- times the regular expression.)

CREATE OR REPLACE FUNCTION search_words(text text) RETURNS tsvector
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    cut text;
    n integer := 500000;
BEGIN
    IF text IS NULL THEN
        RETURN ''::tsvector;
    END IF;
    cut := text;
    IF octet_length(text) > 500000 THEN
        -- Each step drops at least the excess in bytes (a character is
        -- one byte or more), so the second prefix fits.
        LOOP
            cut := left(text, n);
            EXIT WHEN octet_length(cut) <= 500000;
            n := n - (octet_length(cut) - 500000);
        END LOOP;
    END IF;
    -- The 32 characters of ASCII punctuation, from '!' to '~' (the
    -- backslash as chr(92), whatever standard_conforming_strings says).
    RETURN to_tsvector('simple'::regconfig,
        replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(cut, '!', ' '), '"', ' '), '#', ' '), '$', ' '), '%', ' '), '&', ' '), '''', ' '), '(', ' '), ')', ' '), '*', ' '), '+', ' '), ',', ' '), '-', ' '), '.', ' '), '/', ' '), ':', ' '), ';', ' '), '<', ' '), '=', ' '), '>', ' '), '?', ' '), '@', ' '), '[', ' '), chr(92), ' '), ']', ' '), '^', ' '), '_', ' '), '`', ' '), '{', ' '), '|', ' '), '}', ' '), '~', ' '));
END
$$;
