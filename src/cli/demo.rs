//! `ds01 demo`: the main job on an embedded demo config, in a scratch directory, so
//! a fresh checkout shows what ds01 does without touching the system.

use super::{CliError, CliResult};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to write the demo config (and, later, its fake cgroup tree and logs)
    /// [default: a new directory under $TMPDIR]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Generate this many users (80 % students, 20 % researchers) instead of the
    /// handful in the demo config; for benchmarks.
    #[arg(long, value_name = "N")]
    pub users: Option<usize>,
    /// Also write an event log of this many generated events (for benchmarks);
    /// printed as the second line with --write-only.
    #[arg(long, value_name = "N")]
    pub events: Option<usize>,
    /// Only write the files and print their paths; run nothing.
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
    if args.write_only {
        println!("{}", cfg_path.display());
        if args.events.is_some() {
            println!("{}", events.display());
        }
        return Ok(());
    }
    println!("== ds01 demo in {}", dir.display());
    println!("\n$ ds01 --config {} config check", cfg_path.display());
    super::config_cmd::run(
        super::config_cmd::ConfigCmd::Check(super::config_cmd::CheckArgs {
            json: false,
            quiet: false,
        }),
        &cfg_path,
    )?;
    for user in ["alice", "h.baker@uni.example", "root_admin", "newcomer"] {
        println!("\n$ ds01 limits {user}");
        super::limits::run(limits_args(user, false), &cfg_path)?;
        println!("\n$ ds01 limits {user} --aggregate");
        super::limits::run(limits_args(user, true), &cfg_path)?;
    }
    let sd = dir.join("systemd");
    let common = super::slices_cmd::Common {
        systemd_dir: sd.clone(),
        user: None,
        cgroup_root: Some(dir.join("cgroup")),
    };
    println!(
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
    println!("\n$ cat {}", dropin.display());
    print!("{}", std::fs::read_to_string(&dropin).unwrap_or_default());
    println!("\n$ ds01 slices plan --systemd-dir {}", sd.display());
    super::slices_cmd::run(
        super::slices_cmd::SlicesCmd::Plan(super::slices_cmd::PlanArgs {
            common,
            exit_code: false,
        }),
        &cfg_path,
    )?;
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
