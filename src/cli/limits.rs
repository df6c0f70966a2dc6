//! `ds01 limits USER`.

use super::{CliResult, load_valid_config};
use crate::config::model::limit_text_f64;
use crate::config::{Membership, Resolved};
use crate::units::{Limit, format_docker_size, format_number, format_systemd_size};
use clap::{ArgGroup, Args};
use std::path::Path;

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("form").multiple(false)))]
pub struct LimitsArgs {
    /// The user (login name; resolved as configured, else the default group).
    pub user: String,
    /// Everything as one JSON object.
    #[arg(long, group = "form")]
    pub json: bool,
    /// The aggregate limits as JSON (`cpu_quota`, `memory_max`, `memory_high`,
    /// `tasks_max`, `gpu_limit`), or `null` when the user is unlimited.
    #[arg(long, group = "form")]
    pub aggregate: bool,
    /// The user's group name.
    #[arg(long, group = "form")]
    pub group: bool,
    /// The per-container defaults and slice as `docker run` flags.
    #[arg(long, group = "form")]
    pub docker_args: bool,
    /// The GPU quota in GPU-equivalents, or `unlimited`.
    #[arg(long, group = "form")]
    pub max_gpus: bool,
    /// The number of containers the user may run at once, or `unlimited`.
    #[arg(long, group = "form")]
    pub max_containers: bool,
}

pub fn run(args: LimitsArgs, config: &Path) -> CliResult {
    let cfg = load_valid_config(config)?;
    let r = cfg.resolve(&args.user);
    if r.slice_user.is_empty() {
        return Err(super::CliError::Usage(format!(
            "{:?} is not a usable user name (nothing is left after sanitizing it)",
            args.user
        )));
    }
    let out = if args.json {
        format!("{:#}", r.to_json())
    } else if args.aggregate {
        match r.aggregate.as_ref().filter(|a| !a.is_unlimited()) {
            Some(a) => a.to_json().to_string(),
            None => "null".into(),
        }
    } else if args.group {
        r.group.clone()
    } else if args.docker_args {
        r.docker_args().join(" ")
    } else if args.max_gpus {
        unlimited_or(
            r.limits
                .max_gpu_equivalents
                .and_then(Limit::value)
                .map(format_number),
        )
    } else if args.max_containers {
        unlimited_or(
            r.limits
                .max_containers_per_user
                .and_then(Limit::value)
                .map(|n| n.to_string()),
        )
    } else {
        human(&r)
    };
    outln!("{out}");
    Ok(())
}

fn unlimited_or(v: Option<String>) -> String {
    v.unwrap_or_else(|| "unlimited".into())
}

fn size_text(v: Option<Limit<u64>>) -> String {
    match v {
        None => "not set".into(),
        Some(Limit::Max) => "unlimited".into(),
        Some(Limit::Value(b)) => format_docker_size(b),
    }
}

fn int_text(v: Option<Limit<u64>>) -> String {
    match v {
        None => "not set".into(),
        Some(Limit::Max) => "unlimited".into(),
        Some(Limit::Value(n)) => n.to_string(),
    }
}

fn hours_text(v: Option<Limit<f64>>) -> String {
    match v {
        Some(Limit::Value(h)) => format!("{} h", format_number(h)),
        Some(Limit::Max) => "none".into(),
        None => "not set".into(),
    }
}

/// The readable summary.
pub fn human(r: &Resolved) -> String {
    let l = &r.limits;
    let mut s = String::new();
    let mut row = |k: &str, v: String| s.push_str(&format!("  {k:<22}{v}\n"));
    let via = match &r.membership {
        Membership::Member(m) => format!("member, {}:{}", m.file.display(), m.line),
        Membership::Default => "not listed in any group: default group".into(),
    };
    row("User", r.user.clone());
    row("Group", format!("{} ({via})", r.group));
    row("Slice", r.slice());
    row(
        "Override",
        r.override_key
            .as_ref()
            .map_or("none".into(), |k| format!("user_overrides.{k}")),
    );
    s.push_str("Per container\n");
    let mut row = |k: &str, v: String| s.push_str(&format!("  {k:<22}{v}\n"));
    row("CPUs", limit_text_f64(l.max_cpus));
    row("Memory", size_text(l.memory));
    row("Memory + swap", size_text(l.memory_swap));
    row("Shared memory", size_text(l.shm_size));
    row("Processes", int_text(l.pids_limit));
    row("GPUs", int_text(l.max_gpu_slots_per_container));
    row(
        "Full GPU allowed",
        l.allow_full_gpu
            .map_or("not set".into(), |b| if b { "yes" } else { "no" }.into()),
    );
    s.push_str("Aggregate (all containers together)\n");
    let mut row = |k: &str, v: String| s.push_str(&format!("  {k:<22}{v}\n"));
    match r.aggregate.as_ref().filter(|a| !a.is_unlimited()) {
        None => row("Limits", "unlimited (no aggregate)".into()),
        Some(a) => {
            let q = match a.cpu_quota {
                Some(Limit::Value(q)) => format!("{q} ({} CPUs)", format_number(q.cpus())),
                Some(Limit::Max) => "unlimited".into(),
                None => "not set".into(),
            };
            row("CPU quota", q);
            let sz = |v: Option<Limit<u64>>| match v {
                None => "not set".to_string(),
                Some(x) => format_systemd_size(x),
            };
            row("Memory max", sz(a.memory_max));
            row("Memory high", sz(a.memory_high));
            row("Tasks", int_text(a.tasks_max));
            row("GPU-equivalents", limit_text_f64(a.gpu_limit));
        }
    }
    row("GPU quota", limit_text_f64(l.max_gpu_equivalents));
    row("Containers at once", int_text(l.max_containers_per_user));
    row("Tasks (slice)", int_text(l.max_tasks));
    s.push_str("Lifecycle\n");
    let mut row = |k: &str, v: String| s.push_str(&format!("  {k:<22}{v}\n"));
    row("Max runtime", hours_text(l.max_runtime_h));
    row("Idle timeout", hours_text(l.idle_timeout_h));
    row("GPU held after stop", hours_text(l.gpu_hold_after_stop_h));
    row(
        "Removed after stop",
        hours_text(l.container_hold_after_stop_h),
    );
    s.trim_end().to_string()
}
