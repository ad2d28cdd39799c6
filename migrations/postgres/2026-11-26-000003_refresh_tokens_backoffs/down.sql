DROP TABLE backoffs;
DROP TABLE refresh_tokens;
