//! `ds01 config check`.

use super::{CliError, CliResult};
use crate::config::{Severity, load};
use clap::{Args, Subcommand};
use std::path::Path;

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Load the config, member files and overrides; print every error and warning.
    ///
    /// Exit 0 when there are no errors (warnings allowed), 2 otherwise.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Print the diagnostics as a JSON array.
    #[arg(long)]
    pub json: bool,
    /// Print errors only.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(cmd: ConfigCmd, path: &Path) -> CliResult {
    match cmd {
        ConfigCmd::Check(a) => check(a, path),
    }
}

fn check(args: CheckArgs, path: &Path) -> CliResult {
    let loaded = load(path);
    let diags = &loaded.diagnostics;
    let errors = diags.count(Severity::Error);
    let warnings = diags.count(Severity::Warning);
    if args.json {
        let v = serde_json::json!({
            "config": path.display().to_string(),
            "ok": errors == 0,
            "errors": errors,
            "warnings": warnings,
            "diagnostics": diags.items,
        });
        outln!("{v:#}");
    } else {
        for d in &diags.items {
            if !(args.quiet && d.severity == Severity::Warning) {
                outln!("{d}");
            }
        }
        let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
        if errors > 0 {
            outln!(
                "{}: {}, {}",
                path.display(),
                plural(errors, "error"),
                plural(warnings, "warning")
            );
        } else if let Some(cfg) = &loaded.config {
            let users = cfg.all_users();
            let limited = users
                .iter()
                .filter(|u| u.aggregate.as_ref().is_some_and(|a| !a.is_unlimited()))
                .count();
            outln!(
                "{}: OK — {}, {} ({} with aggregate limits), {}, {}",
                path.display(),
                plural(cfg.groups.len(), "group"),
                plural(users.len(), "user"),
                limited,
                plural(cfg.overrides.len(), "override"),
                plural(warnings, "warning"),
            );
        }
    }
    if errors > 0 {
        Err(CliError::Exit(2))
    } else {
        Ok(())
    }
}
