DROP INDEX backoffs_last_failure;
ALTER TABLE backoffs DROP COLUMN last_failure_ms;
