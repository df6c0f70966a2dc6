//! `ds01 top`: the live view of who uses what (`--once --plain` for scripts).

use super::{CliError, CliResult};
use crate::top::{self, Reader, SortKey, Sources, View, Viewer};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Time between frames: 1s, 500ms, 2s; a bare number is seconds.
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = crate::timespec::parse_duration)]
    pub interval: Duration,
    /// Print one frame and exit (CPU figures over the first half second).
    #[arg(long)]
    pub once: bool,
    /// With --once: plain text, no colours (for scripts and logs).
    #[arg(long, requires = "once")]
    pub plain: bool,
    /// Sort by: user, memory, cpu, pressure, tasks, ooms, gpu (GPU memory).
    #[arg(long, default_value = "memory", value_parser = SortKey::parse)]
    pub sort: SortKey,
    /// Show only users or groups whose name contains this.
    #[arg(long, default_value = "")]
    pub filter: String,
    /// Expand these users into their containers (admins; comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub expand: Vec<String>,
    /// Columns for --once (default: the terminal's, else 120).
    #[arg(long, hide_short_help = true)]
    pub width: Option<usize>,
    /// The ds01.slice cgroup directory.
    #[arg(long, env = "DS01_CGROUP_ROOT", value_name = "DIR")]
    pub cgroup_root: Option<PathBuf>,
    /// Event log, for OOM kills of the last 24 h [default: $DS01_EVENTS_LOG, else /var/log/ds01/events.jsonl]
    #[arg(long, value_name = "FILE")]
    pub events_log: Option<PathBuf>,
    /// Where the monitor keeps gpu.json.
    #[arg(long, env = "DS01_STATE_DIR", default_value = crate::collect::DEFAULT_STATE_DIR, value_name = "DIR", hide_short_help = true)]
    pub state_dir: PathBuf,
    #[command(flatten)]
    pub proc: super::ProcRoot,
    /// Docker's data root, read for container names.
    #[arg(long, env = "DS01_DOCKER_ROOT", default_value = crate::collect::DEFAULT_DOCKER_ROOT, value_name = "DIR", hide_short_help = true)]
    pub docker_root: PathBuf,
}

pub fn run(a: TopArgs, config: &std::path::Path) -> CliResult {
    let me = crate::docker::identity::current().map_err(CliError::Runtime)?;
    let cfg = crate::config::load(config).config;
    let admin = crate::docker::is_admin(cfg.as_ref(), me.uid, &me.name, &me.groups);
    let mut view = View::new(Viewer {
        admin,
        user: crate::naming::sanitize_user(&me.name),
    });
    view.sort = a.sort;
    view.filter = a.filter.clone();
    if admin {
        view.expanded.extend(a.expand.iter().cloned());
    }
    // Eight kernel files per user are kept open between frames.
    crate::cgroup::raise_fd_limit();
    let mut reader = Reader::new(Sources {
        cgroup_root: a
            .cgroup_root
            .clone()
            .unwrap_or_else(crate::paths::cgroup_root),
        events_log: crate::events::EventLog::from_env_or(a.events_log.as_deref()).path,
        docker_root: a.docker_root.clone(),
        proc_root: PathBuf::from("/proc"),
        systemctl: Some(std::env::var("DS01_SYSTEMCTL").unwrap_or_else(|_| "systemctl".into())),
    });
    let sampler = crate::gpu::Sampler::open(
        crate::lifecycle::source::sockets_for(None, admin),
        a.proc.proc_root.clone(),
    );
    if sampler.unavailable().is_none() {
        reader.gpu = Some(sampler);
        reader.gpu_state = Some(a.state_dir.clone());
    }
    if a.once {
        reader.detail = Some(view.expanded.clone());
        reader.read(std::time::Instant::now());
        std::thread::sleep(a.interval.min(Duration::from_millis(500)));
        let frame = reader.read(std::time::Instant::now());
        let width = a.width.unwrap_or_else(|| {
            ratatui::crossterm::terminal::size().map_or(120, |(w, _)| w as usize)
        });
        out!("{}", top::render_plain(&frame, &view, width));
        return Ok(());
    }
    let opts = top::tui::Opts {
        interval: a.interval,
        color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    };
    top::tui::run(&mut reader, &mut view, &opts)
        .map_err(|e| CliError::Runtime(format!("ds01 top: {e}")))
}
