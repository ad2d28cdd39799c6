#![doc = include_str!("../README.md")]

mod backend;
mod error;
mod pool;
mod schema;
pub mod users;

pub use backend::{AnyConnection, Backend};
pub use error::StoreError;
pub use pool::{Manager, PoolState, Store, StoreOptions};
pub use users::User;
