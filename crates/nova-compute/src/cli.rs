//! The command line: oslo's `--config-file`/`--config-dir` plus our flags.
//!
//! Config options are parsed by `oslo_config::ConfigArgs` (so precedence is
//! exactly oslo's); this module only adds the service's own flags and
//! refuses anything unknown, so a typo does not silently start a service
//! with the wrong configuration.

use oslo_config::{ConfigArgs, ConfigError};

/// What the process was asked to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Print usage and exit 0.
    Help,
    /// Print the version (and the nova versions it speaks) and exit 0.
    Version,
    /// Print the effective configuration as JSON and exit 0.
    DumpConfig(ConfigArgs),
    /// Run the service.
    Run(ConfigArgs),
}

/// Usage text.
pub const USAGE: &str = "\
usage: nova-compute [--config-file PATH]... [--config-dir DIR]... [--dump-config] [--version]

  --config-file PATH  read PATH (repeatable; later files win)
  --config-dir DIR    read DIR/*.conf in sorted order (repeatable)
  --dump-config       print the effective configuration as JSON (secrets masked) and exit
  --version           print the version and the nova RPC/service versions, and exit
  -h, --help          show this help

Without --config-file, nova.conf and nova-compute.conf are searched in
~/.nova/, ~/, /etc/nova/ and /etc/ (and the matching .conf.d directories).";

/// Parses the arguments after argv[0].
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, ConfigError> {
    let (config, rest) = ConfigArgs::parse(args)?;
    let mut dump = false;
    for arg in rest {
        match arg.as_str() {
            "--dump-config" => dump = true,
            "-h" | "--help" => return Ok(Command::Help),
            "--version" => return Ok(Command::Version),
            other => return Err(ConfigError::Usage(format!("unknown argument {other:?}\n{USAGE}"))),
        }
    }
    Ok(if dump { Command::DumpConfig(config) } else { Command::Run(config) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dump_config_with_files() {
        match parse(args(&["--config-file=/a", "--dump-config", "--config-dir", "/d"])).unwrap() {
            Command::DumpConfig(c) => assert_eq!(c.locations.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn version_flag() {
        assert_eq!(parse(args(&["--version"])).unwrap(), Command::Version);
    }

    #[test]
    fn unknown_flag_is_refused() {
        assert!(parse(args(&["--config-fil", "/a"])).is_err());
        assert_eq!(parse(args(&["--help"])).unwrap(), Command::Help);
    }
}
