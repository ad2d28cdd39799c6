-- The origin (brand) and language a user last asked mails in, so notices that no request
-- names them for (a password change, a second factor turned off) still reach the user in
-- that brand and language.
ALTER TABLE users ADD COLUMN last_origin TEXT;
ALTER TABLE users ADD COLUMN last_language TEXT;
