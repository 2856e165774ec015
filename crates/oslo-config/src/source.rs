//! The bridge to the `config` crate: a `Source` holding typed values.
//!
//! All oslo semantics (merging, substitution, typing with file/line errors)
//! happen before this point, because `config`'s own errors cannot say which
//! file and line a bad value came from. The source therefore hands over
//! values that already have their final type, and `config` + serde only
//! shape them into the group structs.

use config::{Map, Source, Value, ValueKind};

use crate::error::ConfigError;
use crate::groups::Groups;
use crate::ini::DEFAULT_GROUP;
use crate::interpolate::{Environment, Resolver};
use crate::options::{self, OPTIONS};
use crate::store::Store;
use crate::types;

/// Typed values of every registered option, grouped as `config` tables.
#[derive(Clone, Debug)]
pub struct OsloSource {
    groups: Map<String, Value>,
}

impl OsloSource {
    /// Resolves and types every registered option from the merged files.
    pub fn resolve(store: &Store, env: &Environment) -> Result<Self, ConfigError> {
        let mut resolver = Resolver::new(store, env);
        let mut groups = Map::new();
        for group in options::GROUPS {
            let mut table = Map::new();
            for spec in options::in_group(group) {
                let located = resolver.resolve(spec)?;
                let raw: Vec<String> = located.iter().map(|(v, _)| v.clone()).collect();
                let value = types::convert(spec, &raw).map_err(|message| ConfigError::InvalidValue {
                    origin: located.last().and_then(|(_, o)| o.clone()),
                    group: spec.group,
                    option: spec.name,
                    message,
                })?;
                table.insert(spec.name.to_owned(), value);
            }
            groups.insert(config_key(group), Value::new(None, ValueKind::Table(table)));
        }
        debug_assert_eq!(groups.values().map(table_len).sum::<usize>(), OPTIONS.len());
        Ok(Self { groups })
    }

    /// Shapes the values into the typed groups through `config` and serde.
    pub fn into_groups(self) -> Result<Groups, ConfigError> {
        config::Config::builder()
            .add_source(self)
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| ConfigError::Build(Box::new(e)))
    }
}

/// `DEFAULT` is the one upper-case group; keep all `config` keys lower-case
/// so no layer's case handling can matter.
fn config_key(group: &str) -> String {
    if group == DEFAULT_GROUP {
        "default".to_owned()
    } else {
        group.to_owned()
    }
}

fn table_len(v: &Value) -> usize {
    match &v.kind {
        ValueKind::Table(t) => t.len(),
        _ => 0,
    }
}

impl Source for OsloSource {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, config::ConfigError> {
        Ok(self.groups.clone())
    }
}
