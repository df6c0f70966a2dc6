//! `ds01 greet`: the login greeting. Any error prints nothing and exits 0.

use super::CliResult;
use crate::greet::{self, GreetPaths};
use clap::Args;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

pub const DEFAULT_ALERTS_DIR: &str = "/var/lib/ds01/alerts";

#[derive(Debug, Args)]
pub struct GreetArgs {
    /// No colour, for scripts.
    #[arg(long)]
    pub plain: bool,
    /// Greet this user instead of the caller (root only).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// The ds01.slice cgroup directory.
    #[arg(
        long,
        env = "DS01_CGROUP_ROOT",
        value_name = "DIR",
        hide_short_help = true
    )]
    pub cgroup_root: Option<PathBuf>,
    /// The event log.
    #[arg(long, env = "DS01_EVENTS_LOG", default_value = crate::events::DEFAULT_LOG, value_name = "FILE", hide_short_help = true)]
    pub events_log: PathBuf,
    /// The directory of per-user alert files.
    #[arg(long, env = "DS01_ALERTS_DIR", default_value = DEFAULT_ALERTS_DIR, value_name = "DIR", hide_short_help = true)]
    pub alerts_dir: PathBuf,
    /// Print why nothing was shown, instead of staying silent (for admins).
    #[arg(long, hide_short_help = true)]
    pub debug: bool,
    /// Where the monitor keeps gpu.json.
    #[arg(long, env = "DS01_STATE_DIR", default_value = crate::collect::DEFAULT_STATE_DIR, value_name = "DIR", hide_short_help = true)]
    pub state_dir: PathBuf,
}

pub fn run(a: GreetArgs, config: &Path) -> CliResult {
    match text(&a, config) {
        Ok(t) => out!("{t}"),
        Err(why) if a.debug => eprintln!("ds01 greet: {why}"),
        Err(_) => {}
    }
    Ok(())
}

/// The greeting, or why there is none.
pub fn text(a: &GreetArgs, config: &Path) -> Result<String, String> {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let user = match &a.user {
        Some(u) if uid == 0 => u.clone(),
        Some(_) => return Err("--user is for root only".into()),
        None => {
            crate::docker::identity::user_name(uid)
                .ok_or("no user name for this uid")?
                .0
        }
    };
    let loaded = crate::config::load(config);
    let cfg = match (loaded.config, loaded.diagnostics.has_errors()) {
        (Some(c), false) => c,
        _ => return Err(format!("the config {} cannot be used", config.display())),
    };
    let r = cfg.resolve(&user);
    let paths = GreetPaths {
        cgroup_root: a
            .cgroup_root
            .clone()
            .unwrap_or_else(crate::paths::cgroup_root),
        events_log: a.events_log.clone(),
        alerts_dir: a.alerts_dir.clone(),
        banner: config.parent().unwrap_or(Path::new("/")).join("banner.txt"),
        state_dir: a.state_dir.clone(),
    };
    let color =
        !a.plain && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    Ok(greet::render(
        &cfg,
        &r,
        &paths,
        jiff::Timestamp::now(),
        color,
    ))
}
