//! What the operator should hear about at start-up, although the files are
//! valid: options set in a file that have no effect here, and options set
//! under a deprecated name (oslo logs the same for `deprecated_opts`).
//!
//! Owns: finding those in the merged files. Must not know: how they are
//! logged (the service logs each one once).

use std::fmt;

use crate::error::Origin;
use crate::ini::normalize_group;
use crate::options::{Role, OPTIONS};
use crate::store::Store;

/// One start-up warning about the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigWarning {
    /// A file sets an option that is accepted for nova.conf compatibility
    /// but has no effect in this service ([`Role::Ignored`]).
    Ignored {
        /// The option's group, as oslo spells it (`DEFAULT`, `libvirt`).
        group: &'static str,
        /// The option's name.
        name: &'static str,
        /// Where it is set (the last assignment of its current name, else of
        /// a deprecated one).
        origin: Origin,
    },
    /// A file sets an option under a deprecated group or name; the value is
    /// used for the current one.
    DeprecatedName {
        /// The deprecated group as registered.
        old_group: &'static str,
        /// The deprecated name.
        old_name: &'static str,
        /// The option's current group.
        group: &'static str,
        /// The option's current name.
        name: &'static str,
        /// Where the deprecated spelling is used (its last assignment).
        origin: Origin,
    },
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigWarning::Ignored { group, name, origin } => write!(
                f,
                "{origin}: [{group}] {name} is accepted for nova.conf compatibility but has no effect in this service"
            ),
            ConfigWarning::DeprecatedName { old_group, old_name, group, name, origin } => write!(
                f,
                "{origin}: option \"{old_name}\" from group \"{old_group}\" is deprecated; \
                 use option \"{name}\" from group \"{group}\""
            ),
        }
    }
}

/// Every warning the merged files deserve, in registry order.
pub fn collect(store: &Store) -> Vec<ConfigWarning> {
    let mut out = Vec::new();
    for spec in OPTIONS {
        let set_as =
            |group: &str, name: &str| store.get(&normalize_group(group), name).last().map(|v| v.origin.clone());
        for (old_group, old_name) in spec.deprecated {
            if let Some(origin) = set_as(old_group, old_name) {
                out.push(ConfigWarning::DeprecatedName {
                    old_group,
                    old_name,
                    group: spec.group,
                    name: spec.name,
                    origin,
                });
            }
        }
        if spec.role == Role::Ignored {
            let names = std::iter::once((spec.group, spec.name)).chain(spec.deprecated.iter().copied());
            if let Some(origin) = names.filter_map(|(g, n)| set_as(g, n)).next() {
                out.push(ConfigWarning::Ignored { group: spec.group, name: spec.name, origin });
            }
        }
    }
    out
}
