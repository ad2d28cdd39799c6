-- Refresh tokens: only a SHA-256 of the 256-bit random token is stored. Tokens of one login
-- share a family; presenting a rotated (revoked) token revokes the whole family.
CREATE TABLE refresh_tokens (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash    TEXT NOT NULL UNIQUE,
    family_id     TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT
);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- Guessing backoffs: consecutive failures per (limit, keyed hash of the key) and the instant
-- before which the next attempt is refused.
CREATE TABLE backoffs (
    limit_name       TEXT NOT NULL,
    key_hash         TEXT NOT NULL,
    failures         INTEGER NOT NULL,
    blocked_until_ms BIGINT NOT NULL,
    PRIMARY KEY (limit_name, key_hash)
);
