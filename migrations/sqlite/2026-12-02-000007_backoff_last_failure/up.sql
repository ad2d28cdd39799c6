-- When a backoff row last counted a failure, so housekeeping can forget streaks a day after
-- their last failure (the table otherwise only grows).
ALTER TABLE backoffs ADD COLUMN last_failure_ms BIGINT NOT NULL DEFAULT 0;
CREATE INDEX backoffs_last_failure ON backoffs (last_failure_ms);
