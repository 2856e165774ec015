//! oslo.config-compatible configuration for the Rust nova-compute.
//!
//! Owns: oslo's INI dialect and file semantics (which files, in which
//! order, how repeated sections, keys and multi-valued options merge,
//! `$var` substitution, oslo's value types) and nova's option groups with
//! nova's defaults, so the service reads the same `/etc/nova/nova.conf` the
//! Python service does. Values are parsed by our own parser, handed to the
//! `config` crate as a custom `Source`, and shaped into typed groups with
//! serde.
//!
//! Must not know: what the options mean at run time (no nova behaviour, no
//! RPC, no libvirt, no HTTP). It only says what the operator configured.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let file = dir.path().join("nova.conf");
//! std::fs::write(&file, "[DEFAULT]\nstate_path = /srv/nova\n").unwrap();
//! let cfg = oslo_config::Config::from_files([&file]).unwrap();
//! assert_eq!(cfg.libvirt.snapshots_directory, "/srv/nova/instances/snapshots");
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod args;
mod discovery;
mod error;
#[allow(missing_docs)] // field names are the option names, documented in the registry
pub mod groups;
mod ini;
mod interpolate;
pub mod options;
mod sample;
mod secret;
mod source;
mod store;
mod types;
mod warnings;

use std::ops::Deref;
use std::path::{Path, PathBuf};

pub use args::ConfigArgs;
pub use discovery::{ConfigLocation, SearchRoots};
pub use error::{ConfigError, Origin};
pub use groups::Groups;
pub use sample::{reference_tables, sample_config, REGENERATE};
pub use secret::{Secret, TransportUrl, MASK};
pub use warnings::ConfigWarning;

use interpolate::Environment;
use source::OsloSource;
use store::Store;

/// The effective configuration: typed groups plus the files they came from.
///
/// Derefs to [`Groups`], so `cfg.default.host`, `cfg.libvirt.virt_type`...
#[derive(Clone, Debug)]
pub struct Config {
    groups: Groups,
    files: Vec<PathBuf>,
    warnings: Vec<ConfigWarning>,
}

impl Deref for Config {
    type Target = Groups;

    fn deref(&self) -> &Groups {
        &self.groups
    }
}

impl Config {
    /// Finds and reads the files the command line names (or nova's default
    /// files), as oslo does for `nova-compute`.
    pub fn load(args: &ConfigArgs) -> Result<Self, ConfigError> {
        let files = discovery::files_to_read(&args.locations, &args.search, &args.project, &args.prog)?;
        Self::read(files, &args.prog)
    }

    /// Reads exactly these files, in order (later wins); no default search.
    pub fn from_files<P: AsRef<Path>>(files: impl IntoIterator<Item = P>) -> Result<Self, ConfigError> {
        let files = files.into_iter().map(|f| f.as_ref().to_path_buf()).collect::<Vec<_>>();
        if let Some(missing) = files.iter().find(|f| !f.is_file()) {
            return Err(ConfigError::FileNotFound(missing.clone()));
        }
        Self::read(files, "nova-compute")
    }

    fn read(files: Vec<PathBuf>, program: &str) -> Result<Self, ConfigError> {
        let mut store = Store::default();
        for file in &files {
            let text =
                std::fs::read_to_string(file).map_err(|source| ConfigError::Io { path: file.clone(), source })?;
            store.add_file(ini::parse(&text, file)?);
        }
        let env = Environment { hostname: hostname(), program: program.to_owned() };
        let groups = OsloSource::resolve(&store, &env)?.into_groups()?;
        let warnings = warnings::collect(&store);
        Ok(Self { groups, files, warnings })
    }

    /// The typed groups.
    pub fn groups(&self) -> &Groups {
        &self.groups
    }

    /// The files that were read, in order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// What to warn about once at start-up: ignored options the files set,
    /// and deprecated spellings they use. Each names the file and line.
    pub fn warnings(&self) -> &[ConfigWarning] {
        &self.warnings
    }

    /// The accepted-and-ignored options the files set, as (group, name).
    pub fn ignored_options_set(&self) -> Vec<(&'static str, &'static str)> {
        self.warnings
            .iter()
            .filter_map(|w| match w {
                ConfigWarning::Ignored { group, name, .. } => Some((*group, *name)),
                ConfigWarning::DeprecatedName { .. } => None,
            })
            .collect()
    }

    /// The effective configuration as pretty JSON, secrets as `***`.
    pub fn dump_json(&self) -> String {
        // Serialising plain structs of strings, numbers and lists cannot fail.
        serde_json::to_string_pretty(&self.groups).unwrap_or_default()
    }
}

/// `socket.gethostname()`, read from the kernel without libc calls.
fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every registered option lands in a struct field and every field has
    /// an option: `deny_unknown_fields` + required fields make either
    /// mismatch fail here.
    #[test]
    fn registry_and_structs_agree() {
        let env = Environment { hostname: "h".into(), program: "p".into() };
        let groups = OsloSource::resolve(&Store::default(), &env).unwrap().into_groups().unwrap();
        let json: serde_json::Value = serde_json::to_value(&groups).unwrap();
        let fields: usize = json.as_object().unwrap().values().map(|g| g.as_object().unwrap().len()).sum();
        assert_eq!(fields, options::OPTIONS.len());
    }

    /// Every declared choice deserialises into its enum.
    #[test]
    fn every_choice_is_accepted_by_its_enum() {
        for spec in options::OPTIONS {
            if let options::Kind::Choice(choices) = spec.kind {
                for choice in choices {
                    let dir = std::env::temp_dir().join(format!("oslo-choice-{}-{choice}", std::process::id()));
                    std::fs::create_dir_all(&dir).unwrap();
                    let f = dir.join("n.conf");
                    std::fs::write(&f, format!("[{}]\n{} = {choice}\n", spec.group, spec.name)).unwrap();
                    let r = Config::from_files([&f]);
                    std::fs::remove_dir_all(&dir).unwrap();
                    assert!(r.is_ok(), "{}.{} = {choice}: {:?}", spec.group, spec.name, r.err());
                }
            }
        }
    }
}
