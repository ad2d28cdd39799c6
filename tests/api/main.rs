//! Black-box tests of the real server. Every test that touches the database runs once against
//! a fresh SQLite file and once against a fresh PostgreSQL database.

// Test bodies live in plain async fns that `both_dbs!` wraps, where clippy does not see a test.
#![allow(clippy::unwrap_used, reason = "unwrap is how a test fails")]

mod caching;
mod cli;
mod config;
mod config_keys;
mod cookie_mode;
mod cors;
mod crash;
mod dev_mail;
mod email_transfer;
mod ensure_services;
mod errors;
mod guessing;
mod healthcheck;
mod ip_budgets;
mod mail_auth;
mod mail_backends;
mod metrics;
mod notices;
mod openapi;
mod operations;
mod ops;
mod outbox;
mod password_policy;
mod password_reset;
mod production;
mod replicas;
mod sealed_rows;
mod security_log;
mod shutdown;
mod store;
mod sudo;
mod template_reload;
mod templates;
mod tokens;
mod two_factor_backoff;
mod two_factor_email_otp;
mod two_factor_recovery;
mod two_factor_tokens;
mod two_factor_totp;
