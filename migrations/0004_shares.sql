-- podlog schema version 4: read-only share links.
--
-- A share lets whoever holds its token read one session over HTTP. The
-- token itself is never stored: `token_hash` is the BLAKE3 hash of the
-- token's text (64 lowercase hexadecimal digits), looked up by its index and
-- then compared in constant time. Times are milliseconds since the Unix
-- epoch; `expires_at` NULL never expires; `revoked_at` is set once, by
-- `podlog share --revoke`, and the row is kept so a listing says what
-- happened to the link.

CREATE TABLE shares (
    id         TEXT    NOT NULL PRIMARY KEY,
    session_id TEXT    NOT NULL REFERENCES sessions (id),
    token_hash TEXT    NOT NULL UNIQUE CHECK (length(token_hash) = 64),
    created_at INTEGER NOT NULL,
    expires_at INTEGER CHECK (expires_at IS NULL OR expires_at >= created_at),
    revoked_at INTEGER
) STRICT;

CREATE INDEX shares_by_session ON shares (session_id);
