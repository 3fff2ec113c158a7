//! The appliance's one error type: what went wrong, and for which share, file or object.

/// What kind of failure, so callers (the CLI, the status page) can tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The configuration file is missing, unreadable or wrong.
    Config,
    /// The local repository could not be opened, read or written.
    Repository,
    /// The provider could not be reached or refused a request.
    Provider,
    /// A local file or socket failed.
    Io,
}

/// An appliance error: a kind and a message that names what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into() }
    }

    /// A configuration error.
    pub fn config(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Config, message)
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The same error with `what` (the operation) in front of its message.
    pub fn context(self, what: impl std::fmt::Display) -> Error {
        Error { kind: self.kind, message: format!("{what}: {}", self.message) }
    }
}

impl From<arca_core::Error> for Error {
    fn from(e: arca_core::Error) -> Error {
        Error::new(ErrorKind::Repository, e.to_string())
    }
}

impl From<arca_store::Error> for Error {
    fn from(e: arca_store::Error) -> Error {
        Error::new(ErrorKind::Provider, e.to_string())
    }
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, Error>;
