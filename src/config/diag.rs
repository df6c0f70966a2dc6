//! Config diagnostics: every problem found in one run, each with file, line and key path.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    /// 1-based line; `None` when the problem is about a whole file.
    pub line: Option<usize>,
    /// Dotted key path such as `groups.student.aggregate.memory_high`; may be empty.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    /// `error: resource-limits.yaml:42: groups.student.aggregate.memory_high: "86X" is not a size`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}: {}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.key, self.message)
        }
    }
}

/// Collects diagnostics for one file at a time.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(
        &mut self,
        severity: Severity,
        file: &Path,
        line: Option<usize>,
        key: &str,
        message: impl Into<String>,
    ) {
        self.items.push(Diagnostic {
            severity,
            file: file.to_path_buf(),
            line,
            key: key.to_string(),
            message: message.into(),
        });
    }

    pub fn error(&mut self, file: &Path, line: Option<usize>, key: &str, msg: impl Into<String>) {
        self.push(Severity::Error, file, line, key, msg);
    }

    pub fn warning(&mut self, file: &Path, line: Option<usize>, key: &str, msg: impl Into<String>) {
        self.push(Severity::Warning, file, line, key, msg);
    }

    /// The first error, in file/line order once sorted.
    pub fn first_error(&self) -> Option<&Diagnostic> {
        self.items.iter().find(|d| d.severity == Severity::Error)
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.items.iter().filter(|d| d.severity == severity).count()
    }

    /// Order by file, then line, errors before warnings on the same line.
    pub fn sort(&mut self) {
        self.items
            .sort_by(|a, b| (&a.file, a.line, a.severity).cmp(&(&b.file, b.line, b.severity)));
    }
}

/// The closest known key to `unknown`, if it is close enough to be a typo.
pub fn did_you_mean<'a>(unknown: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(unknown, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 5) && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let known = ["memory", "memory_swap", "max_cpus"];
        assert_eq!(did_you_mean("memroy", &known), Some("memory"));
        assert_eq!(did_you_mean("max_cpu", &known), Some("max_cpus"));
        assert_eq!(did_you_mean("colour", &known), None);
    }

    #[test]
    fn display_format() {
        let d = Diagnostic {
            severity: Severity::Error,
            file: "resource-limits.yaml".into(),
            line: Some(42),
            key: "groups.student.aggregate.memory_high".into(),
            message: "\"86X\" is not a size".into(),
        };
        assert_eq!(
            d.to_string(),
            "error: resource-limits.yaml:42: groups.student.aggregate.memory_high: \"86X\" is not a size"
        );
    }
}
