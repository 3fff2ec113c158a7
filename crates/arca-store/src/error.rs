//! The store's error type: what went wrong, and with which object.

/// Result alias for store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure happened; callers branch on this, never on the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The object does not exist.
    NotFound,
    /// A repository (or an object that must be unique) is already there.
    AlreadyExists,
    /// The object is shorter than the requested range.
    Truncated,
    /// A name that is not a valid object name.
    InvalidName,
    /// The device is full; nothing was stored.
    NoSpace,
    /// Permission denied by the backend.
    PermissionDenied,
    /// Any other I/O failure.
    Io,
}

/// A store failure, with a message naming the object.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<std::io::Error>,
}

impl Error {
    /// A new error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), source: None }
    }

    /// Wraps an I/O error that happened while doing `what`.
    pub fn io(what: impl std::fmt::Display, err: std::io::Error) -> Self {
        let kind = match err.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
            std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            std::io::ErrorKind::UnexpectedEof => ErrorKind::Truncated,
            _ if err.raw_os_error() == Some(libc::ENOSPC) || err.raw_os_error() == Some(libc::EDQUOT) => {
                ErrorKind::NoSpace
            }
            _ => ErrorKind::Io,
        };
        let hint = if kind == ErrorKind::NoSpace {
            " (the disk is full: free space and run the command again; nothing was stored)"
        } else {
            ""
        };
        Error { kind, message: format!("{what}: {err}{hint}"), source: Some(err) }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether the object was missing.
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }
}
