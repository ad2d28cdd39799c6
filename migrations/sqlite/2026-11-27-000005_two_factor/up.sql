-- Second factors. A method is on while its enabled_at_ms is set; two-factor authentication is
-- on while any method is.

-- Email OTP: the confirmed address codes are mailed to, and whether a setup awaits its code
-- (the address being confirmed travels with that code, in otps.target).
CREATE TABLE email_otp_methods (
    user_id       BIGINT PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email         TEXT,
    setup_pending BOOLEAN NOT NULL DEFAULT FALSE,
    enabled_at_ms BIGINT
);

-- TOTP: secrets encrypted with the configured TOTP key (AEAD, bound to the user). A setup
-- writes pending_secret_enc; enabling moves it to secret_enc. last_step is the last accepted
-- time step: codes for it or an earlier step are refused (no replay).
CREATE TABLE totp_secrets (
    user_id            BIGINT PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    secret_enc         TEXT,
    pending_secret_enc TEXT,
    enabled_at_ms      BIGINT,
    last_step          BIGINT
);

-- Recovery codes: keyed hashes only; a code is used up by a conditional update.
CREATE TABLE recovery_codes (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash     TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    used_at_ms    BIGINT,
    UNIQUE (user_id, code_hash)
);
