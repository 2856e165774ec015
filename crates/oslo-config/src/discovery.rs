//! Which files to read: command-line order, config dirs, default search.
//!
//! As oslo (cfg.py `_parse_config_files`, `find_config_files`,
//! `find_config_dirs`):
//! - `--config-file` and `--config-dir` are read in command-line order, each
//!   overriding what came before; a dir contributes its `*.conf` files in
//!   sorted order (hidden files excluded, as glob does);
//! - without any `--config-file`, the default files are read first: for each
//!   of `nova.conf` and `nova-compute.conf`, the first that exists in
//!   `~/.nova/`, `~/`, `/etc/nova/`, `/etc/`;
//! - without any `--config-dir`, likewise `nova.conf.d/` and
//!   `nova-compute.conf.d/` (missing ones skipped);
//! - a named file or dir that does not exist is an error.

use std::path::{Path, PathBuf};

use crate::error::ConfigError;

/// One `--config-file` or `--config-dir`, in command-line order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigLocation {
    /// `--config-file`.
    File(PathBuf),
    /// `--config-dir`.
    Dir(PathBuf),
}

/// Where the default search looks: the home directory and `/etc`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchRoots {
    /// `~`; `None` skips `~/.nova/` and `~/`.
    pub home: Option<PathBuf>,
    /// `/etc`, replaceable so tests do not depend on the machine.
    pub etc: PathBuf,
}

impl SearchRoots {
    /// `$HOME` and `/etc`.
    pub fn from_env() -> Self {
        Self { home: std::env::var_os("HOME").map(PathBuf::from), etc: PathBuf::from("/etc") }
    }

    /// oslo `_get_config_dirs(project)`, in search order.
    fn dirs(&self, project: &str) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        if let Some(home) = &self.home {
            dirs.push(home.join(format!(".{project}")));
            dirs.push(home.clone());
        }
        dirs.push(self.etc.join(project));
        dirs.push(self.etc.clone());
        dirs
    }

    /// For each of `<project><ext>` and `<prog><ext>`, the first existing path.
    fn find(&self, project: &str, prog: &str, ext: &str) -> Vec<PathBuf> {
        let dirs = self.dirs(project);
        [project, prog]
            .iter()
            .filter_map(|base| dirs.iter().map(|d| d.join(format!("{base}{ext}"))).find(|p| p.exists()))
            .collect()
    }
}

/// The files to read, in order (later wins).
pub fn files_to_read(
    locations: &[ConfigLocation],
    roots: &SearchRoots,
    project: &str,
    prog: &str,
) -> Result<Vec<PathBuf>, ConfigError> {
    let mut files = Vec::new();
    if !locations.iter().any(|l| matches!(l, ConfigLocation::File(_))) {
        files.extend(roots.find(project, prog, ".conf"));
    }
    if !locations.iter().any(|l| matches!(l, ConfigLocation::Dir(_))) {
        for dir in roots.find(project, prog, ".conf.d") {
            files.extend(conf_files_in(&dir)?);
        }
    }
    for location in locations {
        match location {
            ConfigLocation::File(f) if f.is_file() => files.push(f.clone()),
            ConfigLocation::File(f) => return Err(ConfigError::FileNotFound(f.clone())),
            ConfigLocation::Dir(d) if d.is_dir() => files.extend(conf_files_in(d)?),
            ConfigLocation::Dir(d) => return Err(ConfigError::DirNotFound(d.clone())),
        }
    }
    Ok(files)
}

/// `sorted(glob(dir/*.conf))`.
fn conf_files_in(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let io = |source| ConfigError::Io { path: dir.to_path_buf(), source };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".conf") && !name.starts_with('.') && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
