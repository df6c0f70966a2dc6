//! `ds01 demo`: the main job on an embedded demo config, in a scratch directory, so
//! a fresh checkout shows what ds01 does without touching the system.

use super::{CliError, CliResult};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to write the demo config, its fake cgroup tree, scratch systemd dir and
    /// logs [default: a new directory under $TMPDIR]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Generate this many users (80 % students, 20 % researchers) instead of the
    /// handful in the demo config; for benchmarks.
    #[arg(long, value_name = "N")]
    pub users: Option<usize>,
    /// Also write an event log of this many generated events (for benchmarks).
    #[arg(long, value_name = "N")]
    pub events: Option<usize>,
    /// Also write a fake cgroup tree of this many user slices (for benchmarks).
    #[arg(long, value_name = "N")]
    pub slices: Option<usize>,
    /// Also write a generated stats history: N users, one sample a minute for
    /// --history-days days (for benchmarks and plots).
    #[arg(long, value_name = "N")]
    pub history_users: Option<usize>,
    /// Also write a generated GPU host of N GPUs with 25 processes each (a
    /// snapshot for DS01_GPU_SNAPSHOT and its /proc for DS01_PROC_ROOT; for
    /// benchmarks).
    #[arg(long, value_name = "N")]
    pub gpus: Option<u32>,
    /// Days of generated stats history.
    #[arg(long, value_name = "DAYS", default_value_t = 7)]
    pub history_days: usize,
    /// Only write the files and print their paths, one a line, in this order: the
    /// config, then the event log, the cgroup tree, the stats history and the GPU
    /// directory when asked for; run nothing.
    #[arg(long)]
    pub write_only: bool,
}

pub fn run(args: DemoArgs) -> CliResult {
    let dir = match args.dir {
        Some(d) => d,
        None => {
            let stamp = jiff::Timestamp::now().as_second();
            std::env::temp_dir().join(format!("ds01-demo-{}-{stamp}", std::process::id()))
        }
    };
    let etc = dir.join("etc");
    let written = match args.users {
        Some(n) => crate::demo::write_generated(&etc, n),
        None => crate::demo::write_demo(&etc),
    };
    let cfg_path = written.map_err(|e| {
        CliError::Runtime(format!("cannot write the demo into {}: {e}", dir.display()))
    })?;
    let events = dir.join("log/events.jsonl");
    if let Some(n) = args.events {
        crate::demo::write_events(&events, n, jiff::Timestamp::now())
            .map_err(|e| CliError::Runtime(format!("cannot write {}: {e}", events.display())))?;
    }
    let cgroot = dir.join("cgroup/ds01.slice");
    if let Some(n) = args.slices {
        crate::demo::write_fake_tree(&cgroot, n)
            .map_err(|e| CliError::Runtime(format!("cannot write {}: {e}", cgroot.display())))?;
    }
    let history = dir.join("log/history/resource-stats.log");
    if let Some(n) = args.history_users {
        crate::demo::write_stats_history(
            &history,
            n,
            args.history_days * 24 * 60,
            jiff::Timestamp::now(),
        )
        .map_err(|e| CliError::Runtime(format!("cannot write {}: {e}", history.display())))?;
    }
    let gpu_dir = dir.join("gpu");
    if let Some(n) = args.gpus {
        crate::demo::write_gpu_fixture(&gpu_dir, n, n * 25)
            .map_err(|e| CliError::Runtime(format!("cannot write {}: {e}", gpu_dir.display())))?;
    }
    if args.write_only {
        outln!("{}", cfg_path.display());
        if args.events.is_some() {
            outln!("{}", events.display());
        }
        if args.slices.is_some() {
            outln!("{}", cgroot.display());
        }
        if args.history_users.is_some() {
            outln!("{}", history.display());
        }
        if args.gpus.is_some() {
            outln!("{}", gpu_dir.display());
        }
        return Ok(());
    }
    outln!("== ds01 demo in {}", dir.display());
    outln!("\n$ ds01 --config {} config check", cfg_path.display());
    super::config_cmd::run(
        super::config_cmd::ConfigCmd::Check(super::config_cmd::CheckArgs {
            json: false,
            quiet: false,
        }),
        &cfg_path,
    )?;
    for user in ["alice", "h.baker@uni.example", "root_admin", "newcomer"] {
        outln!("\n$ ds01 limits {user}");
        super::limits::run(limits_args(user, false), &cfg_path)?;
        outln!("\n$ ds01 limits {user} --aggregate");
        super::limits::run(limits_args(user, true), &cfg_path)?;
    }
    let sd = dir.join("systemd");
    let common = super::slices_cmd::Common {
        systemd_dir: sd.clone(),
        user: None,
        cgroup_root: Some(dir.join("cgroup")),
    };
    outln!(
        "\n$ ds01 slices apply --systemd-dir {} --no-reload",
        sd.display()
    );
    super::slices_cmd::run(
        super::slices_cmd::SlicesCmd::Apply(super::slices_cmd::ApplyArgs {
            common: common.clone(),
            no_reload: true,
            dry_run: false,
        }),
        &cfg_path,
    )?;
    let dropin = sd.join(crate::slices::dropin_rel("ds01-student-alice.slice"));
    outln!("\n$ cat {}", dropin.display());
    out!("{}", std::fs::read_to_string(&dropin).unwrap_or_default());
    outln!("\n$ ds01 slices plan --systemd-dir {}", sd.display());
    super::slices_cmd::run(
        super::slices_cmd::SlicesCmd::Plan(super::slices_cmd::PlanArgs {
            common,
            exit_code: false,
        }),
        &cfg_path,
    )?;
    // A fake cgroup tree stands in for the kernel: the demo users' slices, as
    // /sys/fs/cgroup/ds01.slice would show them once containers run.
    let cg = dir.join("cgroup/ds01.slice");
    let log = dir.join("log");
    let mut slices: Vec<crate::demo::FakeSlice> = [
        ("student", "alice"),
        ("student", "bob"),
        ("researcher", "h_baker"),
    ]
    .iter()
    .map(|(g, u)| crate::demo::FakeSlice::new(g, u))
    .collect();
    slices[0].containers = vec![("a1".repeat(32), 0)];
    let write_tree = |slices: &[crate::demo::FakeSlice]| -> CliResult {
        for s in slices {
            s.write(&cg).map_err(|e| {
                CliError::Runtime(format!("cannot write the demo cgroup tree: {e}"))
            })?;
        }
        Ok(())
    };
    write_tree(&slices)?;
    let collect = || {
        super::collect_cmd::run(
            super::collect_cmd::CollectArgs {
                verbose: true,
                cgroup_root: Some(cg.clone()),
                stats_log: log.join("resource-stats.log"),
                state_dir: dir.join("state"),
                events_log: Some(log.join("events.jsonl")),
                docker_root: dir.join("docker"),
                no_gpu: true,
                proc: super::ProcRoot {
                    proc_root: PathBuf::from("/proc"),
                },
            },
            &cfg_path,
        )
    };
    outln!("\n$ ds01 collect --verbose   # first pass: the OOM baseline");
    collect()?;
    slices[0].oom_kill = 2;
    slices[0].containers = vec![("a1".repeat(32), 2)];
    write_tree(&slices)?;
    outln!("\n# ... the kernel OOM-kills two processes in alice's container ...");
    outln!("$ ds01 collect --verbose");
    collect()?;
    outln!("\n$ tail -n 3 {}", log.join("resource-stats.log").display());
    let stats = std::fs::read_to_string(log.join("resource-stats.log")).unwrap_or_default();
    for l in stats
        .lines()
        .rev()
        .take(3)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        outln!("{l}");
    }
    outln!("\n$ ds01 events --user alice");
    let status = std::process::Command::new(
        std::env::current_exe().map_err(|e| CliError::Runtime(e.to_string()))?,
    )
    .args(["events", "--user", "alice", "--file"])
    .arg(log.join("events.jsonl"))
    .status()
    .map_err(|e| CliError::Runtime(e.to_string()))?;
    if !status.success() {
        return Err(CliError::Exit(1));
    }
    outln!(
        "\nEverything above lives in {}; nothing outside it was touched.",
        dir.display()
    );
    Ok(())
}

fn limits_args(user: &str, aggregate: bool) -> super::limits::LimitsArgs {
    super::limits::LimitsArgs {
        user: user.into(),
        json: false,
        aggregate,
        group: false,
        docker_args: false,
        max_gpus: false,
        max_containers: false,
    }
}
