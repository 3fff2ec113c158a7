//! The agent's errors.

/// What went wrong, for a person.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file is missing, unreadable or wrong.
    #[error("{0}")]
    Config(String),
    /// The server refused a request (its status and message).
    #[error("the server answered {status}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The server could not be reached.
    #[error("the server could not be reached: {0}")]
    Unreachable(String),
    /// A local file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Another agent process holds this state directory.
    #[error("{0}")]
    Busy(String),
}

impl Error {
    /// An I/O error while doing `what`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io { what: what.into(), source }
    }
}

/// The agent's result type.
pub type Result<T> = std::result::Result<T, Error>;
