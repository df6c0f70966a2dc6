//! `ds01 monitor`: the long-running collector with sub-second OOM detection.

use super::{CliError, CliResult};
use crate::monitor::{self, MonitorOpts};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct MonitorArgs {
    #[command(flatten)]
    pub collect: super::collect_cmd::CollectArgs,
    /// Time between full passes (stats lines, OOM check of every slice, alerts,
    /// lifecycle): 60s, 1m, 500ms; a bare number is seconds.
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = crate::timespec::parse_duration)]
    pub interval: Duration,
    /// Time between rescans of the tree for slices that appeared or went away.
    #[arg(long, default_value = "2s", value_name = "DURATION", value_parser = crate::timespec::parse_duration, hide_short_help = true)]
    pub rescan: Duration,
    /// Do not enforce the container lifecycle (idle and runtime limits); `ds01
    /// lifecycle` from cron can do it instead.
    #[arg(long)]
    pub no_lifecycle: bool,
    /// The Docker daemon's socket, for lifecycle [default: /run/docker-engine.sock
    /// when the proxy is on, else $DOCKER_HOST or /var/run/docker.sock]
    #[arg(long, value_name = "PATH")]
    pub docker_socket: Option<PathBuf>,
    /// The directory of per-user alert files read by the greeting.
    #[arg(long, env = "DS01_ALERTS_DIR", default_value = super::greet_cmd::DEFAULT_ALERTS_DIR, value_name = "DIR")]
    pub alerts_dir: PathBuf,
    /// Serve Prometheus metrics on http://ADDR/metrics (and /healthz), e.g.
    /// 127.0.0.1:9101. Off by default.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Sample the GPUs this often (who holds which, memory, utilisation, idle
    /// time); --no-gpu turns it off.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = crate::timespec::parse_duration)]
    pub gpu_interval: Duration,
}

pub fn run(a: MonitorArgs, config: &std::path::Path) -> CliResult {
    let opts = MonitorOpts {
        paths: super::collect_cmd::paths(&a.collect),
        interval: a.interval,
        rescan: a.rescan,
        lifecycle: (!a.no_lifecycle).then(|| crate::lifecycle::Paths {
            cgroup_root: a
                .collect
                .cgroup_root
                .clone()
                .unwrap_or_else(crate::paths::cgroup_root),
            proc_root: a.collect.proc.proc_root.clone(),
            state_dir: a.collect.state_dir.clone(),
            alerts_dir: a.alerts_dir.clone(),
            events: crate::events::EventLog::from_env_or(a.collect.events_log.as_deref()),
        }),
        docker_socket: a.docker_socket,
        alerts_dir: a.alerts_dir,
        verbose: a.collect.verbose,
        config: Some(config.to_path_buf()),
        listen: a.listen,
        gpu_interval: (!a.collect.no_gpu).then_some(a.gpu_interval),
        proc_root: a.collect.proc.proc_root.clone(),
    };
    monitor::install_signal_handlers();
    monitor::run(&opts).map_err(CliError::Runtime)
}
