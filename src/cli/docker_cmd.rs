//! `ds01 docker ARGS…` — also what runs when the binary is invoked as `docker`.

use crate::config::Resolved;
use crate::docker::args::{self, Command as DockerCommand, RunArgs};
use crate::docker::engine::Engine;
use crate::docker::{Decider, Decision, Usage, gpu, identity, is_admin};
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
            .source("docker-wrapper")
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
        Err(e) => return fail_open(&events, &real, &argv, "unknown", &e),
    };
    let cfg_path = crate::paths::config_path(config_flag);
    let loaded = crate::config::load(&cfg_path);
    let cfg = match (&loaded.config, loaded.diagnostics.has_errors()) {
        (Some(c), false) => c,
        _ => {
            let first = loaded
                .diagnostics
                .first_error()
                .map_or_else(|| "unknown error".to_string(), |d| d.to_string());
            return fail_open(
                &events,
                &real,
                &argv,
                &me.name,
                &format!("cannot use the config ({first})"),
            );
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
        Some(usage_of(&user, &events, wants_gpus.then_some(&inv)))
    };
    let decider = Decider {
        user: &user,
        admin,
        inventory: &inv,
    };
    match decider.decide(&run_args, usage.as_ref()) {
        Decision::Refuse(refusal) => {
            eprint!("{}", refusal.message());
            log(&events, &refusal.event(&user, &run_args));
            1
        }
        Decision::Allow {
            argv: new,
            warnings,
            added,
        } => {
            for w in &warnings {
                eprintln!("ds01: warning: {w}");
            }
            log(&events, &inject_event(&user, &run_args, &added, admin));
            exec(&real, &new)
        }
    }
}

fn inject_event(user: &Resolved, r: &RunArgs, added: &[String], admin: bool) -> Event {
    let mut ev = Event::new("docker.cgroup_inject")
        .user(&user.slice_user)
        .source("docker-wrapper")
        .detail("group", user.group.as_str())
        .detail(
            "slice",
            r.value("cgroup-parent")
                .map_or_else(|| user.slice(), str::to_string),
        )
        .detail("image", r.image().unwrap_or(""))
        .detail("verb", r.verb.as_str())
        .detail("added", added.join(" "));
    if let Some(name) = r.value("name") {
        ev = ev.detail("container", name);
    }
    if admin {
        ev = ev.detail("admin", true);
    }
    ev
}

/// What the user has now: the slice from cgroupfs, the containers from the Engine
/// API (fail-open, loudly, when it cannot be read); with `gpus`, each container's
/// GPU use from its device requests.
fn usage_of(user: &Resolved, events: &EventLog, gpus: Option<&gpu::Inventory>) -> Usage {
    let root = std::env::var_os("DS01_CGROUP_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(crate::paths::cgroup_root);
    let dir = crate::cgroup::CgroupDir::new(user.cgroup_path(&root));
    let mut usage = Usage {
        memory_bytes: dir.memory_current().ok().flatten().unwrap_or(0),
        tasks: dir.pids_current().ok().flatten().unwrap_or(0),
        containers: None,
    };
    let engine = Engine::from_env();
    match engine.user_containers(&user.slice_user) {
        Ok(list) => {
            let mut out = Vec::new();
            for c in list {
                let id = c
                    .get("Id")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string();
                let name = c.pointer("/Names/0").and_then(|v| v.as_str()).map_or_else(
                    || id.chars().take(12).collect(),
                    |n| n.trim_start_matches('/').to_string(),
                );
                let held = match gpus {
                    Some(inv) => engine
                        .inspect(&id)
                        .map(|i| gpu::container_gpus(&i, inv))
                        .unwrap_or(gpu::GpuUse::NONE),
                    None => gpu::GpuUse::NONE,
                };
                out.push((name, held));
            }
            usage.containers = Some(out);
        }
        Err(e) => {
            eprintln!(
                "ds01: warning: {e}; container and GPU quotas are not checked for this container"
            );
            log(
                events,
                &Event::new("docker.fail_open")
                    .user(&user.slice_user)
                    .source("docker-wrapper")
                    .detail("reason", e.to_string()),
            );
        }
    }
    usage
}
