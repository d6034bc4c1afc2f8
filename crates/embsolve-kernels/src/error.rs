//! The typed error of the library: a kind (what went wrong, and so the exit status) and a message
//! that names the file, key, row, shard or rank at fault.

use std::fmt;

/// What kind of failure, which decides the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad command line.
    Usage,
    /// Bad configuration: unknown key, invalid value.
    Config,
    /// Bad input data: missing file, ragged rows, NaN, ...
    Input,
    /// A requested backend (CUDA) is not usable here.
    Backend,
    /// A signal (SIGTERM, SIGINT) asked the run to stop.
    Interrupted,
    /// Output could not be written.
    Output,
    /// Anything else: a bug, an I/O failure outside the input.
    Internal,
    /// Another rank failed; it printed the message.
    Peer,
}

/// A failure with a message naming the culprit.
#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    /// Exit status to use (only meaningful for `Peer`, which takes the failing rank's status).
    pub peer_status: i32,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            peer_status: 0,
        }
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Usage, message)
    }
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
    pub fn input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Input, message)
    }
    pub fn backend(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Backend, message)
    }
    pub fn output(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Output, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    pub fn interrupted() -> Self {
        Self::new(
            ErrorKind::Interrupted,
            "interrupted by a signal; finished stages are kept",
        )
    }
    /// The error another rank reported; this rank stays silent and exits with `status`.
    pub fn peer(rank: usize, status: i32) -> Self {
        Error {
            kind: ErrorKind::Peer,
            message: format!("rank {rank} failed"),
            peer_status: status,
        }
    }

    /// Process exit status: 2 for usage, config, input and backend-choice errors, 1 otherwise.
    pub fn exit_status(&self) -> i32 {
        match self.kind {
            ErrorKind::Usage | ErrorKind::Config | ErrorKind::Input | ErrorKind::Backend => 2,
            ErrorKind::Peer => self.peer_status,
            ErrorKind::Interrupted | ErrorKind::Output | ErrorKind::Internal => 1,
        }
    }

    /// Prefix the message with context (a file, a shard), keeping the kind.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.kind {
            ErrorKind::Usage => "usage error",
            ErrorKind::Config => "config error",
            ErrorKind::Input => "input error",
            ErrorKind::Backend => "backend error",
            ErrorKind::Interrupted => "interrupted",
            ErrorKind::Output => "output error",
            ErrorKind::Internal => "error",
            ErrorKind::Peer => "peer failure",
        };
        write!(f, "{label}: {}", self.message)
    }
}

impl std::error::Error for Error {}
