#![doc = include_str!("../README.md")]

mod backend;
pub mod backoffs;
mod error;
pub mod housekeeping;
pub mod limits;
pub mod otps;
pub mod outbox;
mod pool;
pub mod refresh_tokens;
pub mod replicas;
mod schema;
pub mod secrets;
pub mod two_factor;
pub mod users;
mod writer;

pub use backend::{AnyConnection, Backend};
pub use diesel::Connection;
pub use error::StoreError;
pub use pool::{Manager, PoolState, Store, StoreOptions};
pub use users::User;

/// Initialises OpenSSL, which libpq uses for TLS, without the cleanup handler OpenSSL
/// otherwise registers with `atexit`. With that handler, a process that exits while another
/// thread still talks to PostgreSQL over TLS (a pool worker, the Mailer polling the outbox)
/// can crash in OpenSSL's freed state at exit (diesel-rs/diesel#3441, sfackler/r2d2#137): the
/// test suite saw it as a SIGSEGV after a passing test, about once in 150 PostgreSQL tests.
/// It must run before libpq's first connection, because the first initialisation decides;
/// every PostgreSQL connection of the store calls it, and so must anything else in the
/// process that connects to PostgreSQL earlier (the test harness's admin connection).
pub fn prepare_postgres_client() {
    openssl_sys::init();
}
