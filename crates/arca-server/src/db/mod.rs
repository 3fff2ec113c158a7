//! The server's metadata database: tenants, users, repositories, tokens, the object catalogue,
//! metering and the audit log.
//!
//! One code path serves SQLite (the embedded default) and PostgreSQL (several server processes
//! over one database) through sqlx's `Any` driver. Queries are plain SQL that both dialects accept
//! (`$1` placeholders, `ON CONFLICT`, `RETURNING`); the few differences live in [`schema`].
//! Numbers are `BIGINT` (`i64`) and times are Unix seconds by the server's clock, which is the only
//! clock that decides retention.
//!
//! The database, not the object store, is the authority on which objects exist: an object is
//! visible (listed, counted, billed, protected by its lock) from the moment its catalogue row is
//! committed, which happens only after the store has made its bytes durable.

pub mod accounts;
pub mod agents;
pub mod audit;
pub mod billing;
pub mod branding;
pub mod catalog;
pub mod gc;
pub mod health;
pub mod invoices;
pub mod mfa;
pub mod recovery;
pub mod resellers;
pub mod restore_check;
mod schema;
pub mod scrub;
mod text_index;
pub mod usage;
pub mod usage_totals;

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor};

/// A metadata failure.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database refused or could not run a statement, or is unreachable.
    #[error("metadata database: {0}")]
    Sql(#[from] sqlx::Error),
    /// A name that must be unique is taken.
    #[error("{0}")]
    Conflict(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A value is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The server is too busy for this now (the password pool is full); retry shortly.
    #[error("{0}")]
    Busy(String),
}

impl From<crate::limits::OutOfRange> for DbError {
    fn from(e: crate::limits::OutOfRange) -> Self {
        DbError::Invalid(e.to_string())
    }
}

/// Result of metadata operations.
pub type Result<T> = std::result::Result<T, DbError>;

/// Which SQL dialect the pool speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite (embedded, one server process).
    Sqlite,
    /// PostgreSQL (shared by several server processes).
    Postgres,
}

/// The metadata database (cheap to clone: a connection pool).
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    dialect: Dialect,
    /// Seals two-factor seeds at rest ([`crate::secrets`]): an ephemeral key until the server sets
    /// its own ([`Db::set_secret_box`]).
    secrets: std::sync::Arc<std::sync::RwLock<std::sync::Arc<crate::secrets::SecretBox>>>,
    /// Whether the audit log's free-text index exists ([`text_index`]).
    audit_text: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Creates the SQLite file readable by its owner only (it holds password hashes, token hashes and
/// two-factor secrets), or tightens an existing one. SQLite gives its `-wal` and `-shm` files the
/// main file's permissions.
fn owner_only(file: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |e: std::io::Error| DbError::Invalid(format!("preparing the database file {}: {e}", file.display()));
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(file).map_err(io)?;
    let mode = std::fs::metadata(file).map_err(io)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!("{} was readable by others (mode {:o}): made it owner-only", file.display(), mode & 0o777);
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        for suffix in ["-wal", "-shm"] {
            let side = std::path::PathBuf::from(format!("{}{suffix}", file.display()));
            if side.exists() {
                std::fs::set_permissions(&side, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
            }
        }
    }
    Ok(())
}

/// The current time in Unix seconds, by the server's clock.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl Db {
    /// Connects to `url` (`sqlite://PATH` or `postgres://…`) and brings the schema up to date.
    ///
    /// A SQLite file is created when missing. Several processes may connect to one PostgreSQL
    /// database at once; schema changes are serialised with an advisory lock.
    pub async fn connect(url: &str) -> Result<Db> {
        sqlx::any::install_default_drivers();
        let (dialect, url) = if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(DbError::Invalid(
                    "sqlite:// needs a file path, e.g. sqlite:///var/lib/arca/arca.db".into(),
                ));
            }
            let file = path.split('?').next().unwrap_or(path);
            if !file.is_empty() && file != ":memory:" {
                owner_only(std::path::Path::new(file))?;
            }
            let sep = if path.contains('?') { '&' } else { '?' };
            (Dialect::Sqlite, format!("sqlite://{path}{sep}mode=rwc"))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Dialect::Postgres, url.to_string())
        } else {
            return Err(DbError::Invalid(format!(
                "unsupported database URL {:?}: use sqlite://PATH or postgres://USER:PASSWORD@HOST/DB",
                redact(url)
            )));
        };
        // A request waits at most this long for a connection; then it answers 503 and the client
        // retries, rather than hanging while the database is away.
        let mut options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        options = match dialect {
            // One writer at a time in SQLite anyway; WAL lets readers run beside it, and the busy
            // timeout makes writers queue instead of failing.
            Dialect::Sqlite => options.max_connections(8).after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    conn.execute("PRAGMA busy_timeout = 30000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            }),
            Dialect::Postgres => options.max_connections(16),
        };
        let pool = options.connect(&url).await?;
        let secrets =
            std::sync::Arc::new(std::sync::RwLock::new(std::sync::Arc::new(crate::secrets::SecretBox::ephemeral())));
        let db = Db { pool, dialect, secrets, audit_text: Default::default() };
        schema::migrate(&db).await?;
        Ok(db)
    }

    /// Seals secrets with the server key from now on (every clone of this `Db` too).
    pub fn set_secret_box(&self, b: crate::secrets::SecretBox) {
        *self.secrets.write().unwrap_or_else(|p| p.into_inner()) = std::sync::Arc::new(b);
    }

    /// The box that seals secrets at rest.
    pub fn secret_box(&self) -> std::sync::Arc<crate::secrets::SecretBox> {
        self.secrets.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs `f` while holding the database's schema lock (PostgreSQL's advisory lock, SQLite's
    /// write lock), so that one server process at a time does it.
    pub async fn exclusively<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut tx = self.begin_write().await?;
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(4242002)").execute(&mut *tx).await?;
        }
        let out = f().await;
        tx.commit().await?;
        out
    }

    /// Begins a transaction that will write. On SQLite it takes the write lock at once: a
    /// transaction that reads first and writes later cannot upgrade while another connection
    /// writes (SQLite answers "database is locked" at once, without waiting), so it queues for
    /// the lock up front, within the busy timeout. On PostgreSQL a plain transaction.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        let mut tx = self.pool.begin().await?;
        if self.dialect == Dialect::Sqlite {
            sqlx::query("UPDATE schema_version SET version = version WHERE 0 = 1").execute(&mut *tx).await?;
        }
        Ok(tx)
    }

    /// Whether the audit log's free-text index exists.
    pub(crate) fn has_audit_text_index(&self) -> bool {
        self.audit_text.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The connection pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The dialect.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Whether the database answers (for `/healthz`).
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}

/// A URL with any password replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Reads column `name` of a row (a typed getter that names the column on failure).
pub(crate) fn col<'r, T>(row: &'r AnyRow, name: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    use sqlx::Row;
    Ok(row.try_get(name)?)
}

/// A query whose text is built at run time from constant pieces (column lists, a column name
/// chosen from a fixed set): never from input, which is always bound as a parameter.
pub(crate) fn dyn_query(sql: String) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(sqlx::AssertSqlSafe(sql))
}

/// Whether `e` is a unique-constraint violation (a name already taken).
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.is_unique_violation()
                || d.message().contains("UNIQUE constraint failed")
                || d.code().as_deref() == Some("23505")
        }
        _ => false,
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A fresh SQLite database in a temporary directory (kept alive by the returned guard).
    pub async fn sqlite() -> (Db, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/meta.db", dir.path().display())).await.unwrap();
        (db, dir)
    }

    /// Fresh databases of every dialect available: SQLite always, and a throwaway PostgreSQL
    /// database when `ARCA_TEST_POSTGRES` names a server (required when
    /// unless `ARCA_TEST_ALLOW_MISSING_SERVICES=1` asks to skip it).
    pub async fn databases() -> Vec<(Db, Option<tempfile::TempDir>)> {
        let (db, dir) = sqlite().await;
        let mut out = vec![(db, Some(dir))];
        match std::env::var("ARCA_TEST_POSTGRES") {
            Ok(url) => {
                sqlx::any::install_default_drivers();
                let admin = sqlx::AnyPool::connect(&url).await.expect("connecting to ARCA_TEST_POSTGRES");
                let name = format!("arca_unit_{}", hex::encode(rand::random::<[u8; 6]>()));
                dyn_query(format!("CREATE DATABASE {name}")).execute(&admin).await.unwrap();
                let (head, _) = url.rsplit_once('/').unwrap();
                out.push((Db::connect(&format!("{head}/{name}")).await.unwrap(), None));
            }
            Err(_) if std::env::var("ARCA_TEST_ALLOW_MISSING_SERVICES").as_deref() != Ok("1") => {
                panic!("ARCA_TEST_POSTGRES is not set: start the services (scripts/test-services.sh) or set ARCA_TEST_ALLOW_MISSING_SERVICES=1 to skip")
            }
            Err(_) => eprintln!("PostgreSQL half skipped: set ARCA_TEST_POSTGRES (see scripts/test-services.sh)"),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://arca:secret@127.0.0.1/db"), "postgres://arca:***@127.0.0.1/db");
        assert_eq!(redact("sqlite:///x.db"), "sqlite:///x.db");
    }

    #[tokio::test]
    async fn connect_migrates_once_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/meta.db", dir.path().display());
        let db = Db::connect(&url).await.unwrap();
        assert!(db.ping().await);
        drop(db);
        let db = Db::connect(&url).await.unwrap();
        assert_eq!(schema::version(&db).await.unwrap(), schema::LATEST);
        assert!(Db::connect("mysql://x").await.is_err());
    }
}
