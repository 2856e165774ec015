//! Test support: write config files into a temp dir.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A temp dir holding config files.
pub struct Files {
    pub dir: tempfile::TempDir,
}

impl Files {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    /// Writes `name` (creating parent dirs) and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

/// Loads one config text.
pub fn load(text: &str) -> Result<oslo_config::Config, oslo_config::ConfigError> {
    let f = Files::new();
    let p = f.write("nova.conf", text);
    oslo_config::Config::from_files([p])
}

/// The error message of a config text that must fail, with the temp path
/// replaced by `F`.
pub fn error(text: &str) -> String {
    let f = Files::new();
    let p = f.write("nova.conf", text);
    let e = oslo_config::Config::from_files([&p]).expect_err("config must be rejected");
    e.to_string().replace(&p.display().to_string(), "F")
}
