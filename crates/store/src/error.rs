use std::sync::Arc;

use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// Everything that can go wrong below the HTTP layer's feet. Callers map the meaningful
/// variants (`Duplicate`, `NotFound`) and treat the rest as internal.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a row with the same unique key already exists")]
    Duplicate,
    #[error("no such row")]
    NotFound,
    #[error("database connection unavailable")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("database query failed")]
    Query(#[source] DieselError),
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error("database task did not finish")]
    Task(#[from] tokio::task::JoinError),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// The job itself succeeded, but the batch it was committed with did not commit (or the
    /// writer had no connection): its writes are not stored.
    #[error("the write batch did not commit")]
    Batch(#[source] Arc<StoreError>),
    #[error("database job panicked")]
    Panicked,
    #[error("the store's writer has stopped")]
    WriterGone,
    /// No pooled connection came free within the connect timeout.
    #[error("no database connection came free in time")]
    Busy,
}

impl StoreError {
    /// The database is away (no connection could be had): the client may retry.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Pool(_) | Self::Busy => true,
            Self::Batch(inner) => inner.is_unavailable(),
            _ => false,
        }
    }
}

impl From<DieselError> for StoreError {
    fn from(e: DieselError) -> Self {
        match e {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => Self::Duplicate,
            DieselError::NotFound => Self::NotFound,
            // A stored value that does not parse into its domain type (an address that is
            // none): the data is wrong, not the request that read it.
            DieselError::DeserializationError(e) => Self::Corrupt(e.to_string()),
            other => Self::Query(other),
        }
    }
}
