//! The oslo.config INI dialect, line by line.
//!
//! This is not the INI of Python's configparser or of rust-ini; oslo has its
//! own parser (oslo_config/iniparser.py) and nova.conf files in the field
//! rely on its quirks:
//!
//! - the key ends at the first `=` or `:`, whichever comes first;
//! - one level of matching `'...'` or `"..."` around the value is stripped;
//! - a line starting with a space or tab continues the previous value
//!   (parts joined with `\n`); a blank line ends it;
//! - `#` and `;` start a comment only in column 0, so `a = b # c` is `b # c`;
//! - no escapes: backslashes are literal;
//! - a key repeated in a group keeps every value (multi-valued options);
//! - a section may appear many times; its keys accumulate;
//! - group names are lower-cased, except `DEFAULT` which must be exactly
//!   that (`[default]` is another, unknown group);
//! - option names are case-sensitive and taken verbatim.

use std::path::Path;

use crate::error::{ConfigError, Origin};

/// The one group name oslo does not lower-case.
pub const DEFAULT_GROUP: &str = "DEFAULT";

/// One `key = value` with its normalised group and where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// Group name after oslo's normalisation.
    pub group: String,
    /// Option name, verbatim (trimmed).
    pub key: String,
    /// Value after quote stripping and continuation joining.
    pub value: String,
    /// File and line of the key.
    pub origin: Origin,
}

/// oslo lower-cases group names so `[Libvirt]` is `[libvirt]`, but leaves
/// `DEFAULT` alone (and so does not lower-case its lookups either).
pub fn normalize_group(name: &str) -> String {
    if name == DEFAULT_GROUP {
        name.to_owned()
    } else {
        name.to_lowercase()
    }
}

/// An assignment whose value may still grow by continuation lines.
struct Pending {
    key: String,
    parts: Vec<String>,
    line: usize,
}

/// Parses one file's text; `file` is used for origins and errors only.
pub fn parse(text: &str, file: &Path) -> Result<Vec<Assignment>, ConfigError> {
    let mut out = Vec::new();
    let mut section: Option<String> = None;
    let mut pending: Option<Pending> = None;
    let error = |line: usize, message: &'static str, text: &str| ConfigError::Parse {
        file: file.to_path_buf(),
        line,
        message,
        text: text.to_owned(),
    };

    for (index, raw) in text.lines().enumerate() {
        let lineno = index + 1;
        let line = raw.trim_end();
        if line.is_empty() {
            flush(&mut pending, &section, file, &mut out)?;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // Indented: always a continuation, even if it looks like a
            // comment or a key; oslo has no indented keys.
            match pending.as_mut() {
                Some(p) => p.parts.push(line.trim_start().to_owned()),
                None => return Err(error(lineno, "unexpected continuation line", raw)),
            }
            continue;
        }
        flush(&mut pending, &section, file, &mut out)?;
        if line.starts_with('[') {
            section = Some(section_name(line).map_err(|m| error(lineno, m, raw))?);
        } else if line.starts_with(['#', ';']) {
            continue;
        } else {
            let (key, value) = split_key_value(line).map_err(|m| error(lineno, m, raw))?;
            if section.is_none() {
                return Err(error(lineno, "section must be started before assignment", raw));
            }
            pending = Some(Pending { key, parts: vec![value], line: lineno });
        }
    }
    flush(&mut pending, &section, file, &mut out)?;
    Ok(out)
}

/// Emits the pending assignment, if any.
fn flush(
    pending: &mut Option<Pending>,
    section: &Option<String>,
    file: &Path,
    out: &mut Vec<Assignment>,
) -> Result<(), ConfigError> {
    let Some(p) = pending.take() else {
        return Ok(());
    };
    // `parse` refuses keys before a section, so a pending key has one.
    let group = section.as_deref().map(normalize_group).unwrap_or_default();
    out.push(Assignment {
        group,
        key: p.key,
        value: p.parts.join("\n"),
        origin: Origin { file: file.to_path_buf(), line: p.line },
    });
    Ok(())
}

/// `[name]` → `name`, verbatim (oslo does not trim inside the brackets).
fn section_name(line: &str) -> Result<String, &'static str> {
    if !line.ends_with(']') {
        return Err("invalid section (must end with ])");
    }
    if line.len() <= 2 {
        return Err("empty section name");
    }
    Ok(line[1..line.len() - 1].to_owned())
}

/// Splits at the first `=` or `:` and strips one level of matching quotes.
fn split_key_value(line: &str) -> Result<(String, String), &'static str> {
    let at = line.find(['=', ':']).ok_or("no ':' or '=' found in assignment")?;
    let key = line[..at].trim();
    if key.is_empty() {
        return Err("key cannot be empty");
    }
    Ok((key.to_owned(), strip_quotes(line[at + 1..].trim()).to_owned()))
}

/// Removes one pair of matching quotes. Like oslo, a lone `"` counts as a
/// matching pair around nothing.
fn strip_quotes(value: &str) -> &str {
    let quoted = (value.starts_with('"') && value.ends_with('"')) || (value.starts_with('\'') && value.ends_with('\''));
    match (quoted, value.len()) {
        (false, _) => value,
        (true, 1) => "",
        (true, n) => &value[1..n - 1],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Assignment {
        let mut all = parse(text, Path::new("t.conf")).unwrap();
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    #[test]
    fn first_separator_wins() {
        assert_eq!(one("[DEFAULT]\na = b:c\n").value, "b:c");
        let a = one("[DEFAULT]\nurl: http://x=y\n");
        assert_eq!((a.key.as_str(), a.value.as_str()), ("url", "http://x=y"));
    }

    #[test]
    fn quotes_stripped_once_and_only_when_matching() {
        assert_eq!(one("[g]\na = \"'x'\"\n").value, "'x'");
        assert_eq!(one("[g]\na = 'x\"\n").value, "'x\"");
        assert_eq!(one("[g]\na = \"\"\n").value, "");
        assert_eq!(one("[g]\na = \"\n").value, "");
    }

    #[test]
    fn continuation_joins_with_newline_and_blank_line_ends_it() {
        let all = parse("[g]\na = one\n  two\n\tthree\n\n[h]\nb = x\n", Path::new("t")).unwrap();
        assert_eq!(all[0].value, "one\ntwo\nthree");
        assert_eq!(all[0].origin.line, 2);
        assert_eq!(all[1].value, "x");
    }

    #[test]
    fn comments_only_in_column_zero() {
        assert_eq!(one("[g]\n# c\n; c\na = b # c ; d\n").value, "b # c ; d");
        // An indented '#' is a continuation, as in oslo.
        assert_eq!(one("[g]\na = b\n  # c\n").value, "b\n# c");
    }

    #[test]
    fn group_names_lowercased_except_default() {
        let all = parse("[Libvirt]\na=1\n[default]\nb=2\n[DEFAULT]\nc=3\n", Path::new("t")).unwrap();
        let groups: Vec<_> = all.iter().map(|a| a.group.as_str()).collect();
        assert_eq!(groups, ["libvirt", "default", "DEFAULT"]);
    }

    #[test]
    fn errors_name_file_and_line() {
        let err = parse("[g]\nnovalue\n", Path::new("/x.conf")).unwrap_err().to_string();
        assert_eq!(err, "/x.conf:2: no ':' or '=' found in assignment: \"novalue\"");
        let err = parse("a = b\n", Path::new("/x.conf")).unwrap_err().to_string();
        assert!(err.starts_with("/x.conf:1: section must be started"), "{err}");
        let err = parse("  a\n", Path::new("/x.conf")).unwrap_err().to_string();
        assert!(err.contains("unexpected continuation"), "{err}");
        assert!(parse("[g\n", Path::new("t")).is_err());
        assert!(parse("[]\n", Path::new("t")).is_err());
        assert!(parse("[g]\n = v\n", Path::new("t")).is_err());
    }
}
