//! `ds01 docker ARGS…` — also what runs when the binary is invoked as `docker`.

use crate::docker::args::{self, Command as DockerCommand};
use crate::docker::engine::Engine;
use crate::docker::{Decider, Decision, gpu, identity, inject_event, is_admin, security, usage};
use crate::events::{Event, EventLog};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

pub const DEFAULT_REAL_DOCKER: &str = "/usr/bin/docker";

/// The real docker client: `DS01_REAL_DOCKER`, else `/usr/bin/docker`.
pub fn real_docker() -> PathBuf {
    std::env::var_os("DS01_REAL_DOCKER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_REAL_DOCKER))
}

/// Replace this process with the real docker. Returns only on failure (exit code).
fn exec(real: &Path, argv: &[String]) -> i32 {
    let err = std::process::Command::new(real)
        .arg0("docker")
        .args(argv)
        .exec();
    eprintln!("ds01: cannot run {}: {err}", real.display());
    127
}

fn log(events: &EventLog, ev: &Event) {
    if let Err(e) = events.append(ev) {
        eprintln!("ds01: warning: event not logged: {e}");
    }
}

/// Allowed although ds01 could not check: say so, record it, run.
fn fail_open(events: &EventLog, real: &Path, argv: &[String], user: &str, why: &str) -> i32 {
    eprintln!("ds01: warning: {why}; the container is started without ds01's quota checks");
    log(
        events,
        &Event::new("docker.fail_open")
            .user(user)
            .source(SOURCE)
            .detail("reason", why),
    );
    exec(real, argv)
}

/// Run the wrapper on `argv` (without the program name). Returns the exit code when
/// it does not exec.
pub fn run(argv: Vec<OsString>, config_flag: Option<&Path>) -> i32 {
    let real = real_docker();
    // Recursion guard: the "real" docker must not be this binary (a link to it).
    if let (Ok(a), Ok(b)) = (
        std::fs::canonicalize(&real),
        std::env::current_exe().and_then(std::fs::canonicalize),
    ) && a == b
    {
        eprintln!(
            "ds01: {} is ds01 itself, not Docker's client; set DS01_REAL_DOCKER to the real docker binary",
            real.display()
        );
        return 1;
    }
    let argv: Vec<String> = argv
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let run_args = match args::parse(&argv) {
        DockerCommand::Run(r) => r,
        DockerCommand::Other => return exec(&real, &argv),
    };
    let events = EventLog::from_env_or(None);
    let me = match identity::current() {
        Ok(i) => i,
        Err(e) => {
            if run_args.has("cgroup-parent") {
                return refuse_unchecked_cgroup_parent(&e);
            }
            return fail_open(&events, &real, &argv, "unknown", &e);
        }
    };
    let cfg_path = crate::paths::config_path(config_flag);
    // A broken config keeps the last one that loaded cleanly in force (saved in the
    // state dir by whichever command loaded it last): one inconsistent group must
    // not lift every user's limits.
    let enforced = crate::config::last_good::load_enforced(&cfg_path, &crate::paths::state_dir());
    let loaded = &enforced.current;
    let broken = loaded.diagnostics.has_errors() || loaded.config.is_none();
    let first = loaded
        .diagnostics
        .first_error()
        .map_or_else(|| "unknown error".to_string(), |d| d.to_string());
    if broken && enforced.config.is_some() {
        eprintln!(
            "ds01: ERROR: the config is broken ({first}); enforcing the last config that loaded cleanly. An admin should run `ds01 config check`."
        );
        log(
            &events,
            &Event::new("config.invalid")
                .user(&me.name)
                .source(SOURCE)
                .detail("error", first.as_str())
                .detail("in_force", "the last good config (saved in the state dir)"),
        );
    }
    let cfg = match &enforced.config {
        Some(c) => c,
        None => {
            let why = format!("cannot use the config ({first})");
            // Never "no enforcement" for the cgroup parent: without a config only
            // admins (by Unix group) may choose one.
            if run_args.has("cgroup-parent") && !is_admin(None, me.uid, &me.name, &me.groups) {
                return refuse_unchecked_cgroup_parent(&why);
            }
            return fail_open(&events, &real, &argv, &me.name, &why);
        }
    };
    let user = cfg.resolve(&me.name);
    let admin = is_admin(Some(cfg), me.uid, &me.name, &me.groups);
    if std::env::var_os("DS01_WRAPPER_BYPASS").is_some_and(|v| v == "1") {
        if admin {
            return exec(&real, &argv);
        }
        eprintln!("ds01: warning: DS01_WRAPPER_BYPASS is for admins only; ignored");
    }
    // GPUs are only looked at (nvidia-smi, one inspect per container) when this
    // container asks for some: without --gpus the GPU quota cannot be exceeded.
    let wants_gpus = run_args.has("gpus");
    let inv = if wants_gpus && !admin {
        gpu::inventory()
    } else {
        gpu::Inventory::default()
    };
    let usage = if admin {
        None
    } else {
        let (usage, err) = usage::usage_of(
            &user,
            &Engine::from_env(),
            &usage::cgroup_root(),
            wants_gpus.then_some(&inv),
        );
        if let Some(e) = err {
            eprintln!(
                "ds01: warning: {e}; container and GPU quotas are not checked for this container"
            );
            log(
                &events,
                &Event::new("docker.fail_open")
                    .user(&user.slice_user)
                    .source(SOURCE)
                    .detail("reason", e.to_string()),
            );
        }
        Some(usage)
    };
    let decider = Decider {
        user: &user,
        admin,
        inventory: &inv,
    };
    match decider.decide(&run_args, usage.as_ref()) {
        Decision::Refuse(refusal) => {
            eprint!("{}", refusal.message());
            log(
                &events,
                &refusal.event(
                    &user,
                    SOURCE,
                    run_args.image().unwrap_or(""),
                    run_args.value("name"),
                ),
            );
            1
        }
        Decision::Allow {
            argv: new,
            warnings,
            req,
            changes,
        } => {
            if !admin {
                // The host-escape policy; the same check the proxy makes, here for
                // a clear message early and for servers without the proxy.
                let policy = cfg
                    .security
                    .policy_for(&user.user, &user.slice_user, &user.group);
                let subject = security::Subject::lookup(
                    me.uid,
                    &me.name,
                    &me.groups,
                    Some(rustix::process::getgid().as_raw()),
                );
                if let Err(d) = security::check_create_blocking(
                    &policy,
                    &subject,
                    &user.slice_user,
                    &req.body,
                    &Engine::from_env(),
                ) {
                    eprintln!("{}", d.message());
                    log(
                        &events,
                        &d.event(&user.slice_user, SOURCE, run_args.value("name")),
                    );
                    return 1;
                }
            }
            for w in &warnings {
                eprintln!("ds01: warning: {w}");
            }
            log(&events, &inject_event(&user, SOURCE, &req, &changes, admin));
            exec(&real, &new)
        }
    }
}

const SOURCE: &str = "docker-wrapper";

fn refuse_unchecked_cgroup_parent(why: &str) -> i32 {
    eprintln!(
        "ds01: {why}; --cgroup-parent is refused while ds01 cannot check who you are (ask an admin)"
    );
    1
}
