//! Command-line front end: one file per subcommand, each an argument struct and a
//! `run()`. No domain logic lives here.

/// `print!` through [`out`]: `?`-returns from the command when the reader is gone.
macro_rules! out {
    ($($t:tt)*) => {
        $crate::cli::out(format_args!($($t)*))?
    };
}

/// `println!` through [`out`].
macro_rules! outln {
    () => {
        $crate::cli::out(format_args!("\n"))?
    };
    ($($t:tt)*) => {
        $crate::cli::out(format_args!("{}\n", format_args!($($t)*)))?
    };
}

pub mod check_cmd;
pub mod collect_cmd;
pub mod config_cmd;
pub mod demo;
pub mod docker_cmd;
pub mod events_cmd;
pub mod gpu_cmd;
pub mod greet_cmd;
pub mod install_cmd;
pub mod lifecycle_cmd;
pub mod limits;
pub mod monitor_cmd;
pub mod proxy_cmd;
pub mod slices_cmd;
pub mod stats_cmd;
pub mod top_cmd;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// `--proc-root`: where processes are looked up (GPU attribution, containers'
/// network namespaces); a fixture tree in tests.
#[derive(Debug, Clone, Args)]
pub struct ProcRoot {
    /// /proc, where processes are looked up.
    #[arg(
        long,
        env = "DS01_PROC_ROOT",
        default_value = "/proc",
        value_name = "DIR",
        hide_short_help = true
    )]
    pub proc_root: PathBuf,
}

/// Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A config problem; the message is printed on stderr, exit 2.
    #[error("{0}")]
    Config(String),
    /// Bad arguments; exit 2.
    #[error("{0}")]
    Usage(String),
    /// Something failed at run time; exit 1.
    #[error("{0}")]
    Runtime(String),
    /// Everything was already reported; just exit with this code.
    #[error("")]
    Exit(i32),
}

impl CliError {
    pub fn code(&self) -> i32 {
        match self {
            CliError::Config(_) | CliError::Usage(_) => 2,
            CliError::Runtime(_) => 1,
            CliError::Exit(c) => *c,
        }
    }
}

pub type CliResult = Result<(), CliError>;

/// Write a command's output on standard output. A reader that went away (`ds01
/// stats | head`) ends the command quietly with status 0, as a filter would (the
/// `print!` macros panic there); any other write error is an error.
pub fn out(text: std::fmt::Arguments<'_>) -> CliResult {
    use std::io::Write;
    match std::io::stdout().lock().write_fmt(text) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(CliError::Exit(0)),
        Err(e) => Err(CliError::Runtime(format!("standard output: {e}"))),
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "ds01",
    version,
    about = "Fair per-user resource limits for shared Docker servers",
    long_about = "Fair per-user resource limits for shared Docker servers.\n\n\
        ds01 reads resource-limits.yaml, turns each user's aggregate limits into systemd \
        slices, places containers in them, and shows everyone what is happening.\n\n\
        Exit codes: 0 ok, 1 runtime failure, 2 usage or config error."
)]
pub struct Cli {
    /// Config file [default: $DS01_CONFIG, else /etc/ds01/resource-limits.yaml, else
    /// /opt/ds01-infra/config/runtime/resource-limits.yaml]
    #[arg(long, global = true, env = "DS01_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the configuration files and report every problem found.
    #[command(subcommand)]
    Config(config_cmd::ConfigCmd),
    /// Show the limits that apply to a user.
    Limits(limits::LimitsArgs),
    /// Turn the config into systemd slices: plan (a diff) or apply.
    #[command(subcommand)]
    Slices(slices_cmd::SlicesCmd),
    /// One collection pass: stats line per user slice, OOM kills as events.
    Collect(collect_cmd::CollectArgs),
    /// The docker wrapper: `ds01 docker run …` places the container in the user's
    /// slice and checks quotas; every other docker command is passed through.
    #[command(disable_help_flag = true)]
    Docker {
        /// Arguments for docker, exactly as for the docker command.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<std::ffi::OsString>,
    },
    /// The long-running collector: a pass every --interval, OOM kills logged within
    /// a second (inotify on memory.events), pressure events (PSI triggers), users'
    /// alerts files, and Prometheus metrics with --listen.
    Monitor(monitor_cmd::MonitorArgs),
    /// Container lifecycle: one pass of the idle and runtime limits (warnings
    /// first), or --dry-run to see what would happen to each container and why.
    Lifecycle(lifecycle_cmd::LifecycleArgs),
    /// The Docker API proxy on /run/docker.sock: every client's containers placed,
    /// checked and kept to their owner (the daemon listens on a root-only socket).
    Proxy(proxy_cmd::ProxyArgs),
    /// Query the event log, or append to it (`ds01 events log`).
    Events(events_cmd::EventsArgs),
    /// The stats history: latest per user, --summary over a range, --plot.
    Stats(stats_cmd::StatsArgs),
    /// The live view: per user memory, CPU, throttling, pressure, tasks,
    /// containers and OOM kills, refreshed every second (`--once --plain` for scripts).
    Top(top_cmd::TopArgs),
    /// The GPUs and MIG instances: who holds each, what runs on it, memory,
    /// utilisation, idle time (`--json`; `--snapshot` records a sample).
    Gpu(gpu_cmd::GpuArgs),
    /// The login greeting: your quota, your use, recent OOM kills, alerts.
    Greet(greet_cmd::GreetArgs),
    /// The whole-chain integration checks: [PASS]/[FAIL]/[SKIP] per link.
    Check(check_cmd::CheckArgs),
    /// Install ds01 under a prefix (as the Debian package does), or opt in to the
    /// docker wrapper with --docker-wrapper.
    Install(install_cmd::InstallArgs),
    /// Run the chain on an embedded demo config in a temporary directory.
    Demo(demo::DemoArgs),
}

pub fn run(cli: Cli) -> CliResult {
    let config = crate::paths::config_path(cli.config.as_deref());
    match cli.command {
        Command::Config(c) => config_cmd::run(c, &config),
        Command::Limits(a) => limits::run(a, &config),
        Command::Slices(c) => slices_cmd::run(c, &config),
        Command::Collect(a) => collect_cmd::run(a, &config),
        Command::Docker { args } => match docker_cmd::run(args, cli.config.as_deref()) {
            0 => Ok(()),
            code => Err(CliError::Exit(code)),
        },
        Command::Monitor(a) => monitor_cmd::run(a, &config),
        Command::Lifecycle(a) => lifecycle_cmd::run(a, &config),
        Command::Proxy(a) => proxy_cmd::run(a, &config),
        Command::Events(a) => events_cmd::run(a),
        Command::Stats(a) => stats_cmd::run(a),
        Command::Top(a) => top_cmd::run(a, &config),
        Command::Gpu(a) => gpu_cmd::run(a, &config),
        Command::Greet(a) => greet_cmd::run(a, &config),
        Command::Check(a) => check_cmd::run(a, &config),
        Command::Install(a) => install_cmd::run(a),
        Command::Demo(a) => demo::run(a),
    }
}

/// Load the config for a command that needs a valid one: every error is printed
/// and the command stops with exit 2. Warnings are left to `ds01 config check`.
pub fn load_valid_config(path: &std::path::Path) -> Result<crate::config::Config, CliError> {
    let loaded = crate::config::load(path);
    if loaded.diagnostics.has_errors() || loaded.config.is_none() {
        let mut msg = String::new();
        for d in &loaded.diagnostics.items {
            if d.severity == crate::config::Severity::Error {
                msg.push_str(&format!("{d}\n"));
            }
        }
        msg.push_str(&format!(
            "ds01: the config {} has errors; fix them (ds01 config check) and try again",
            path.display()
        ));
        return Err(CliError::Config(msg));
    }
    loaded
        .config
        .ok_or_else(|| CliError::Config(format!("cannot load {}", path.display())))
}

/// `--since` / `--until` for `ds01 events` and `ds01 stats`: one parser, one message.
pub fn time_range(
    since: Option<&str>,
    until: Option<&str>,
) -> Result<(Option<jiff::Timestamp>, Option<jiff::Timestamp>), CliError> {
    let now = jiff::ZonedDateTime::now();
    let t = |s: Option<&str>, flag: &str| {
        s.map(|p| {
            crate::timespec::parse_time(p, &now).map_err(|_| {
                CliError::Usage(format!(
                    "{flag} {p:?}: not a time ({})",
                    crate::timespec::EXAMPLES
                ))
            })
        })
        .transpose()
    };
    Ok((t(since, "--since")?, t(until, "--until")?))
}
