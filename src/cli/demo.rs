//! `ds01 demo`: the main job on an embedded demo config, in a scratch directory, so
//! a fresh checkout shows what ds01 does without touching the system.

use super::{CliError, CliResult};
use clap::Args;
use std::path::{Path, PathBuf};

/// The demo files, embedded in the binary (the same files as `demo/` in the repo).
pub const DEMO_FILES: &[(&str, &str)] = &[
    (
        "resource-limits.yaml",
        include_str!("../../demo/resource-limits.yaml"),
    ),
    (
        "user-overrides.yaml",
        include_str!("../../demo/user-overrides.yaml"),
    ),
    (
        "groups/student.members",
        include_str!("../../demo/groups/student.members"),
    ),
    (
        "groups/researcher.members",
        include_str!("../../demo/groups/researcher.members"),
    ),
];

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to write the demo config (and, later, its fake cgroup tree and logs)
    /// [default: a new directory under $TMPDIR]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Write the demo config into `dir`; returns the config path.
pub fn write_demo(dir: &Path) -> std::io::Result<PathBuf> {
    for (rel, text) in DEMO_FILES {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, text)?;
    }
    Ok(dir.join("resource-limits.yaml"))
}

pub fn run(args: DemoArgs) -> CliResult {
    let dir = match args.dir {
        Some(d) => d,
        None => {
            let stamp = jiff::Timestamp::now().as_second();
            std::env::temp_dir().join(format!("ds01-demo-{}-{stamp}", std::process::id()))
        }
    };
    let cfg_path = write_demo(&dir.join("etc")).map_err(|e| {
        CliError::Runtime(format!("cannot write the demo into {}: {e}", dir.display()))
    })?;
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
