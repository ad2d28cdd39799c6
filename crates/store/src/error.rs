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

    /// PostgreSQL aborted a statement because it conflicted with another transaction: a
    /// deadlock (SQLSTATE 40P01) or a serialization failure (40001). The work itself was
    /// fine; run again in a later transaction it can succeed. See `writer.rs`.
    pub fn is_conflict(&self) -> bool {
        match self {
            Self::Query(e) => is_conflict(e),
            Self::Batch(inner) => inner.is_conflict(),
            _ => false,
        }
    }
}

/// Diesel maps SQLSTATE 40001 to `SerializationFailure`, but has no kind for 40P01 and does
/// not expose the SQLSTATE (`DatabaseErrorInformation` has no code): a deadlock arrives as
/// `Unknown`, and is recognised by PostgreSQL's message, "deadlock detected". That text is
/// translated when the server's `lc_messages` is not English; a deadlock is then not
/// recognised and its job answered with the error, as before.
pub(crate) fn is_conflict(e: &DieselError) -> bool {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        DieselError::DatabaseError(_, info) => info.message().starts_with("deadlock detected"),
        DieselError::RollbackErrorOnCommit { commit_error, .. } => is_conflict(commit_error),
        _ => false,
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
