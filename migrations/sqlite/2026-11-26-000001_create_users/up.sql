-- Accounts. `email` is stored normalised (lower case) by the application; the unique index on
-- lower(email) makes the database the final judge even if a caller forgets.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT NOT NULL CHECK (length(email) <= 256),
    password_hash TEXT,
    disabled      BOOLEAN NOT NULL DEFAULT 0,
    created_at    TIMESTAMP NOT NULL,
    updated_at    TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
