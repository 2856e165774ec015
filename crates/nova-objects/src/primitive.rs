//! The `nova_object.*` primitive: how oslo.versionedobjects puts an object on
//! the wire.
//!
//! A primitive received from nova-api or the conductor is kept verbatim —
//! fields this service never reads, nested objects and their versions travel
//! back untouched — so the conductor sees exactly what Python nova-compute
//! would have sent. Only the fields we change are rewritten, and they are
//! listed in `nova_object.changes`.

use serde_json::{Map, Value};

use crate::error::ObjectError;

const NAME: &str = "nova_object.name";
const NAMESPACE: &str = "nova_object.namespace";
const VERSION: &str = "nova_object.version";
const DATA: &str = "nova_object.data";
const CHANGES: &str = "nova_object.changes";

/// A versioned object primitive, with change tracking.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectPrimitive {
    name: String,
    namespace: String,
    version: String,
    data: Map<String, Value>,
    /// Fields changed since the object was last saved, in first-change order.
    changes: Vec<String>,
    /// Any other top-level keys (none today); kept so nothing is lost.
    extra: Map<String, Value>,
}

impl ObjectPrimitive {
    /// A new object of `name` at `version`, with no fields set.
    pub fn new(name: &str, version: &str) -> Self {
        ObjectPrimitive {
            name: name.to_owned(),
            namespace: "nova".to_owned(),
            version: version.to_owned(),
            data: Map::new(),
            changes: Vec::new(),
            extra: Map::new(),
        }
    }

    /// Decodes a primitive; `expected` names the object class the caller needs.
    pub fn from_value(value: &Value, expected: &str) -> Result<Self, ObjectError> {
        let obj = value.as_object().ok_or_else(|| ObjectError::Malformed(format!("{expected}: not a JSON object")))?;
        let text = |key: &str| -> Result<String, ObjectError> {
            obj.get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| ObjectError::Malformed(format!("{expected}: missing {key}")))
        };
        let name = text(NAME)?;
        if name != expected {
            return Err(ObjectError::Malformed(format!("expected a {expected} object, got {name}")));
        }
        let data = match obj.get(DATA) {
            Some(Value::Object(map)) => map.clone(),
            _ => return Err(ObjectError::Malformed(format!("{expected}: missing {DATA}"))),
        };
        let changes = match obj.get(CHANGES) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            Some(_) => return Err(ObjectError::Malformed(format!("{expected}: {CHANGES} is not a list"))),
        };
        let extra = obj
            .iter()
            .filter(|(k, _)| ![NAME, NAMESPACE, VERSION, DATA, CHANGES].contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(ObjectPrimitive { name, namespace: text(NAMESPACE)?, version: text(VERSION)?, data, changes, extra })
    }

    /// The primitive as oslo.versionedobjects serializes it. `nova_object.changes`
    /// is present only when something changed, as in Python.
    pub fn to_value(&self) -> Value {
        let mut obj = self.extra.clone();
        obj.insert(NAME.into(), Value::String(self.name.clone()));
        obj.insert(NAMESPACE.into(), Value::String(self.namespace.clone()));
        obj.insert(VERSION.into(), Value::String(self.version.clone()));
        obj.insert(DATA.into(), Value::Object(self.data.clone()));
        if !self.changes.is_empty() {
            let changes = self.changes.iter().cloned().map(Value::String).collect();
            obj.insert(CHANGES.into(), Value::Array(changes));
        }
        Value::Object(obj)
    }

    /// `nova_object.name`, the object class.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `nova_object.version`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// A field's value; `None` when the field is not set (absent from data).
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.data.get(field)
    }

    /// A string field; `None` when unset or null.
    pub fn get_str(&self, field: &str) -> Option<&str> {
        self.data.get(field).and_then(Value::as_str)
    }

    /// Whether the field is present in `nova_object.data` (null counts as set).
    pub fn is_set(&self, field: &str) -> bool {
        self.data.contains_key(field)
    }

    /// Sets a field and records it as changed.
    pub fn set(&mut self, field: &str, value: Value) {
        self.data.insert(field.to_owned(), value);
        if !self.changes.iter().any(|c| c == field) {
            self.changes.push(field.to_owned());
        }
    }

    /// The fields set since the last reset: `nova_object.changes`, what a save sends.
    pub fn changes(&self) -> &[String] {
        &self.changes
    }

    /// `obj_reset_changes()`: forget the changes (after a save, or for a payload).
    pub fn obj_reset_changes(&mut self) {
        self.changes.clear();
    }

    /// Applies the `updates` map a conductor `object_action` returns: each
    /// field takes the conductor's value, and the change list becomes
    /// `obj_what_changed` (what the conductor itself left unsaved).
    pub fn apply_updates(&mut self, updates: &Value) -> Result<(), ObjectError> {
        let updates = updates
            .as_object()
            .ok_or_else(|| ObjectError::Malformed("object_action updates is not a JSON object".into()))?;
        let mut still_changed = Vec::new();
        for (field, value) in updates {
            if field == "obj_what_changed" {
                still_changed =
                    value.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect();
            } else {
                self.data.insert(field.clone(), value.clone());
            }
        }
        self.changes = still_changed;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service() -> Value {
        json!({
            "nova_object.name": "Service", "nova_object.namespace": "nova",
            "nova_object.version": "1.22",
            "nova_object.data": {"id": 2, "host": "cmp1", "report_count": 1, "unknown_future_field": [1, 2]},
        })
    }

    #[test]
    fn round_trip_keeps_unknown_fields_and_omits_empty_changes() {
        let p = ObjectPrimitive::from_value(&service(), "Service").unwrap();
        assert_eq!(p.to_value(), service());
    }

    #[test]
    fn set_records_each_change_once() {
        let mut p = ObjectPrimitive::from_value(&service(), "Service").unwrap();
        p.set("report_count", json!(2));
        p.set("report_count", json!(3));
        assert_eq!(p.changes(), ["report_count"]);
        assert_eq!(p.to_value()["nova_object.changes"], json!(["report_count"]));
    }

    #[test]
    fn wrong_class_is_refused() {
        let err = ObjectPrimitive::from_value(&service(), "Instance").unwrap_err();
        assert!(err.to_string().contains("expected a Instance object, got Service"), "{err}");
    }

    #[test]
    fn updates_replace_fields_and_reset_changes() {
        let mut p = ObjectPrimitive::from_value(&service(), "Service").unwrap();
        p.set("report_count", json!(2));
        p.apply_updates(&json!({"last_seen_up": "2026-11-22T13:45:03Z", "obj_what_changed": []})).unwrap();
        assert_eq!(p.get_str("last_seen_up"), Some("2026-11-22T13:45:03Z"));
        assert!(p.changes().is_empty());
    }
}
