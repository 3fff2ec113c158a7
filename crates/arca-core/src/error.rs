//! The engine's error type. Callers branch on [`ErrorKind`]; messages name the object involved and
//! say what to do.

use arca_store::ErrorKind as StoreErrorKind;

/// Result alias for the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, coarsely enough that the CLI can map it to an exit code and the server to an
/// HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// There is no repository at the given location.
    NoRepository,
    /// A repository already exists where one was to be created.
    AlreadyExists,
    /// No key slot opens with the given password.
    WrongPassword,
    /// A stored object failed its integrity check (hash, authentication tag, or structure).
    Corrupt,
    /// An object the repository refers to is missing.
    Missing,
    /// Something the user named (a snapshot, a path, a key) does not exist or is ambiguous.
    NotFound,
    /// The request itself is invalid (bad arguments, unsupported version).
    InvalidInput,
    /// The repository is locked by another operation that excludes this one.
    Locked,
    /// A storage failure (I/O, full disk, permissions).
    Storage,
    /// Reading or writing the local file system (the backup source or the restore target) failed.
    LocalIo,
}

/// An engine failure.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    /// A new error.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), source: None }
    }

    /// A corrupt-object error.
    pub fn corrupt(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Corrupt, message)
    }

    /// An invalid-input error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidInput, message)
    }

    /// A not-found error for something the user named.
    pub fn not_found(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::NotFound, message)
    }

    /// Wraps a local file-system error that happened while doing `what`.
    pub fn local_io(what: impl std::fmt::Display, err: std::io::Error) -> Self {
        let hint = if err.raw_os_error() == Some(libc::ENOSPC) {
            " (the target disk is full: free space and run the command again)"
        } else {
            ""
        };
        Error { kind: ErrorKind::LocalIo, message: format!("{what}: {err}{hint}"), source: Some(Box::new(err)) }
    }

    /// A new error caused by `source`, which stays reachable through `source()` (callers look for
    /// particular causes, such as the CLI for its closed standard output).
    pub fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error { kind, message: message.into(), source: Some(Box::new(source)) }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Prefixes the message with what was being done.
    pub fn context(mut self, what: impl std::fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl From<arca_store::Error> for Error {
    fn from(err: arca_store::Error) -> Self {
        let kind = match err.kind() {
            StoreErrorKind::NotFound => ErrorKind::Missing,
            StoreErrorKind::Truncated => ErrorKind::Corrupt,
            StoreErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
            StoreErrorKind::InvalidName => ErrorKind::InvalidInput,
            _ => ErrorKind::Storage,
        };
        Error { kind, message: err.to_string(), source: Some(Box::new(err)) }
    }
}
