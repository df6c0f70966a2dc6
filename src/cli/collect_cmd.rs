//! `ds01 collect`: one pass, for cron or a systemd timer.

use super::{CliError, CliResult};
use crate::collect::{self, CollectPaths};
use crate::events::EventLog;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct CollectArgs {
    /// Name what is skipped and summarize each slice.
    #[arg(long, short)]
    pub verbose: bool,
    /// The ds01.slice cgroup directory [default: /sys/fs/cgroup/ds01.slice, or
    /// /sys/fs/cgroup/unified/ds01.slice on hybrid hosts]
    #[arg(long, env = "DS01_CGROUP_ROOT", value_name = "DIR")]
    pub cgroup_root: Option<PathBuf>,
    /// Stats log (JSONL, one line per user slice per pass).
    #[arg(long, env = "DS01_STATS_LOG", default_value = collect::DEFAULT_STATS_LOG, value_name = "FILE")]
    pub stats_log: PathBuf,
    /// Directory of the OOM state (oom-counts.json).
    #[arg(long, env = "DS01_STATE_DIR", default_value = collect::DEFAULT_STATE_DIR, value_name = "DIR")]
    pub state_dir: PathBuf,
    /// Event log [default: $DS01_EVENTS_LOG, else /var/log/ds01/events.jsonl]
    #[arg(long, value_name = "FILE")]
    pub events_log: Option<PathBuf>,
    /// Docker's data root, read for container names.
    #[arg(long, env = "DS01_DOCKER_ROOT", default_value = collect::DEFAULT_DOCKER_ROOT, value_name = "DIR", hide_short_help = true)]
    pub docker_root: PathBuf,
    /// Do not sample the GPUs (per-user GPU fields in the stats lines, gpu.json).
    #[arg(long)]
    pub no_gpu: bool,
    #[command(flatten)]
    pub proc: super::ProcRoot,
}

pub fn paths(a: &CollectArgs) -> CollectPaths {
    CollectPaths {
        cgroup_root: a
            .cgroup_root
            .clone()
            .unwrap_or_else(crate::paths::cgroup_root),
        stats_log: a.stats_log.clone(),
        state_dir: a.state_dir.clone(),
        events: EventLog::from_env_or(a.events_log.as_deref()),
        docker_root: a.docker_root.clone(),
    }
}

pub fn run(a: CollectArgs, config: &std::path::Path) -> CliResult {
    let p = paths(&a);
    let now = jiff::Timestamp::now();
    let mut gpu_errors = Vec::new();
    let gpu = if a.no_gpu {
        None
    } else {
        let cfg = crate::config::last_good::load_enforced(config, &a.state_dir).config;
        let mut sampler = crate::gpu::Sampler::open(
            crate::lifecycle::source::default_sockets(),
            a.proc.proc_root.clone(),
        );
        match sampler.report_and_save(cfg.as_ref(), &a.state_dir, now) {
            Ok((r, saved)) => {
                gpu_errors.extend(saved);
                Some(r)
            }
            Err(_) if sampler.no_gpus => None,
            Err(e) => {
                gpu_errors.push(format!("GPUs: {e}"));
                None
            }
        }
    };
    let (mut rep, _) = collect::run_pass_with_stats(&p, now, gpu.as_ref());
    rep.errors.extend(gpu_errors);
    if a.verbose {
        for s in &rep.skipped {
            outln!("skipped (not a ds01 slice): {}", s.display());
        }
        outln!(
            "collected {} user slice(s) from {} into {}",
            rep.slices,
            p.cgroup_root.display(),
            p.stats_log.display()
        );
    }
    rep.print(a.verbose);
    if rep.errors.is_empty() {
        Ok(())
    } else {
        Err(CliError::Exit(1))
    }
}
