-- Live authd processes (heartbeats), so per-process budgets can be shared out: with N live
-- replicas each enforces 1/N of a per-IP budget, and the total stays what is configured.
CREATE TABLE replicas (
    id           TEXT PRIMARY KEY NOT NULL,
    last_seen_ms BIGINT NOT NULL
);
