//! The one place that knows which database is behind the connection: the `MultiConnection`
//! enum, connection set-up (SQLite pragmas), and the embedded migrations per backend.

use std::path::Path;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::StoreError;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// The advisory lock key that serialises migrations across processes ("authd" in ASCII).
const MIGRATION_LOCK: i64 = i64::from_be_bytes([0, 0, 0, b'a', b'u', b't', b'h', b'd']);

/// The page cache of a SQLite connection that only reads. In WAL mode a reader drops its
/// whole cache whenever another connection committed since its last read, so under a write
/// load a large reader cache buys nothing and only holds memory (8 readers x 16 MiB was most
/// of a 343 MB peak); the operating system's file cache serves the re-reads.
pub(crate) const READER_CACHE_KIB: u32 = 1024;
/// The page cache of the one SQLite writer, which no other connection of the process
/// invalidates: the hot pages of the tables it writes stay in it.
pub(crate) const WRITER_CACHE_KIB: u32 = 4096;

/// A connection to whichever database `database.url` names. Queries are written once against
/// this type.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

impl std::fmt::Debug for AnyConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Postgresql(_) => "AnyConnection::Postgresql",
            Self::Sqlite(_) => "AnyConnection::Sqlite",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl AnyConnection {
    pub fn backend(&self) -> Backend {
        match self {
            Self::Postgresql(_) => Backend::Postgres,
            Self::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Opens a SQLite file (creating its folder) in WAL mode with a busy timeout, so readers
    /// never block the writer and concurrent writers wait instead of failing. `cache_kib` is
    /// the connection's page cache (see [`READER_CACHE_KIB`], [`WRITER_CACHE_KIB`]).
    pub(crate) fn open_sqlite(
        path: &Path,
        busy_timeout: Duration,
        cache_kib: u32,
    ) -> Result<Self, diesel::r2d2::Error> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                diesel::r2d2::Error::ConnectionError(ConnectionError::BadConnection(format!(
                    "cannot create {}: {e}",
                    dir.display()
                )))
            })?;
        }
        let path = path.to_string_lossy();
        let mut conn =
            SqliteConnection::establish(&path).map_err(diesel::r2d2::Error::ConnectionError)?;
        // busy_timeout first, so everything after it waits for locks instead of failing.
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {}; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
             PRAGMA cache_size = -{cache_kib};",
            busy_timeout.as_millis()
        ))
        .map_err(diesel::r2d2::Error::QueryError)?;
        Ok(Self::Sqlite(conn))
    }

    /// Switches a SQLite file to WAL once, before the pool opens connections: the mode is
    /// stored in the file, and changing it while other connections start races for the lock.
    pub(crate) fn init_sqlite(
        path: &Path,
        busy_timeout: Duration,
    ) -> Result<(), diesel::r2d2::Error> {
        let mut conn = Self::open_sqlite(path, busy_timeout, READER_CACHE_KIB)?;
        conn.batch_execute("PRAGMA journal_mode = WAL;")
            .map_err(diesel::r2d2::Error::QueryError)
    }

    pub(crate) fn open_postgres(url: &str) -> Result<Self, diesel::r2d2::Error> {
        crate::prepare_postgres_client();
        PgConnection::establish(url)
            .map(Self::Postgresql)
            .map_err(diesel::r2d2::Error::ConnectionError)
    }

    pub(crate) fn broken(&mut self) -> bool {
        match self {
            Self::Postgresql(c) => diesel::r2d2::R2D2Connection::is_broken(c),
            Self::Sqlite(c) => diesel::r2d2::R2D2Connection::is_broken(c),
        }
    }

    /// Applies pending migrations and returns the versions applied. On PostgreSQL a
    /// session advisory lock makes replicas that start together take turns (the others then
    /// find nothing pending); SQLite's write lock does the same for its single file.
    pub fn run_migrations(&mut self) -> Result<Vec<String>, StoreError> {
        let applied = match self {
            Self::Postgresql(c) => {
                c.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
                let result = c
                    .run_pending_migrations(POSTGRES_MIGRATIONS)
                    .map(|v| v.into_iter().map(|v| v.to_string()).collect::<Vec<_>>());
                let unlocked =
                    c.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
                let applied = result.map_err(|e| StoreError::Migration(e.to_string()))?;
                unlocked?;
                applied
            }
            Self::Sqlite(c) => c
                .run_pending_migrations(SQLITE_MIGRATIONS)
                .map(|v| v.into_iter().map(|v| v.to_string()).collect())
                .map_err(|e| StoreError::Migration(e.to_string()))?,
        };
        Ok(applied)
    }

    pub fn has_pending_migrations(&mut self) -> Result<bool, StoreError> {
        match self {
            Self::Postgresql(c) => c.has_pending_migration(POSTGRES_MIGRATIONS),
            Self::Sqlite(c) => c.has_pending_migration(SQLITE_MIGRATIONS),
        }
        .map_err(|e| StoreError::Migration(e.to_string()))
    }
}

/// A raw SQL statement written once with PostgreSQL's `$1, $2, ...` placeholders; SQLite gets
/// the same text with `?1, ?2, ...`, which it binds by the same numbers. Used only where the
/// query builder cannot express the statement (conditional upserts, `SKIP LOCKED`).
pub(crate) fn sql(conn: &AnyConnection, text: &str) -> diesel::query_builder::SqlQuery {
    match conn.backend() {
        Backend::Postgres => diesel::sql_query(text),
        Backend::Sqlite => diesel::sql_query(text.replace('$', "?")),
    }
}
