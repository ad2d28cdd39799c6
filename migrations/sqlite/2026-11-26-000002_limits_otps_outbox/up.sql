-- Rate limits: the authority for every throttle. One row per (limit, keyed hash of the key);
-- taking a limit is one conditional upsert on this row.
CREATE TABLE rate_limits (
    limit_name      TEXT NOT NULL,
    key_hash        TEXT NOT NULL,
    window_start_ms BIGINT NOT NULL,
    count           INTEGER NOT NULL,
    PRIMARY KEY (limit_name, key_hash)
);

-- One-time codes: only a keyed hash is stored. One live code per (user, purpose).
CREATE TABLE otps (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose       TEXT NOT NULL,
    code_hash     TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    expires_at_ms BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    origin        TEXT NOT NULL,
    language      TEXT NOT NULL,
    target        TEXT,
    UNIQUE (user_id, purpose)
);

-- The transactional outbox: a mail is written here in the same transaction as the state
-- that caused it, and the delivery loop sends it. `payload` is encrypted and cleared once sent.
CREATE TABLE outbox (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    origin             TEXT NOT NULL,
    kind               TEXT NOT NULL,
    backend            TEXT NOT NULL,
    recipient_masked   TEXT NOT NULL,
    payload            TEXT,
    status             TEXT NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms BIGINT NOT NULL,
    lease_until_ms     BIGINT,
    leased_by          TEXT,
    last_error         TEXT,
    created_at_ms      BIGINT NOT NULL,
    sent_at_ms         BIGINT
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at_ms);

-- Keys generated on first start when the configuration gives none (development only).
CREATE TABLE instance_secrets (
    name          TEXT PRIMARY KEY NOT NULL,
    value         TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
