//! The sample `etc/nova/nova.conf` and the option tables of
//! `docs/configuration.md`, generated from the registry so they list exactly
//! the options the service parses, with the real defaults and what each is
//! to this service (nova's, accepted and ignored, ours).
//!
//! Regenerate both with `UPDATE_SAMPLES=1 cargo test -p oslo-config --test
//! samples`; without the variable that test fails when either is stale.

use std::fmt::Write as _;

use crate::options::{self, DefaultValue, Kind, OptSpec, Role};

/// The command that rewrites the committed sample and reference.
pub const REGENERATE: &str = "UPDATE_SAMPLES=1 cargo test -p oslo-config --test samples";

/// Text of the sample nova.conf: every option commented out at its default.
pub fn sample_config() -> String {
    let mut out = String::from(
        "# Sample nova.conf for the Rust nova-compute (snapshot path).\n\
         #\n\
         # Generated from crates/oslo-config/src/options.rs by\n\
         # `UPDATE_SAMPLES=1 cargo test -p oslo-config --test samples`; do not edit by hand.\n\
         # Every option the service parses is listed, commented out, at its default, with its kind:\n\
         #   nova              does what nova documents for it;\n\
         #   accepted, ignored parsed so a full nova.conf loads, no effect here (warned at start-up when set);\n\
         #   ours              our own extension, only in [snapshot_engine].\n\
         # Options not listed here are not read at all, so a full nova.conf works unchanged.\n",
    );
    for group in options::GROUPS {
        let _ = write!(out, "\n[{group}]\n");
        if let Some(note) = group_note(group) {
            let _ = writeln!(out, "# {note}");
        }
        for spec in options::in_group(group) {
            let _ = write!(out, "\n# {} ({}; {}){}\n", spec.help, type_name(spec), spec.role.label(), flags(spec));
            let _ = writeln!(out, "#{} = {}", spec.name, default_text(spec));
        }
    }
    out
}

/// A line under a group's header, for the groups that are not nova's.
fn group_note(group: &str) -> Option<&'static str> {
    let ours = options::in_group(group).all(|o| o.role == Role::Extension);
    ours.then_some("Ours, not nova's: options of this service's snapshot engine.")
}

/// Markdown tables, one per group, for the configuration reference.
pub fn reference_tables() -> String {
    let mut out = String::new();
    for group in options::GROUPS {
        let _ = write!(out, "\n### [{group}]\n\n");
        if let Some(note) = group_note(group) {
            let _ = write!(out, "{note}\n\n");
        }
        let _ = write!(out, "| option | kind | type | default | description |\n|---|---|---|---|---|\n");
        for spec in options::in_group(group) {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | `{}` | {}{} |",
                spec.name,
                spec.role.label(),
                type_name(spec),
                default_text(spec),
                spec.help.replace('|', "\\|"),
                flags(spec)
            );
        }
    }
    out
}

fn flags(spec: &OptSpec) -> String {
    let mut s = String::new();
    if spec.secret {
        s.push_str(" [secret]");
    }
    for (g, n) in spec.deprecated {
        let _ = write!(s, " [also read from deprecated {g}.{n}]");
    }
    s
}

fn type_name(spec: &OptSpec) -> String {
    match spec.kind {
        Kind::Bool => "boolean".to_owned(),
        Kind::Int { min, max } => format!("integer{}", bounds(min, max)),
        Kind::Float { min, max } => format!("float{}", bounds(min, max)),
        Kind::Str => "string".to_owned(),
        Kind::Choice(c) => format!("one of {}", c.join("/")),
        Kind::List => "list".to_owned(),
        Kind::MultiStr => "multi-valued".to_owned(),
    }
}

fn bounds<T: std::fmt::Display>(min: Option<T>, max: Option<T>) -> String {
    match (min, max) {
        (Some(a), Some(b)) => format!(", {a}..{b}"),
        (Some(a), None) => format!(", min {a}"),
        (None, Some(b)) => format!(", max {b}"),
        (None, None) => String::new(),
    }
}

fn default_text(spec: &OptSpec) -> String {
    match spec.default {
        DefaultValue::Unset => "<None>".to_owned(),
        DefaultValue::Literal(s) => s.to_owned(),
        DefaultValue::Hostname => "<current hostname>".to_owned(),
        DefaultValue::ProgramName => "<program name>".to_owned(),
    }
}
