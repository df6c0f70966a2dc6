//! `ds01 proxy`: serve the Docker API socket and enforce placement, quotas and
//! ownership for every client.

use super::{CliError, CliResult};
use crate::proxy::{self, Options};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// The socket clients use (ignored when systemd passes one: socket activation).
    #[arg(long, default_value = proxy::DEFAULT_LISTEN, value_name = "PATH")]
    pub listen: PathBuf,
    /// The real daemon's socket (root-only).
    #[arg(long, env = "DS01_DOCKER_UPSTREAM", default_value = proxy::DEFAULT_UPSTREAM, value_name = "PATH")]
    pub upstream: PathBuf,
    /// The group given the listening socket when ds01 binds it itself (mode 0660).
    #[arg(long, default_value = "docker", value_name = "GROUP")]
    pub socket_group: String,
    /// Where the last good config is kept.
    #[arg(long, env = "DS01_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The event log.
    #[arg(long, env = "DS01_EVENTS_LOG", value_name = "PATH")]
    pub events_log: Option<PathBuf>,
    /// The cgroup root usage is read from (ds01.slice's parent).
    #[arg(long, env = "DS01_CGROUP_ROOT", value_name = "DIR")]
    pub cgroup_root: Option<PathBuf>,
    /// Seconds between looks at the config files for changes.
    #[arg(long, default_value_t = 2, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub reload: u64,
}

pub fn run(a: ProxyArgs, config: &std::path::Path) -> CliResult {
    let opts = Options {
        upstream: a.upstream,
        config: config.to_path_buf(),
        state_dir: a.state_dir.unwrap_or_else(crate::paths::state_dir),
        cgroup_root: a.cgroup_root.unwrap_or_else(crate::paths::cgroup_root),
        events: crate::events::EventLog::from_env_or(a.events_log.as_deref()),
        reload_every: Duration::from_secs(a.reload),
    };
    proxy::run(opts, &a.listen, Some(&a.socket_group))
        .map_err(|e| CliError::Runtime(format!("ds01 proxy: {e}")))
}
