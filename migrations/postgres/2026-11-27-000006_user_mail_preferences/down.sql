ALTER TABLE users DROP COLUMN last_language;
ALTER TABLE users DROP COLUMN last_origin;
