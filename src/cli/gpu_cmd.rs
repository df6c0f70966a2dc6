//! `ds01 gpu`: the GPUs, who holds them, what runs on them (`--json`), or a raw
//! recorded sample (`--snapshot`).

use super::{CliError, CliResult};
use crate::gpu::{self, report};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct GpuArgs {
    /// The report as JSON.
    #[arg(long, conflicts_with = "snapshot")]
    pub json: bool,
    /// Print what the driver reports now as a snapshot (JSON) that
    /// DS01_GPU_SNAPSHOT=file replays, with what /proc says of each process.
    #[arg(long)]
    pub snapshot: bool,
    /// Where the monitor keeps gpu.json (the devices' idle history).
    #[arg(long, env = "DS01_STATE_DIR", default_value = crate::collect::DEFAULT_STATE_DIR, value_name = "DIR")]
    pub state_dir: PathBuf,
    /// The Docker daemon's socket [default: the engine's socket for admins, else
    /// $DOCKER_HOST or /var/run/docker.sock]
    #[arg(long, value_name = "PATH")]
    pub docker_socket: Option<PathBuf>,
    #[command(flatten)]
    pub proc: super::ProcRoot,
}

pub fn run(a: GpuArgs, config: &std::path::Path) -> CliResult {
    let me = crate::docker::identity::current().map_err(CliError::Runtime)?;
    let cfg = crate::config::last_good::load_enforced(config, &a.state_dir).config;
    let admin = crate::docker::is_admin(cfg.as_ref(), me.uid, &me.name, &me.groups);
    let sockets = crate::lifecycle::source::sockets_for(a.docker_socket.as_deref(), admin);
    let mut sampler = gpu::Sampler::open(sockets, a.proc.proc_root.clone());
    if a.snapshot {
        if !admin {
            return Err(CliError::Usage(
                "only an admin records snapshots: they name every user's processes and containers"
                    .into(),
            ));
        }
        let mut s = sampler.snapshot().map_err(CliError::Runtime)?;
        gpu::record_proc(&mut s, &a.proc.proc_root);
        let text =
            serde_json::to_string_pretty(&s).map_err(|e| CliError::Runtime(e.to_string()))?;
        outln!("{text}");
        return Ok(());
    }
    if let Some(why) = sampler.unavailable() {
        if sampler.no_gpus {
            if a.json {
                outln!(
                    "{}",
                    serde_json::json!({"devices": [], "users": {}, "reason": why})
                );
            } else {
                outln!("no GPUs: {why}");
            }
            return Ok(());
        }
        return Err(CliError::Runtime(format!("cannot read the GPUs: {why}")));
    }
    let now = jiff::Timestamp::now();
    let last = report::load_fresh(&a.state_dir, now);
    if let Some(l) = &last {
        sampler.idle = l.idle_state.clone();
    }
    let mut r = sampler
        .report(cfg.as_ref(), now)
        .map_err(CliError::Runtime)?;
    if let Some(l) = &last {
        r.merge_holders(l);
    }
    let me_sanitized = crate::naming::sanitize_user(&me.name);
    let shown = if admin {
        r
    } else {
        r.for_viewer(&me_sanitized)
    };
    if a.json {
        let text =
            serde_json::to_string_pretty(&shown).map_err(|e| CliError::Runtime(e.to_string()))?;
        outln!("{text}");
    } else {
        out!("{}", report::render(&shown));
    }
    Ok(())
}
