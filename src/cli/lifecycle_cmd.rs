//! `ds01 lifecycle`: one lifecycle pass (cron), or `--dry-run` to see what would
//! happen to every container and why.

use super::{CliError, CliResult};
use crate::lifecycle::{self, Paths, Runner};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct LifecycleArgs {
    /// Decide and report only: warn nobody, stop and remove nothing, keep the
    /// state as it is.
    #[arg(long)]
    pub dry_run: bool,
    /// The report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The ds01.slice cgroup directory (container scopes' cpu.stat).
    #[arg(long, env = "DS01_CGROUP_ROOT", value_name = "DIR")]
    pub cgroup_root: Option<PathBuf>,
    /// Where the idle streaks and warnings sent are kept (lifecycle.json), and the
    /// last good config.
    #[arg(long, env = "DS01_STATE_DIR", default_value = crate::collect::DEFAULT_STATE_DIR, value_name = "DIR")]
    pub state_dir: PathBuf,
    /// The directory of per-user alert files read by the greeting.
    #[arg(long, env = "DS01_ALERTS_DIR", default_value = super::greet_cmd::DEFAULT_ALERTS_DIR, value_name = "DIR")]
    pub alerts_dir: PathBuf,
    /// Event log [default: $DS01_EVENTS_LOG, else /var/log/ds01/events.jsonl]
    #[arg(long, value_name = "FILE")]
    pub events_log: Option<PathBuf>,
    /// The Docker daemon's socket [default: /run/docker-engine.sock when the proxy
    /// is on, else $DOCKER_HOST or /var/run/docker.sock]
    #[arg(long, value_name = "PATH")]
    pub docker_socket: Option<PathBuf>,
    #[command(flatten)]
    pub proc: super::ProcRoot,
}

pub fn paths(a: &LifecycleArgs) -> Paths {
    Paths {
        cgroup_root: a
            .cgroup_root
            .clone()
            .unwrap_or_else(crate::paths::cgroup_root),
        proc_root: a.proc.proc_root.clone(),
        state_dir: a.state_dir.clone(),
        alerts_dir: a.alerts_dir.clone(),
        events: crate::events::EventLog::from_env_or(a.events_log.as_deref()),
    }
}

pub fn run(a: LifecycleArgs, config: &std::path::Path) -> CliResult {
    let me = crate::docker::identity::current().map_err(CliError::Runtime)?;
    let enforced = crate::config::last_good::load_enforced(config, &a.state_dir);
    let Some(cfg) = enforced.config else {
        return Err(super::load_valid_config(config).err().unwrap_or_else(|| {
            CliError::Runtime(format!("{}: no usable config", config.display()))
        }));
    };
    if enforced.from_snapshot {
        eprintln!(
            "warning: {} has errors (see ds01 config check); using the last config that loaded cleanly",
            config.display()
        );
    }
    let admin = crate::docker::is_admin(Some(&cfg), me.uid, &me.name, &me.groups);
    if !admin && !a.dry_run {
        return Err(CliError::Usage(
            "only an admin acts on containers; see yours with `ds01 lifecycle --dry-run`".into(),
        ));
    }
    let sockets = crate::lifecycle::source::sockets_for(a.docker_socket.as_deref(), admin);
    let mut runner = Runner::new(paths(&a), sockets);
    let mut out = runner.run(&cfg, a.dry_run, jiff::Timestamp::now());
    if !admin {
        let mine = crate::naming::sanitize_user(&me.name);
        out.rows.retain(|r| r.user == mine || r.user == me.name);
    }
    if a.json {
        let v = serde_json::to_string_pretty(&out).map_err(|e| CliError::Runtime(e.to_string()))?;
        outln!("{v}");
    } else {
        out!("{}", lifecycle::render(&out, a.dry_run));
    }
    if out.errors.is_empty() {
        Ok(())
    } else {
        if a.json {
            for e in &out.errors {
                eprintln!("error: {e}");
            }
        }
        Err(CliError::Exit(1))
    }
}
