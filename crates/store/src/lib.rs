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

pub use backend::{AnyConnection, Backend};
pub use diesel::Connection;
pub use error::StoreError;
pub use pool::{Manager, PoolState, Store, StoreOptions};
pub use users::User;
