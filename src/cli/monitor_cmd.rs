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
    /// Seconds between full passes (stats lines, OOM check of every slice, alerts).
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub interval: u64,
    /// Seconds between rescans of the tree for slices that appeared or went away.
    #[arg(long, default_value_t = 2, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..), hide_short_help = true)]
    pub rescan: u64,
    /// The directory of per-user alert files read by the greeting.
    #[arg(long, env = "DS01_ALERTS_DIR", default_value = super::greet_cmd::DEFAULT_ALERTS_DIR, value_name = "DIR")]
    pub alerts_dir: PathBuf,
    /// Serve Prometheus metrics on http://ADDR/metrics (and /healthz), e.g.
    /// 127.0.0.1:9101. Off by default.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
}

pub fn run(a: MonitorArgs, config: &std::path::Path) -> CliResult {
    let opts = MonitorOpts {
        paths: super::collect_cmd::paths(&a.collect),
        interval: Duration::from_secs(a.interval),
        rescan: Duration::from_secs(a.rescan),
        alerts_dir: a.alerts_dir,
        verbose: a.collect.verbose,
        config: Some(config.to_path_buf()),
        listen: a.listen,
    };
    monitor::install_signal_handlers();
    monitor::run(&opts).map_err(CliError::Runtime)
}
