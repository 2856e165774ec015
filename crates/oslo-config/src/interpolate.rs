//! `$var` substitution, as oslo's `ConfigOpts._substitute` does it.
//!
//! - `$name` and `${name}` refer to an option of the same group, falling back
//!   to `[DEFAULT]`; `$group.name` to an option of another group.
//! - Names match `[_a-zA-Z][._a-zA-Z0-9]*` (Python's string.Template with
//!   oslo's idpattern; the first `.` splits group from option).
//! - `$$` is a literal `$`; so is `\$` (oslo rewrites it to `$$`). Any other
//!   `$` not followed by a name stays as it is (safe_substitute).
//! - Referenced options resolve to their own (substituted) value from the
//!   files, or their default; unset is the empty string.
//! - Referring to an option that is not registered is an error, as oslo's
//!   NoSuchOptError. Only registered options are ever substituted, so a
//!   `$my_ip` in a group we do not read is never looked at, just as oslo
//!   substitutes lazily on access.

use std::collections::HashMap;

use crate::error::{ConfigError, Origin};
use crate::ini::{normalize_group, DEFAULT_GROUP};
use crate::options::{self, DefaultValue, Kind, OptSpec};
use crate::store::Store;

/// Values the defaults need from the environment.
#[derive(Clone, Debug)]
pub struct Environment {
    /// `socket.gethostname()`.
    pub hostname: String,
    /// Program name (`nova-compute`).
    pub program: String,
}

/// A raw value and where it came from (`None`: a default).
type Located = (String, Option<Origin>);

/// Resolves options' raw strings with substitution, memoised, cycle-safe.
pub struct Resolver<'a> {
    store: &'a Store,
    env: &'a Environment,
    done: HashMap<(&'static str, &'static str), Vec<Located>>,
    in_progress: Vec<(&'static str, &'static str)>,
}

impl<'a> Resolver<'a> {
    /// A resolver over the merged files.
    pub fn new(store: &'a Store, env: &'a Environment) -> Self {
        Self { store, env, done: HashMap::new(), in_progress: Vec::new() }
    }

    /// The substituted raw values of an option (several only for MultiStrOpt).
    pub fn resolve(&mut self, spec: &'static OptSpec) -> Result<Vec<Located>, ConfigError> {
        let key = (spec.group, spec.name);
        if let Some(v) = self.done.get(&key) {
            return Ok(v.clone());
        }
        self.in_progress.push(key);
        let result = self
            .raw(spec)
            .into_iter()
            .map(|(text, origin)| {
                let value = self.substitute(&text, spec, &origin)?;
                Ok((value, origin))
            })
            .collect::<Result<Vec<_>, ConfigError>>();
        self.in_progress.pop();
        let values = result?;
        self.done.insert(key, values.clone());
        Ok(values)
    }

    /// Values from the files (current name, then deprecated names) or the default.
    fn raw(&self, spec: &OptSpec) -> Vec<Located> {
        let group = normalize_group(spec.group);
        let mut names: Vec<(String, &str)> = vec![(group, spec.name)];
        names.extend(spec.deprecated.iter().map(|(g, n)| (normalize_group(g), *n)));
        let names: Vec<(&str, &str)> = names.iter().map(|(g, n)| (g.as_str(), *n)).collect();
        let multi = spec.kind == Kind::MultiStr;
        let found = self.store.lookup(&names, multi);
        if !found.is_empty() {
            return found.into_iter().map(|v| (v.value.clone(), Some(v.origin.clone()))).collect();
        }
        match spec.default {
            DefaultValue::Unset => Vec::new(),
            DefaultValue::Literal(s) => vec![(s.to_owned(), None)],
            DefaultValue::Hostname => vec![(self.env.hostname.clone(), None)],
            DefaultValue::ProgramName => vec![(self.env.program.clone(), None)],
        }
    }

    /// Replaces every reference in `text`, which is a value of `spec`.
    fn substitute(
        &mut self,
        text: &str,
        spec: &'static OptSpec,
        origin: &Option<Origin>,
    ) -> Result<String, ConfigError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(pos) = rest.find(['$', '\\']) {
            out.push_str(&rest[..pos]);
            let tail = &rest[pos..];
            if let Some(after) = tail.strip_prefix("\\$").or_else(|| tail.strip_prefix("$$")) {
                out.push('$');
                rest = after;
            } else if let Some(after) = tail.strip_prefix('\\') {
                // A backslash not before `$` is literal: oslo has no escapes.
                out.push('\\');
                rest = after;
            } else if let Some((reference, after)) = parse_reference(&tail[1..]) {
                let value = self.lookup(reference, spec, origin)?;
                out.push_str(&value);
                rest = after;
            } else {
                out.push('$');
                rest = &tail[1..];
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The value a reference stands for: the referenced option's last value.
    fn lookup(
        &mut self,
        reference: &str,
        from: &'static OptSpec,
        origin: &Option<Origin>,
    ) -> Result<String, ConfigError> {
        let fail = |reason| ConfigError::Interpolation {
            origin: origin.clone(),
            group: from.group,
            option: from.name,
            reference: reference.to_owned(),
            reason,
        };
        let target = match reference.split_once('.') {
            Some((group, name)) => options::find(group, name),
            None => options::find(from.group, reference).or_else(|| options::find(DEFAULT_GROUP, reference)),
        }
        .ok_or_else(|| fail("no such option"))?;
        if self.in_progress.contains(&(target.group, target.name)) {
            return Err(fail("the references form a cycle"));
        }
        let values = self.resolve(target)?;
        // A list is substituted by its last value, like a normal option.
        Ok(values.last().map(|(v, _)| v.clone()).unwrap_or_default())
    }
}

/// Parses a name after `$`: `name`, `group.name` or `{...}`; returns it and
/// the text after it.
fn parse_reference(s: &str) -> Option<(&str, &str)> {
    if let Some(inner) = s.strip_prefix('{') {
        let end = inner.find('}')?;
        let name = &inner[..end];
        return is_identifier(name).then(|| (name, &inner[end + 1..]));
    }
    let len = identifier_len(s);
    (len > 0).then(|| s.split_at(len))
}

fn identifier_len(s: &str) -> usize {
    let mut chars = s.char_indices();
    match chars.next() {
        Some((_, c)) if c == '_' || c.is_ascii_alphabetic() => {}
        _ => return 0,
    }
    chars.find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '.')).map_or(s.len(), |(i, _)| i)
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && identifier_len(s) == s.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_syntax() {
        assert_eq!(parse_reference("state_path/x"), Some(("state_path", "/x")));
        assert_eq!(parse_reference("{state_path}x"), Some(("state_path", "x")));
        assert_eq!(parse_reference("libvirt.virt_type-"), Some(("libvirt.virt_type", "-")));
        assert_eq!(parse_reference("1abc"), None);
        assert_eq!(parse_reference("{unclosed"), None);
        assert_eq!(parse_reference("{a b}"), None);
    }
}
