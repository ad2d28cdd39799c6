DROP TABLE instance_secrets;
DROP TABLE outbox;
DROP TABLE otps;
DROP TABLE rate_limits;
