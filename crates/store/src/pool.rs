//! The connection pool and the bridge from async callers to synchronous Diesel.

use std::time::Duration;

use authd_settings::DatabaseUrl;
use diesel::connection::SimpleConnection;
use diesel::r2d2::{self, ManageConnection, Pool, PooledConnection};

use crate::backend::{AnyConnection, Backend, READER_CACHE_KIB, WRITER_CACHE_KIB};
use crate::writer::{Readers, Writers, MAX_BATCH};
use crate::StoreError;

#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub url: DatabaseUrl,
    /// Connections for reads (and for synchronous callers); the writers have their own.
    pub pool_max_size: u32,
    /// PostgreSQL: writer threads, each with its own connection, committing batches side by
    /// side. SQLite always has one.
    pub writers: u32,
    pub connect_timeout: Duration,
    pub sqlite_busy_timeout: Duration,
    /// Idle connections the pool opens ahead of need, in a background thread. Kept at 0: a
    /// connection being opened by that thread while the process exits can crash inside
    /// libpq (seen as a segfault after a failed start).
    pub min_idle: u32,
}

impl StoreOptions {
    /// For one-shot commands (CLI): no background connections.
    pub fn for_command(s: &authd_settings::Settings) -> Self {
        Self {
            min_idle: 0,
            pool_max_size: 1,
            writers: 1,
            ..Self::from_settings(s)
        }
    }

    pub fn from_settings(s: &authd_settings::Settings) -> Self {
        Self {
            url: s.database_url(),
            pool_max_size: s.database.pool_max_size,
            writers: s.database.writers,
            connect_timeout: Duration::from_secs(s.database.connect_timeout_secs),
            sqlite_busy_timeout: Duration::from_millis(s.database.sqlite_busy_timeout_ms),
            min_idle: 0,
        }
    }
}

#[derive(Debug)]
/// Opens connections for the pool (SQLite pragmas applied on each new connection).
pub struct Manager {
    url: DatabaseUrl,
    busy_timeout: Duration,
    /// SQLite page cache per connection.
    cache_kib: u32,
}

impl Manager {
    #[cfg(test)]
    pub(crate) fn sqlite(path: &std::path::Path, busy_timeout: Duration) -> Self {
        Self {
            url: DatabaseUrl::Sqlite(path.to_owned()),
            busy_timeout,
            cache_kib: crate::backend::WRITER_CACHE_KIB,
        }
    }
}

impl ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, r2d2::Error> {
        match &self.url {
            DatabaseUrl::Sqlite(path) => {
                AnyConnection::open_sqlite(path, self.busy_timeout, self.cache_kib)
            }
            DatabaseUrl::Postgres(url) => AnyConnection::open_postgres(url),
        }
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        conn.broken()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct PoolState {
    pub connections: u32,
    pub idle: u32,
    /// The most connections the pool opens (`database.pool_max_size`).
    pub max: u32,
}

/// Cheap to clone; every clone shares one pool and one set of writers.
#[derive(Clone)]
pub struct Store {
    /// Connections for [`Store::read`] and synchronous callers.
    pool: Pool<Manager>,
    /// The threads that run [`Store::read`] jobs, one per pooled connection.
    readers: Readers,
    connect_timeout: Duration,
    backend: Backend,
    /// The group-committing writers behind [`Store::run`] (see `writer.rs`). On SQLite there
    /// is one, so this process never competes with itself for the write lock (a writer that
    /// finds it taken sleeps in steps of up to 100 ms); other processes on the same file
    /// still meet the busy timeout.
    writers: Writers,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Builds the pool without waiting for the database, so that `serve` can start and report
    /// "not ready" while the database is away. Use [`Store::check`] for a fail-fast start.
    pub fn open(opts: &StoreOptions) -> Self {
        let backend = match &opts.url {
            DatabaseUrl::Sqlite(path) => {
                if let Err(e) = AnyConnection::init_sqlite(path, opts.sqlite_busy_timeout) {
                    tracing::warn!(cause = %e, "cannot switch the SQLite file to WAL mode");
                }
                Backend::Sqlite
            }
            DatabaseUrl::Postgres(_) => Backend::Postgres,
        };
        let manager = |cache_kib| Manager {
            url: opts.url.clone(),
            busy_timeout: opts.sqlite_busy_timeout,
            cache_kib,
        };
        let pool = Pool::builder()
            .max_size(opts.pool_max_size)
            .min_idle(Some(opts.min_idle))
            .connection_timeout(opts.connect_timeout)
            .test_on_check_out(false)
            .build_unchecked(manager(READER_CACHE_KIB));
        let writers = match backend {
            Backend::Sqlite => 1,
            Backend::Postgres => opts.writers.max(1),
        };
        // Each writer thread holds one connection of this pool for as long as it works; the
        // pool only opens them (with the connect timeout) and replaces broken ones.
        let writer_pool = Pool::builder()
            .max_size(writers)
            .min_idle(Some(0))
            .connection_timeout(opts.connect_timeout)
            .test_on_check_out(false)
            .build_unchecked(manager(WRITER_CACHE_KIB));
        Self {
            readers: Readers::start(pool.clone(), opts.pool_max_size),
            pool,
            connect_timeout: opts.connect_timeout,
            backend,
            writers: Writers::start(writer_pool, writers, MAX_BATCH),
        }
    }

    /// Connections open and idle right now, for the pool gauge.
    pub fn pool_state(&self) -> PoolState {
        let st = self.pool.state();
        PoolState {
            connections: st.connections,
            idle: st.idle_connections,
            max: self.pool.max_size(),
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A connection for synchronous callers (CLI commands, start-up). Async code uses `run`.
    pub fn conn(&self) -> Result<PooledConnection<Manager>, StoreError> {
        Ok(self.pool.get()?)
    }

    /// Runs `f` on a writer, in a transaction it shares with the other jobs queued at the
    /// same time, each in its own savepoint (group commit, see `writer.rs`): `f`'s writes are
    /// all-or-nothing, and the answer comes after they committed. Every write issued while
    /// serving requests goes through here; [`Store::read`] is for work that only reads.
    ///
    /// `f` may run more than once: when PostgreSQL aborts it for a deadlock or a
    /// serialization failure, it is rolled back and runs again in a later transaction (at
    /// most three runs, see `writer.rs`). Each run starts from a clean slate and must only
    /// issue its statements again; clone what it hands over rather than move it out.
    ///
    /// `f` must not wait for the store itself: it runs on the writer thread.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut AnyConnection) -> Result<T, StoreError> + Send + 'static,
    {
        self.writers.submit(f).await
    }

    /// Jobs waiting for a writer right now.
    pub fn queued_writes(&self) -> usize {
        self.writers.queued()
    }

    /// Like [`Store::run`], for work that only reads: it does not queue behind writers
    /// (SQLite in WAL mode lets readers run beside the writer). Answered
    /// [`StoreError::Busy`] when no reader thread starts it within the connect timeout (it
    /// then never runs) or at once when the readers' queue is full; it runs exactly once.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, StoreError> + Send + 'static,
    {
        self.readers.submit(f, self.connect_timeout).await
    }

    /// Connects, then applies pending migrations.
    pub fn migrate(&self) -> Result<Vec<String>, StoreError> {
        self.conn()?.run_migrations()
    }

    /// Ready means: the database answers and no migration is pending.
    pub async fn ready(&self) -> Result<bool, StoreError> {
        self.read(|conn| {
            conn.batch_execute("SELECT 1")?;
            Ok(!conn.has_pending_migrations()?)
        })
        .await
    }
}
