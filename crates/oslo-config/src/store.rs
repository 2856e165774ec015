//! Raw values of all parsed files, merged the way oslo merges them.
//!
//! oslo keeps one dict per file and asks the newest file first. For a
//! single-valued option the answer is the last occurrence in the newest file
//! that has it; for a MultiStrOpt it is every occurrence, oldest file first.
//! Appending every assignment in read order gives exactly both answers
//! (last element / all elements), so one list per key is enough. The file
//! index is kept because oslo prefers an option's current name over its
//! deprecated names within the same file, whatever their line order.

use std::collections::HashMap;

use crate::error::Origin;
use crate::ini::Assignment;

/// One raw value as written in a file.
#[derive(Clone, Debug)]
pub struct RawValue {
    /// The value after INI processing, before substitution.
    pub value: String,
    /// Where it was written.
    pub origin: Origin,
    /// Index of the file in read order.
    pub file_index: usize,
}

/// All raw values, keyed by (normalised group, option name).
#[derive(Clone, Debug, Default)]
pub struct Store {
    values: HashMap<(String, String), Vec<RawValue>>,
    files: usize,
}

impl Store {
    /// Adds one file's assignments; later files override earlier ones.
    pub fn add_file(&mut self, assignments: Vec<Assignment>) {
        let file_index = self.files;
        self.files += 1;
        for a in assignments {
            self.values.entry((a.group, a.key)).or_default().push(RawValue {
                value: a.value,
                origin: a.origin,
                file_index,
            });
        }
    }

    /// Every value of one (group, name), in read order.
    pub fn get(&self, group: &str, name: &str) -> &[RawValue] {
        self.values.get(&(group.to_owned(), name.to_owned())).map_or(&[], Vec::as_slice)
    }

    /// Values of an option under its current name and its deprecated names:
    /// for a multi-valued option all of them in read order, otherwise the
    /// winning one only.
    pub fn lookup(&self, names: &[(&str, &str)], multi: bool) -> Vec<&RawValue> {
        // Rank: newer file first, then the earlier name in `names`.
        let mut found: Vec<(usize, &RawValue)> = Vec::new();
        for (rank, (group, name)) in names.iter().enumerate() {
            found.extend(self.get(group, name).iter().map(|v| (rank, v)));
        }
        if multi {
            found.sort_by_key(|(rank, v)| (v.file_index, *rank));
            return found.into_iter().map(|(_, v)| v).collect();
        }
        let newest = found.iter().map(|(_, v)| v.file_index).max();
        let best_rank = found.iter().filter(|(_, v)| Some(v.file_index) == newest).map(|(rank, _)| *rank).min();
        found
            .into_iter()
            .rev()
            .find(|(rank, v)| Some(v.file_index) == newest && Some(*rank) == best_rank)
            .map(|(_, v)| v)
            .into_iter()
            .collect()
    }
}
