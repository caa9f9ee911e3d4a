//! The command layer's error: every failure a command can end with, and its exit code.
//!
//! Owns: the mapping to the contract's exit codes (2 for usage and configuration, 1 for anything
//! else). Never: hides the layer's own message, which already says what to do.

use std::fmt;

use crate::core::config::ConfigError;
use crate::core::logging::LogError;
use crate::core::state::StateError;

#[derive(Debug)]
pub enum Error {
    /// A command line or environment that asks for something impossible (exit 2).
    Usage(String),
    Config(ConfigError),
    State(StateError),
    Log(LogError),
    /// Anything else (exit 1), already worded for the operator.
    Other(String),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::Config(_) => 2,
            Error::State(_) | Error::Log(_) | Error::Other(_) => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) | Error::Other(m) => f.write_str(m),
            Error::Config(e) => e.fmt(f),
            Error::State(e) => e.fmt(f),
            Error::Log(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Error {
        Error::Config(e)
    }
}

impl From<StateError> for Error {
    fn from(e: StateError) -> Error {
        Error::State(e)
    }
}

impl From<LogError> for Error {
    fn from(e: LogError) -> Error {
        Error::Log(e)
    }
}
