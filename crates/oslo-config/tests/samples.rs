//! The sample nova.conf and the reference tables are generated from the
//! registry; these tests keep the committed copies current and loadable.
//! Regenerate with `UPDATE_SAMPLES=1 cargo test -p oslo-config --test samples`.

use std::path::PathBuf;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

#[test]
fn sample_nova_conf_is_current() {
    let want = oslo_config::sample_config();
    let path = repo("etc/nova/nova.conf");
    if std::env::var_os("UPDATE_SAMPLES").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap();
    assert!(have == want, "etc/nova/nova.conf is stale: regenerate it with `{}`", oslo_config::REGENERATE);
}

#[test]
fn sample_nova_conf_loads_to_the_defaults() {
    let sample = oslo_config::Config::from_files([repo("etc/nova/nova.conf")]).unwrap();
    let defaults = {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.conf");
        std::fs::write(&empty, "").unwrap();
        oslo_config::Config::from_files([empty]).unwrap()
    };
    assert_eq!(sample.dump_json(), defaults.dump_json());
}

#[test]
fn uncommented_sample_parses_with_every_option_set() {
    // Uncomment every option that has a concrete default: all must type-check.
    let text: String = oslo_config::sample_config()
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.contains(" = ") && !rest.starts_with(' ') && !rest.contains('<') => rest.to_owned(),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nova.conf");
    std::fs::write(&path, text).unwrap();
    oslo_config::Config::from_files([path]).unwrap();
}

/// The tables close docs/configuration.md, after the "## Options" preamble;
/// UPDATE_SAMPLES=1 rewrites them.
#[test]
fn reference_tables_are_in_the_docs() {
    let path = repo("docs/configuration.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let tables = oslo_config::reference_tables();
    if std::env::var_os("UPDATE_SAMPLES").is_some() {
        let start = doc.find("\n### [DEFAULT]").expect("the [DEFAULT] table in docs/configuration.md");
        std::fs::write(&path, format!("{}{tables}", &doc[..start])).unwrap();
        return;
    }
    assert!(doc.ends_with(&tables), "docs/configuration.md is stale: regenerate it with `{}`", oslo_config::REGENERATE);
}
