//! oslo's value types: turning a (substituted) string into a typed value.
//!
//! Mirrors oslo_config/types.py: Boolean accepts true/false/yes/no/on/off/1/0
//! in any case; Integer trims and treats an empty value as unset; List trims
//! items and drops trailing commas; choices are case-sensitive. Messages
//! quote the value unless the option is secret.

use config::{Value, ValueKind};

use crate::options::{Kind, OptSpec};
use crate::secret::MASK;

/// Converts one option's raw strings (one for normal options, all for
/// MultiStrOpt; none when unset) into a `config` value.
pub fn convert(spec: &OptSpec, raw: &[String]) -> Result<Value, String> {
    let kind = match (spec.kind, raw.last()) {
        (Kind::MultiStr, _) => strings(raw.iter().cloned()),
        (_, None) => unset(spec.kind),
        (kind, Some(s)) => convert_one(kind, s, spec.secret)?,
    };
    Ok(Value::new(None, kind))
}

/// The value of an option that nothing sets.
fn unset(kind: Kind) -> ValueKind {
    match kind {
        Kind::List | Kind::MultiStr => ValueKind::Array(Vec::new()),
        _ => ValueKind::Nil,
    }
}

fn strings(items: impl Iterator<Item = String>) -> ValueKind {
    ValueKind::Array(items.map(|s| Value::new(None, s)).collect())
}

fn convert_one(kind: Kind, s: &str, secret: bool) -> Result<ValueKind, String> {
    let shown = if secret { MASK } else { s };
    match kind {
        Kind::Bool => parse_bool(s).map(ValueKind::Boolean).ok_or_else(|| format!("invalid boolean {shown:?}")),
        Kind::Int { min, max } => parse_int(s, min, max, shown),
        Kind::Float { min, max } => parse_float(s, min, max, shown),
        Kind::Str | Kind::MultiStr => Ok(ValueKind::String(s.to_owned())),
        Kind::Choice(choices) if choices.contains(&s) => Ok(ValueKind::String(s.to_owned())),
        Kind::Choice(choices) => Err(format!("invalid value {shown:?}, valid values are: {}", choices.join(", "))),
        Kind::List => Ok(strings(parse_list(s).into_iter())),
    }
}

/// oslo Boolean.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.to_lowercase().as_str() {
        "true" | "1" | "on" | "yes" => Some(true),
        "false" | "0" | "off" | "no" => Some(false),
        _ => None,
    }
}

fn parse_int(s: &str, min: Option<i64>, max: Option<i64>, shown: &str) -> Result<ValueKind, String> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(ValueKind::Nil);
    }
    let n: i64 = t.parse().map_err(|_| format!("invalid integer {shown:?}"))?;
    if let Some(min) = min.filter(|m| n < *m) {
        return Err(format!("{n} is less than the minimum {min}"));
    }
    if let Some(max) = max.filter(|m| n > *m) {
        return Err(format!("{n} is greater than the maximum {max}"));
    }
    Ok(ValueKind::I64(n))
}

fn parse_float(s: &str, min: Option<f64>, max: Option<f64>, shown: &str) -> Result<ValueKind, String> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(ValueKind::Nil);
    }
    let n: f64 = t.parse().map_err(|_| format!("invalid float {shown:?}"))?;
    if let Some(min) = min.filter(|m| n < *m) {
        return Err(format!("{n} is less than the minimum {min}"));
    }
    if let Some(max) = max.filter(|m| n > *m) {
        return Err(format!("{n} is greater than the maximum {max}"));
    }
    Ok(ValueKind::Float(n))
}

/// oslo List of String: strip, drop trailing commas, split, trim items.
pub fn parse_list(s: &str) -> Vec<String> {
    let s = s.trim().trim_end_matches(',');
    if s.is_empty() {
        return Vec::new();
    }
    s.split(',').map(|item| item.trim().to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bool_spellings() {
        for t in ["true", "TRUE", "Yes", "on", "1"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["false", "No", "OFF", "0"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        assert_eq!(parse_bool("y"), None);
        assert_eq!(parse_bool(""), None);
    }

    #[test]
    fn int_bounds_and_empty() {
        assert!(matches!(parse_int(" 42 ", None, None, ""), Ok(ValueKind::I64(42))));
        assert!(matches!(parse_int("", None, None, ""), Ok(ValueKind::Nil)));
        assert!(parse_int("-1", Some(0), None, "").is_err());
        assert!(parse_int("ten", None, None, "ten").unwrap_err().contains("\"ten\""));
    }

    #[test]
    fn list_items_trimmed() {
        assert_eq!(parse_list(" a , b,c,, "), ["a", "b", "c"]);
        assert!(parse_list("  ").is_empty());
    }
}
