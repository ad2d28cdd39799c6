DROP TABLE recovery_codes;
DROP TABLE totp_secrets;
DROP TABLE email_otp_methods;
