//! `ds01 check`: the whole-chain integration checks.

use super::{CliError, CliResult};
use crate::check::{self, CheckEnv, Status};
use crate::docker::engine::Engine;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Image for the throw-away container of the memory-enforcement check (skipped
    /// without one).
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Exercise this user [default: the first configured user with an aggregate].
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Run one check only.
    #[arg(long, value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(check::NAMES))]
    pub only: Option<String>,
    /// Results as JSON.
    #[arg(long)]
    pub json: bool,
    #[arg(
        long,
        env = "DS01_CGROUP_ROOT",
        value_name = "DIR",
        hide_short_help = true
    )]
    pub cgroup_root: Option<PathBuf>,
    #[arg(long, env = "DS01_SYSTEMD_DIR", default_value = crate::paths::SYSTEMD_DIR, value_name = "DIR", hide_short_help = true)]
    pub systemd_dir: PathBuf,
    #[arg(long, env = "DS01_EVENTS_LOG", default_value = crate::events::DEFAULT_LOG, value_name = "FILE", hide_short_help = true)]
    pub events_log: PathBuf,
    #[arg(long, env = "DS01_STATS_LOG", default_value = crate::collect::DEFAULT_STATS_LOG, value_name = "FILE", hide_short_help = true)]
    pub stats_log: PathBuf,
    #[arg(long, env = "DS01_ALERTS_DIR", default_value = super::greet_cmd::DEFAULT_ALERTS_DIR, value_name = "DIR", hide_short_help = true)]
    pub alerts_dir: PathBuf,
    #[arg(
        long,
        default_value = "/etc/cron.d/ds01-resource-monitor",
        value_name = "FILE",
        hide_short_help = true
    )]
    pub cron_file: PathBuf,
}

pub fn run(a: CheckArgs, config: &Path) -> CliResult {
    let env = CheckEnv {
        config: config.to_path_buf(),
        cgroup_root: a
            .cgroup_root
            .clone()
            .unwrap_or_else(crate::paths::cgroup_root),
        systemd_dir: a.systemd_dir.clone(),
        engine: Engine::from_env(),
        real_docker: super::docker_cmd::real_docker(),
        events_log: a.events_log.clone(),
        stats_log: a.stats_log.clone(),
        alerts_dir: a.alerts_dir.clone(),
        cron_file: a.cron_file.clone(),
        systemctl: std::env::var("DS01_SYSTEMCTL").unwrap_or_else(|_| "systemctl".into()),
        image: a.image.clone(),
        user: a.user.clone(),
        proxy_upstream: std::env::var_os("DS01_DOCKER_UPSTREAM").map_or_else(
            || PathBuf::from(crate::proxy::DEFAULT_UPSTREAM),
            PathBuf::from,
        ),
        state_dir: crate::paths::state_dir(),
    };
    let results = check::run(&env, a.only.as_deref());
    let count = |s: Status| results.iter().filter(|r| r.status == s).count();
    let (passed, failed, skipped) = (
        count(Status::Pass),
        count(Status::Fail),
        count(Status::Skip),
    );
    if a.json {
        let v = serde_json::json!({
            "results": results,
            "passed": passed, "failed": failed, "skipped": skipped, "total": results.len(),
        });
        outln!("{v:#}");
    } else {
        for r in &results {
            let status = match r.status {
                Status::Pass => "[PASS]",
                Status::Fail => "[FAIL]",
                Status::Skip => "[SKIP]",
            };
            let tags: String = r.tags.iter().map(|t| format!(" [{t}]")).collect();
            outln!("{status}{tags} {} - {}", r.name, r.detail);
        }
        outln!(
            "Results: {passed}/{} passed, {failed} failed, {skipped} skipped",
            results.len()
        );
    }
    if failed > 0 {
        Err(CliError::Exit(1))
    } else if skipped == results.len() {
        Err(CliError::Exit(2))
    } else {
        Ok(())
    }
}
