//! `--config-file` / `--config-dir` from a command line, oslo-style.
//!
//! Both `--config-file F` and `--config-file=F` work and either may repeat;
//! their order is kept because it decides precedence. Arguments this parser
//! does not own are handed back to the caller (the binary has its own).

use std::path::PathBuf;

use crate::discovery::{ConfigLocation, SearchRoots};
use crate::error::ConfigError;

/// What to read and how to find defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigArgs {
    /// `--config-file` / `--config-dir` in command-line order.
    pub locations: Vec<ConfigLocation>,
    /// oslo `project`: `nova`.
    pub project: String,
    /// oslo `prog`: `nova-compute`.
    pub prog: String,
    /// Roots of the default search.
    pub search: SearchRoots,
}

impl Default for ConfigArgs {
    fn default() -> Self {
        Self {
            locations: Vec::new(),
            project: "nova".to_owned(),
            prog: "nova-compute".to_owned(),
            search: SearchRoots::from_env(),
        }
    }
}

impl ConfigArgs {
    /// Explicit files, read in order; no default search.
    pub fn files<P: Into<PathBuf>>(files: impl IntoIterator<Item = P>) -> Self {
        Self { locations: files.into_iter().map(|f| ConfigLocation::File(f.into())).collect(), ..Self::default() }
    }

    /// Takes the config options out of `args` (without argv[0]); returns the
    /// parsed options and the arguments left for the caller, in order.
    pub fn parse<I, S>(args: I) -> Result<(Self, Vec<String>), ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut parsed = Self::default();
        let mut rest = Vec::new();
        let mut args = args.into_iter().map(Into::into);
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
                None => (arg.clone(), None),
            };
            let make: fn(PathBuf) -> ConfigLocation = match flag.as_str() {
                "--config-file" => ConfigLocation::File,
                "--config-dir" => ConfigLocation::Dir,
                _ => {
                    rest.push(arg);
                    continue;
                }
            };
            let value = match inline {
                Some(v) => v,
                None => args.next().ok_or_else(|| ConfigError::Usage(format!("{flag} needs a path")))?,
            };
            if value.is_empty() {
                return Err(ConfigError::Usage(format!("{flag} needs a path")));
            }
            parsed.locations.push(make(PathBuf::from(value)));
        }
        Ok((parsed, rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_keep_order_and_leave_the_rest() {
        let (a, rest) = ConfigArgs::parse([
            "--config-file",
            "/a.conf",
            "--dump-config",
            "--config-dir=/d",
            "--config-file=/b.conf",
        ])
        .unwrap();
        assert_eq!(
            a.locations,
            [
                ConfigLocation::File("/a.conf".into()),
                ConfigLocation::Dir("/d".into()),
                ConfigLocation::File("/b.conf".into()),
            ]
        );
        assert_eq!(rest, ["--dump-config"]);
    }

    #[test]
    fn missing_value_is_an_error() {
        assert!(ConfigArgs::parse(["--config-file"]).is_err());
        assert!(ConfigArgs::parse(["--config-dir="]).is_err());
    }
}
