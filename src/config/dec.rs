//! The small decoder the sections decoded outside load.rs share
//! (`container_security`, `policies` / `container_types`): errors and warnings with
//! file:line, mappings, booleans, unknown keys with did-you-mean.

use super::diag::{Diagnostics, did_you_mean};
use super::yaml::{Node, Scalar};
use std::path::Path;

pub(super) struct Dec<'a> {
    pub file: &'a Path,
    pub diags: &'a mut Diagnostics,
}

impl Dec<'_> {
    pub fn error(&mut self, line: usize, key: &str, msg: impl Into<String>) {
        self.diags.error(self.file, Some(line), key, msg);
    }

    /// An unknown key: a warning (ignored), with the closest known key.
    pub fn unknown(&mut self, line: usize, key: &str, name: &str, known: &[&str]) {
        let hint = did_you_mean(name, known)
            .map(|s| format!(" (did you mean {s:?}?)"))
            .unwrap_or_default();
        self.diags.warning(
            self.file,
            Some(line),
            key,
            format!("unknown key, ignored{hint}"),
        );
    }

    /// A mapping (`null` = empty); anything else is an error.
    pub fn map<'n>(&mut self, v: &'n Node, key: &str) -> Option<&'n [(Node, Node)]> {
        if v.is_null() {
            return Some(&[]);
        }
        let m = v.as_map();
        if m.is_none() {
            self.error(
                v.line,
                key,
                format!("expected a mapping, found {}", v.describe()),
            );
        }
        m
    }

    pub fn bool(&mut self, v: &Node, key: &str) -> Option<bool> {
        match v.scalar() {
            Some(Scalar::Bool(b)) => Some(b),
            _ => {
                self.error(
                    v.line,
                    key,
                    format!("expected true or false, found {}", v.describe()),
                );
                None
            }
        }
    }
}
