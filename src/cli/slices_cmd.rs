//! `ds01 slices plan|apply`.

use super::{CliError, CliResult, load_valid_config};
use crate::slices::{self, Desired, Plan};
use crate::units::format_human_bytes;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Subcommand)]
pub enum SlicesCmd {
    /// Show, as a unified diff, every file apply would create, change or remove.
    Plan(PlanArgs),
    /// Write the slice units and drop-ins atomically; reload systemd if anything changed.
    Apply(ApplyArgs),
}

#[derive(Debug, Args, Clone)]
pub struct Common {
    /// systemd unit directory.
    #[arg(long, env = "DS01_SYSTEMD_DIR", default_value = crate::paths::SYSTEMD_DIR, value_name = "DIR")]
    pub systemd_dir: PathBuf,
    /// Only this user's slice and drop-in; nothing is removed.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// The ds01.slice cgroup directory, read to warn when a limit drops below current
    /// use [default: /sys/fs/cgroup/ds01.slice, or .../unified/ds01.slice on hybrid hosts]
    #[arg(long, env = "DS01_CGROUP_ROOT", value_name = "DIR")]
    pub cgroup_root: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub common: Common,
    /// Exit 1 when there are changes (for scripts and CI).
    #[arg(long)]
    pub exit_code: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub common: Common,
    /// Do not run `systemctl daemon-reload` after changing files.
    #[arg(long)]
    pub no_reload: bool,
    /// Only show the plan (same as `ds01 slices plan`).
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(cmd: SlicesCmd, config: &Path) -> CliResult {
    match cmd {
        SlicesCmd::Plan(a) => plan_cmd(&a.common, config, a.exit_code),
        SlicesCmd::Apply(a) if a.dry_run => plan_cmd(&a.common, config, false),
        SlicesCmd::Apply(a) => apply_cmd(a, config),
    }
}

struct Prepared {
    plan: Plan,
    users: Vec<crate::config::Resolved>,
    cfg: crate::config::Config,
}

fn prepare(c: &Common, config: &Path) -> Result<Prepared, CliError> {
    let cfg = load_valid_config(config)?;
    let (desired, users): (Desired, _) = match &c.user {
        Some(u) => {
            let r = cfg.resolve(u);
            if r.slice_user.is_empty() {
                return Err(CliError::Usage(format!("{u:?} is not a usable user name")));
            }
            (slices::desired_user(&cfg, &r), vec![r])
        }
        None => (slices::desired_all(&cfg), cfg.all_users()),
    };
    let plan =
        slices::plan(&c.systemd_dir, &desired).map_err(|e| CliError::Runtime(e.to_string()))?;
    Ok(Prepared { plan, users, cfg })
}

fn notes(p: &Prepared, c: &Common) -> CliResult {
    if !p.cfg.enforcement.aggregate_limits {
        outln!(
            "note: enforcement.aggregate_limits is false: limits are lifted (ds01's drop-ins removed), slices kept"
        );
    }
    for f in &p.plan.foreign {
        outln!(
            "note: {} is not managed by ds01 (no marker line); left alone",
            c.systemd_dir.join(f).display()
        );
    }
    if !p.plan.stale_tmp.is_empty() {
        outln!(
            "note: {} temporary file(s) from an interrupted apply will be removed",
            p.plan.stale_tmp.len()
        );
    }
    let root = c
        .cgroup_root
        .clone()
        .unwrap_or_else(crate::paths::cgroup_root);
    for (user, cur, max) in slices::lowered_below_usage(&p.cfg, &p.users, &root) {
        eprintln!(
            "warning: {user} uses {}, new MemoryMax is {} (the kernel may OOM-kill their processes)",
            format_human_bytes(cur),
            format_human_bytes(max)
        );
    }
    Ok(())
}

fn plan_cmd(c: &Common, config: &Path, exit_code: bool) -> CliResult {
    let p = prepare(c, config)?;
    notes(&p, c)?;
    out!("{}", p.plan.diff(&c.systemd_dir));
    outln!("{}", p.plan.summary());
    if exit_code && !p.plan.is_empty() {
        return Err(CliError::Exit(1));
    }
    Ok(())
}

fn apply_cmd(a: ApplyArgs, config: &Path) -> CliResult {
    let c = &a.common;
    let p = prepare(c, config)?;
    notes(&p, c)?;
    if p.plan.is_empty() {
        outln!("nothing to do: {}", p.plan.summary());
        return Ok(());
    }
    for ch in &p.plan.changes {
        let verb = match ch.action {
            slices::Action::Create { .. } => "create",
            slices::Action::Change { .. } => "change",
            slices::Action::Remove { .. } => "remove",
        };
        outln!("{verb:<7} {}", c.systemd_dir.join(&ch.rel).display());
    }
    slices::apply(&c.systemd_dir, &p.plan).map_err(|e| CliError::Runtime(e.to_string()))?;
    outln!("applied: {}", p.plan.summary());
    if a.no_reload || p.plan.changes.is_empty() {
        return Ok(());
    }
    daemon_reload()
}

/// `systemctl daemon-reload`, once. Its failure is reported with systemd's own
/// message; the files stay as written.
fn daemon_reload() -> CliResult {
    let systemctl = std::env::var_os("DS01_SYSTEMCTL").unwrap_or_else(|| "systemctl".into());
    match Command::new(&systemctl).arg("daemon-reload").output() {
        Ok(out) if out.status.success() => {
            outln!("systemctl daemon-reload: ok");
            Ok(())
        }
        Ok(out) => Err(CliError::Runtime(format!(
            "the files were written, but `systemctl daemon-reload` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
        Err(e) => Err(CliError::Runtime(format!(
            "the files were written, but `{} daemon-reload` could not run: {e}",
            Path::new(&systemctl).display()
        ))),
    }
}
