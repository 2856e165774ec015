//! The crate's one error type, and where a value came from.
//!
//! Every message names the file and line (when the value came from a file),
//! the group and the option, because an operator with a 300-line nova.conf
//! must find the culprit without reading our code. Values of secret options
//! are never embedded in a message.

use std::fmt;
use std::path::PathBuf;

/// Where a raw value was read: a file and the 1-based line of its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The config file as it was given (not canonicalised).
    pub file: PathBuf,
    /// The line of the `key = value` assignment (continuations belong to it).
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// Renders "file:line: " or, for a value that came from a default, nothing.
struct At<'a>(&'a Option<Origin>);

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(origin) => write!(f, "{origin}: "),
            None => Ok(()),
        }
    }
}

/// Renders the group as oslo spells it in files: `[DEFAULT]`, `[libvirt]`.
fn at(origin: &Option<Origin>) -> At<'_> {
    At(origin)
}

/// Everything that can go wrong while finding, parsing and typing nova.conf.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file or directory named on the command line could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A `--config-file` that does not exist (oslo: ConfigFilesNotFoundError).
    #[error("config file not found: {}", .0.display())]
    FileNotFound(PathBuf),
    /// A `--config-dir` that does not exist (oslo: ConfigDirNotFoundError).
    #[error("config directory not found: {}", .0.display())]
    DirNotFound(PathBuf),
    /// The INI syntax is broken (oslo: ConfigFileParseError).
    #[error("{}:{line}: {message}: {text:?}", file.display())]
    Parse {
        /// The file being parsed.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: &'static str,
        /// The offending line, verbatim.
        text: String,
    },
    /// A value does not fit its option's type, range or choices.
    #[error("{}[{group}] {option}: {message}", at(origin))]
    InvalidValue {
        /// Where the value was read; `None` for a default.
        origin: Option<Origin>,
        /// Group as written in files (`DEFAULT`, `libvirt`).
        group: &'static str,
        /// Option name.
        option: &'static str,
        /// What is wrong, quoting the value unless the option is secret.
        message: String,
    },
    /// `$var` substitution failed: unknown option, cycle, or group reference.
    #[error("{}[{group}] {option}: cannot substitute ${reference}: {reason}", at(origin))]
    Interpolation {
        /// Where the value holding the reference was read.
        origin: Option<Origin>,
        /// Group of the option whose value holds the reference.
        group: &'static str,
        /// Option whose value holds the reference.
        option: &'static str,
        /// The reference as written, without `$`/`{}`.
        reference: String,
        /// Why it failed.
        reason: &'static str,
    },
    /// The command line is malformed (`--config-file` without a value...).
    #[error("{0}")]
    Usage(String),
    /// The `config` crate refused the typed values (a bug in this crate).
    #[error("building typed option groups failed")]
    Build(#[source] Box<config::ConfigError>),
}

#[cfg(test)]
mod tests {
    /// Errors travel in every `Result` of the start-up path; keep them small.
    #[test]
    fn error_stays_small() {
        assert!(std::mem::size_of::<super::ConfigError>() <= 128);
    }
}
