//! `ds01 check`: the whole-chain integration checks an admin runs on a server. Each
//! check exercises its link for real (loads, renders, asks dockerd, reads cgroupfs,
//! starts a throw-away container) instead of grepping files.

use crate::cgroup::CgroupDir;
use crate::config::{Config, Resolved};
use crate::docker::engine::Engine;
use crate::docker::{Decider, Decision, Quota, Usage, args, gpu};
use crate::units::Limit;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckResult {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// `ROOT` / `DOCKER`: what the check needs.
    pub tags: Vec<&'static str>,
}

/// The checks, in the order they run.
pub const NAMES: &[&str] = &[
    "config",
    "generator",
    "docker-daemon",
    "docker-cgroup",
    "docker-proxy",
    "bind-roots",
    "slices",
    "memory-enforcement",
    "aggregate",
    "psi",
    "collector-deployed",
    "stats-recent",
    "events-writable",
    "gpu",
    "greeting",
];

/// Everything the checks look at.
#[derive(Debug, Clone)]
pub struct CheckEnv {
    pub config: PathBuf,
    pub cgroup_root: PathBuf,
    pub systemd_dir: PathBuf,
    pub engine: Engine,
    pub real_docker: PathBuf,
    pub events_log: PathBuf,
    pub stats_log: PathBuf,
    pub alerts_dir: PathBuf,
    pub cron_file: PathBuf,
    pub systemctl: String,
    /// Image for the throw-away container of `memory-enforcement`.
    pub image: Option<String>,
    /// The user to exercise; default: the first configured user with an aggregate.
    pub user: Option<String>,
    /// The real daemon's socket when ds01's proxy owns the Docker socket.
    pub proxy_upstream: PathBuf,
    /// Where the last good config is saved (`/var/lib/ds01`).
    pub state_dir: PathBuf,
}

fn r(
    name: &'static str,
    status: Status,
    detail: impl Into<String>,
    tags: &[&'static str],
) -> CheckResult {
    CheckResult {
        name,
        status,
        detail: detail.into(),
        tags: tags.to_vec(),
    }
}

struct Ctx<'a> {
    env: &'a CheckEnv,
    cfg: Option<Config>,
    info: Option<Result<serde_json::Value, String>>,
}

impl Ctx<'_> {
    fn info(&mut self) -> Result<serde_json::Value, String> {
        if self.info.is_none() {
            self.info = Some(self.env.engine.info().map_err(|e| e.to_string()));
        }
        self.info.clone().unwrap_or_else(|| Err("not asked".into()))
    }

    /// The user to exercise.
    fn subject(&self) -> Option<Resolved> {
        let cfg = self.cfg.as_ref()?;
        match &self.env.user {
            Some(u) => Some(cfg.resolve(u)),
            None => cfg
                .all_users()
                .into_iter()
                .find(|u| u.aggregate.as_ref().is_some_and(|a| !a.is_unlimited())),
        }
    }
}

/// Run every check (or only `only`).
pub fn run(env: &CheckEnv, only: Option<&str>) -> Vec<CheckResult> {
    let loaded = crate::config::load(&env.config);
    let first_error = loaded.diagnostics.first_error().map(|d| d.to_string());
    let mut ctx = Ctx {
        env,
        cfg: if first_error.is_none() {
            loaded.config
        } else {
            None
        },
        info: None,
    };
    let mut out = Vec::new();
    for &name in NAMES {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let res = match name {
            "config" => check_config(&ctx, first_error.as_deref()),
            "generator" => check_generator(&ctx),
            "docker-daemon" => check_daemon(&mut ctx),
            "docker-cgroup" => check_docker_cgroup(&mut ctx),
            "docker-proxy" => check_proxy(&ctx),
            "bind-roots" => check_bind_roots(&ctx),
            "slices" => check_slices(&mut ctx),
            "memory-enforcement" => check_memory_enforcement(&mut ctx),
            "aggregate" => check_aggregate(&ctx),
            "psi" => check_psi(&ctx),
            "collector-deployed" => check_collector(&ctx),
            "stats-recent" => check_stats(&ctx),
            "events-writable" => check_events(&ctx),
            "gpu" => check_gpu(),
            _ => check_greeting(&ctx),
        };
        out.push(res);
    }
    out
}

fn no_config(name: &'static str, tags: &[&'static str]) -> CheckResult {
    r(
        name,
        Status::Skip,
        "the config does not load (see the config check)",
        tags,
    )
}

fn check_config(ctx: &Ctx, first_error: Option<&str>) -> CheckResult {
    let name = "config";
    if let Some(e) = first_error {
        let in_force = match crate::config::last_good::load_snapshot(&ctx.env.state_dir) {
            Some(_) => format!(
                "; until it is fixed, ds01 enforces the last config that loaded cleanly ({})",
                crate::config::last_good::snapshot_path(&ctx.env.state_dir).display()
            ),
            None => "; no last good config is saved: the wrapper starts containers unchecked and the proxy refuses non-admins' creates until it is fixed".into(),
        };
        return r(name, Status::Fail, format!("{e}{in_force}"), &[]);
    }
    let Some(cfg) = &ctx.cfg else {
        return r(
            name,
            Status::Fail,
            format!("cannot load {}", ctx.env.config.display()),
            &[],
        );
    };
    // Every group in use has an aggregate, or is the admin group (unlimited on
    // purpose). A group in use: it has members, or it is the default group.
    let unlimited: Vec<&str> = cfg
        .groups
        .iter()
        .filter(|g| g.name != "admin" && g.aggregate.as_ref().is_none_or(|a| a.is_unlimited()))
        .filter(|g| !g.members.is_empty() || g.name == cfg.default_group)
        .map(|g| g.name.as_str())
        .collect();
    if !unlimited.is_empty() {
        return r(
            name,
            Status::Fail,
            format!(
                "group(s) {} have users but no aggregate limits; add an aggregate, or name the group admin if unlimited is intended",
                unlimited.join(", ")
            ),
            &[],
        );
    }
    let users = cfg.all_users();
    r(
        name,
        Status::Pass,
        format!(
            "{} loads: {} groups, {} users",
            ctx.env.config.display(),
            cfg.groups.len(),
            users.len()
        ),
        &[],
    )
}

fn check_generator(ctx: &Ctx) -> CheckResult {
    let name = "generator";
    let Some(cfg) = &ctx.cfg else {
        return no_config(name, &[]);
    };
    let mut users_with = 0;
    let mut problems = Vec::new();
    for u in cfg.all_users() {
        let Some(a) = u.aggregate.as_ref().filter(|a| !a.is_unlimited()) else {
            continue;
        };
        users_with += 1;
        let text = crate::slices::render_dropin(a).unwrap_or_default();
        let want = [
            (
                "CPUQuota=",
                a.cpu_quota.and_then(Limit::value).map(|q| q.to_string()),
            ),
            (
                "MemoryMax=",
                a.memory_max.map(crate::units::format_systemd_size),
            ),
            (
                "MemoryHigh=",
                a.memory_high.map(crate::units::format_systemd_size),
            ),
            (
                "TasksMax=",
                a.tasks_max
                    .map(|t| t.value().map_or("infinity".into(), |v| v.to_string())),
            ),
        ];
        for (key, val) in want {
            match val {
                Some(v) if !text.contains(&format!("{key}{v}\n")) => {
                    problems.push(format!("{}: {key}{v} not rendered", u.user))
                }
                None => problems.push(format!(
                    "{}: no {} in its aggregate",
                    u.user,
                    key.trim_end_matches('=')
                )),
                _ => {}
            }
        }
    }
    if !problems.is_empty() {
        problems.truncate(5);
        return r(name, Status::Fail, problems.join("; "), &[]);
    }
    // What is installed must be what the config says.
    let desired = crate::slices::desired_all(cfg);
    match crate::slices::plan(&ctx.env.systemd_dir, &desired) {
        Ok(p) if p.is_empty() => r(
            name,
            Status::Pass,
            format!(
                "CPUQuota, MemoryMax, MemoryHigh, TasksMax rendered for {users_with} users; {} installed and current",
                ctx.env.systemd_dir.display()
            ),
            &[],
        ),
        Ok(p) => r(
            name,
            Status::Fail,
            format!(
                "{} differs from the config: {} (run ds01 slices apply)",
                ctx.env.systemd_dir.display(),
                p.summary()
            ),
            &[],
        ),
        Err(e) => r(name, Status::Fail, e.to_string(), &[]),
    }
}

fn check_daemon(ctx: &mut Ctx) -> CheckResult {
    let name = "docker-daemon";
    match ctx.info() {
        Ok(i) => r(
            name,
            Status::Pass,
            format!(
                "Docker {} at {}",
                i.get("ServerVersion")
                    .and_then(|v| v.as_str())
                    .unwrap_or("?"),
                ctx.env.engine.socket.display()
            ),
            &["DOCKER"],
        ),
        Err(e) => r(name, Status::Fail, e, &["DOCKER"]),
    }
}

/// The proxy's two links: the daemon's own socket is root's only, and the socket
/// clients use is answered by ds01. SKIP when the proxy is not switched on.
fn check_proxy(ctx: &Ctx) -> CheckResult {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let name = "docker-proxy";
    let tags = &["DOCKER"];
    let up = &ctx.env.proxy_upstream;
    let answered = ctx.env.engine.proxy_header();
    let upstream = std::fs::metadata(up)
        .ok()
        .filter(|m| m.file_type().is_socket());
    match (&answered, &upstream) {
        // dockerd answers the clients' socket itself: not switched on (a leftover
        // socket file from an earlier proxy setup does not change that).
        (Ok(None), _) => {
            return r(
                name,
                Status::Skip,
                format!(
                    "the proxy is not switched on ({} is dockerd's own; ds01 install --proxy)",
                    ctx.env.engine.socket.display()
                ),
                tags,
            );
        }
        (Err(e), _) => return r(name, Status::Fail, format!("{e}"), tags),
        _ => {}
    }
    let mut problems = Vec::new();
    match upstream {
        None => problems.push(format!("{} (the daemon's socket) does not exist", up.display())),
        Some(m) if m.uid() != 0 || m.mode() & 0o077 != 0 => problems.push(format!(
            "{} is mode {:o}, owner uid {}: other users can reach the daemon around ds01 (want 0600 root)",
            up.display(),
            m.mode() & 0o777,
            m.uid()
        )),
        Some(_) => {}
    }
    let version = match answered {
        Ok(Some(v)) => v,
        _ => {
            problems.push(format!(
                "{} is answered by dockerd itself, not by ds01 proxy (systemctl status ds01-proxy.socket)",
                ctx.env.engine.socket.display()
            ));
            String::new()
        }
    };
    if problems.is_empty() {
        r(
            name,
            Status::Pass,
            format!(
                "{} is served by ds01 proxy {version}; the daemon's {} is root's only (0600)",
                ctx.env.engine.socket.display(),
                up.display()
            ),
            tags,
        )
    } else {
        r(name, Status::Fail, problems.join("; "), tags)
    }
}

/// Every bind root of `container_security` must be on a `nosuid,nodev` mount, or
/// binds from it are refused (root in a container could plant a setuid program or
/// a device node there). Each offending mount, with the line that fixes it.
fn check_bind_roots(ctx: &Ctx) -> CheckResult {
    use crate::docker::security::{Host, RealHost};
    let name = "bind-roots";
    let tags = &["ROOT"];
    let Some(cfg) = &ctx.cfg else {
        return r(name, Status::Skip, "no valid config", tags);
    };
    let host = RealHost::new(None);
    let mounts = match host.mounts() {
        Ok(m) => m,
        Err(e) => {
            return r(
                name,
                Status::Fail,
                format!("cannot read the mount table: {e}"),
                tags,
            );
        }
    };
    // The places the roots name: `{home}` → the homes of the configured users,
    // `/x/{user}` → /x (everything under it is on that mount or below).
    let sec = &cfg.security;
    let mut templates: Vec<String> = Vec::new();
    let base = sec
        .base
        .bind_roots
        .clone()
        .unwrap_or_else(|| crate::docker::security::Policy::default().bind_roots);
    let relaxed = sec
        .groups
        .values()
        .map(|(r, _)| r)
        .chain(sec.users.values())
        .filter_map(|r| r.bind_roots.clone())
        .flatten();
    for root in base.into_iter().chain(relaxed) {
        if !templates.contains(&root.path) {
            templates.push(root.path);
        }
    }
    let mut places: Vec<std::path::PathBuf> = Vec::new();
    for t in &templates {
        if t.contains("{home}") {
            for u in cfg.all_users().iter().take(200) {
                if let Some(uid) = crate::docker::identity::user_uid(&u.user)
                    && let Some(h) = crate::docker::identity::home_dir(uid)
                {
                    places.push(h);
                }
            }
        } else {
            let fixed = t.split("{user}").next().unwrap_or(t);
            places.push(std::path::PathBuf::from(fixed.trim_end_matches('/')));
        }
    }
    let mut bad: Vec<String> = Vec::new();
    let mut good = 0;
    for place in places {
        let Ok(canon) = std::fs::canonicalize(&place) else {
            continue;
        };
        let Some(m) = mounts
            .iter()
            .filter(|m| canon.starts_with(&m.point))
            .max_by_key(|m| m.point.as_os_str().len())
        else {
            continue;
        };
        if m.nosuid && m.nodev {
            good += 1;
            continue;
        }
        let fix = if m.point == std::path::Path::new("/") {
            // One mount for the directory the homes are in (/home), not one per user.
            let at = canon
                .parent()
                .filter(|p| *p != std::path::Path::new("/"))
                .unwrap_or(&canon);
            format!(
                "{} is on the root file system: give it a mount of its own, e.g. in /etc/fstab `{0} {0} none bind,nosuid,nodev 0 0`, then `mount {0}`",
                at.display()
            )
        } else {
            format!(
                "add nosuid,nodev to the options of {0} in /etc/fstab, then `mount -o remount,nosuid,nodev {0}`",
                m.point.display()
            )
        };
        if !bad.contains(&fix) {
            bad.push(fix);
        }
    }
    if bad.is_empty() && good == 0 {
        r(
            name,
            Status::Skip,
            "no bind-root location exists on this host (no configured user has a home here)",
            tags,
        )
    } else if bad.is_empty() {
        r(
            name,
            Status::Pass,
            format!("{good} bind-root location(s) checked, all on nosuid,nodev mounts"),
            tags,
        )
    } else {
        r(
            name,
            Status::Fail,
            format!(
                "binds from these are refused until fixed: {}",
                bad.join("; ")
            ),
            tags,
        )
    }
}

fn check_docker_cgroup(ctx: &mut Ctx) -> CheckResult {
    let name = "docker-cgroup";
    let Ok(i) = ctx.info() else {
        return r(
            name,
            Status::Skip,
            "the Docker daemon is not reachable",
            &["DOCKER"],
        );
    };
    let driver = i
        .get("CgroupDriver")
        .and_then(|v| v.as_str())
        .unwrap_or("?");
    let version = i
        .get("CgroupVersion")
        .and_then(|v| v.as_str())
        .unwrap_or("?");
    if driver == "systemd" && version == "2" {
        r(
            name,
            Status::Pass,
            "cgroup driver systemd, cgroup v2",
            &["DOCKER"],
        )
    } else {
        r(
            name,
            Status::Fail,
            format!(
                "cgroup driver {driver}, cgroup v{version}: ds01 needs \"exec-opts\": [\"native.cgroupdriver=systemd\"] in /etc/docker/daemon.json and cgroup v2"
            ),
            &["DOCKER"],
        )
    }
}

/// Compare a slice's kernel limits with the user's aggregate.
pub fn slice_mismatches(dir: &CgroupDir, u: &Resolved) -> Vec<String> {
    let mut out = Vec::new();
    let a = u
        .aggregate
        .clone()
        .filter(|a| !a.is_unlimited())
        .unwrap_or_default();
    let want_bytes = |l: Option<Limit<u64>>| match l {
        Some(Limit::Value(v)) => v.to_string(),
        _ => "max".to_string(),
    };
    let read = |f: &str| {
        std::fs::read_to_string(dir.path.join(f))
            .map(|t| t.trim().to_string())
            .unwrap_or_else(|e| format!("unreadable ({e})"))
    };
    for (file, want) in [
        ("memory.max", want_bytes(a.memory_max)),
        ("memory.high", want_bytes(a.memory_high)),
        ("pids.max", want_bytes(a.tasks_max)),
        (
            "cpu.max",
            match a.cpu_quota {
                Some(Limit::Value(q)) => format!("{} 100000", q.quota_us(100_000)),
                _ => "max 100000".into(),
            },
        ),
    ] {
        let got = read(file);
        if got != want {
            out.push(format!("{}: {file} is {got}, config says {want}", u.user));
        }
    }
    out
}

fn check_slices(ctx: &mut Ctx) -> CheckResult {
    let name = "slices";
    let tags = &["DOCKER"];
    let Some(cfg) = &ctx.cfg else {
        return no_config(name, tags);
    };
    let list = match ctx.env.engine.containers_labelled("ds01.managed=true") {
        Ok(v) => v,
        Err(e) => {
            return r(
                name,
                Status::Skip,
                format!("cannot list containers: {e}"),
                tags,
            );
        }
    };
    let mut users: Vec<String> = list
        .iter()
        .filter_map(|c| {
            c.pointer("/Labels/ds01.user")
                .and_then(|u| u.as_str())
                .map(str::to_string)
        })
        .collect();
    users.sort();
    users.dedup();
    if users.is_empty() {
        return r(
            name,
            Status::Skip,
            "no ds01 container is running, so no user slice to compare",
            tags,
        );
    }
    let mut problems = Vec::new();
    for user in &users {
        let u = cfg.resolve(user);
        let dir = CgroupDir::new(u.cgroup_path(&ctx.env.cgroup_root));
        if !dir.path.is_dir() {
            problems.push(format!("{user}: {} does not exist", dir.path.display()));
            continue;
        }
        problems.extend(slice_mismatches(&dir, &u));
    }
    if problems.is_empty() {
        r(
            name,
            Status::Pass,
            format!(
                "kernel limits equal the config for {} user(s) with running containers: {}",
                users.len(),
                users.join(", ")
            ),
            tags,
        )
    } else {
        r(name, Status::Fail, problems.join("; "), tags)
    }
}

fn check_memory_enforcement(ctx: &mut Ctx) -> CheckResult {
    let name = "memory-enforcement";
    let tags = &["ROOT", "DOCKER"];
    let Some(image) = ctx.env.image.clone() else {
        return r(
            name,
            Status::Skip,
            "no --image given for the throw-away container",
            tags,
        );
    };
    let Some(u) = ctx.subject() else {
        return r(
            name,
            Status::Skip,
            "no configured user with an aggregate to run as",
            tags,
        );
    };
    if ctx.info().is_err() {
        return r(
            name,
            Status::Skip,
            "the Docker daemon is not reachable",
            tags,
        );
    }
    let argv: Vec<String> = [
        "run",
        "-d",
        "--rm",
        "--network",
        "none",
        "--memory=64m",
        "--name",
        "ds01-check-memory",
        &image,
        "sleep",
        "60",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let args::Command::Run(run_args) = args::parse(&argv) else {
        return r(
            name,
            Status::Fail,
            "the argument model did not see a run command",
            tags,
        );
    };
    let inv = gpu::Inventory::default();
    let decider = Decider {
        user: &u,
        admin: false,
        inventory: &inv,
    };
    let Decision::Allow { argv, .. } = decider.decide(&run_args, None) else {
        return r(
            name,
            Status::Fail,
            "the wrapper refused a 64 MiB container without any usage",
            tags,
        );
    };
    let out = std::process::Command::new(&ctx.env.real_docker)
        .args(&argv)
        .output();
    let id = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Ok(o) => {
            return r(
                name,
                Status::Fail,
                format!(
                    "docker run failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                tags,
            );
        }
        Err(e) => {
            return r(
                name,
                Status::Fail,
                format!("cannot run {}: {e}", ctx.env.real_docker.display()),
                tags,
            );
        }
    };
    let scope = u
        .cgroup_path(&ctx.env.cgroup_root)
        .join(format!("docker-{id}.scope"));
    let max = std::fs::read_to_string(scope.join("memory.max")).map(|t| t.trim().to_string());
    let _ = std::process::Command::new(&ctx.env.real_docker)
        .args(["rm", "-f", &id])
        .output();
    match max {
        Ok(m) if m == "67108864" => r(
            name,
            Status::Pass,
            format!(
                "a 64 MiB container ran in {} with memory.max 67108864",
                u.slice()
            ),
            tags,
        ),
        Ok(m) => r(
            name,
            Status::Fail,
            format!("{}: memory.max is {m}, expected 67108864", scope.display()),
            tags,
        ),
        Err(e) => r(
            name,
            Status::Fail,
            format!("the container is not under {}: {e}", scope.display()),
            tags,
        ),
    }
}

fn check_aggregate(ctx: &Ctx) -> CheckResult {
    let name = "aggregate";
    let Some(u) = ctx.subject() else {
        return r(
            name,
            Status::Skip,
            "no configured user with an aggregate",
            &[],
        );
    };
    let Some(Limit::Value(max)) = u.aggregate.as_ref().and_then(|a| a.memory_max) else {
        return r(
            name,
            Status::Skip,
            format!("{}'s aggregate has no memory_max", u.user),
            &[],
        );
    };
    let inv = gpu::Inventory::default();
    let decider = Decider {
        user: &u,
        admin: false,
        inventory: &inv,
    };
    let parse = |mem: &str| {
        let argv: Vec<String> = ["run", "--memory", mem, "img"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        match args::parse(&argv) {
            args::Command::Run(r) => Some(r),
            args::Command::Other => None,
        }
    };
    let (Some(big), Some(small)) = (parse("64m"), parse("1m")) else {
        return r(
            name,
            Status::Fail,
            "the argument model did not see a run command",
            &[],
        );
    };
    let full = Usage {
        memory_bytes: max.saturating_sub(1 << 20),
        tasks: 0,
        containers: Some(Vec::new()),
        held_gpus: Vec::new(),
    };
    let empty = Usage {
        memory_bytes: 0,
        tasks: 0,
        containers: Some(Vec::new()),
        held_gpus: Vec::new(),
    };
    let over = decider.decide(&big, Some(&full));
    let within = decider.decide(&small, Some(&empty));
    match (over, within) {
        (Decision::Refuse(rf), Decision::Allow { .. }) if rf.quota == Quota::Memory => r(
            name,
            Status::Pass,
            format!(
                "{}: 64 MiB over a nearly full {} refused, 1 MiB into an empty slice allowed",
                u.user,
                crate::units::format_human_bytes(max)
            ),
            &[],
        ),
        (o, w) => r(
            name,
            Status::Fail,
            format!("over quota gave {o:?}; within quota gave {w:?}"),
            &[],
        ),
    }
}

fn check_psi(ctx: &Ctx) -> CheckResult {
    let name = "psi";
    let slices = match crate::cgroup::walk(&ctx.env.cgroup_root) {
        Ok(w) => w.slices,
        Err(e) => return r(name, Status::Fail, e.to_string(), &[]),
    };
    if slices.is_empty() {
        return r(
            name,
            Status::Skip,
            format!("no user slice under {} yet", ctx.env.cgroup_root.display()),
            &[],
        );
    }
    let mut missing = Vec::new();
    for s in &slices {
        for res in ["memory", "cpu"] {
            match s.dir.psi(res) {
                Ok(Some(_)) => {}
                Ok(None) => missing.push(format!(
                    "{}/{res}.pressure: not supported (boot with psi=1)",
                    s.user
                )),
                Err(e) => missing.push(e.to_string()),
            }
        }
    }
    if missing.is_empty() {
        r(
            name,
            Status::Pass,
            format!(
                "memory and cpu pressure readable in {} user slice(s)",
                slices.len()
            ),
            &[],
        )
    } else {
        r(name, Status::Fail, missing.join("; "), &[])
    }
}

fn check_collector(ctx: &Ctx) -> CheckResult {
    let name = "collector-deployed";
    let enabled = |unit: &str| {
        std::process::Command::new(&ctx.env.systemctl)
            .args(["is-enabled", unit])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    if enabled("ds01-monitor.service") == "enabled" {
        return r(name, Status::Pass, "ds01-monitor.service is enabled", &[]);
    }
    let timer = enabled("ds01-collect.timer");
    if timer == "enabled" {
        return r(
            name,
            Status::Pass,
            "ds01-collect.timer is enabled (no lifecycle limits unless `ds01 lifecycle` runs from cron)",
            &[],
        );
    }
    if ctx.env.cron_file.exists() {
        return r(
            name,
            Status::Pass,
            format!("{} is installed", ctx.env.cron_file.display()),
            &[],
        );
    }
    r(
        name,
        Status::Fail,
        format!(
            "neither ds01-monitor.service nor ds01-collect.timer is enabled (systemctl says {timer:?} for the timer) nor {} exists",
            ctx.env.cron_file.display()
        ),
        &[],
    )
}

fn check_stats(ctx: &Ctx) -> CheckResult {
    let name = "stats-recent";
    let text = match std::fs::read_to_string(&ctx.env.stats_log) {
        Ok(t) => t,
        Err(e) => {
            return r(
                name,
                Status::Fail,
                format!("cannot read {}: {e}", ctx.env.stats_log.display()),
                &[],
            );
        }
    };
    let last = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| {
            v.get("timestamp")
                .and_then(|t| t.as_str())
                .and_then(crate::timespec::parse_log_time)
        });
    match last {
        Some(ts) => {
            let age = jiff::Timestamp::now().duration_since(ts).as_secs();
            if age <= 120 {
                r(
                    name,
                    Status::Pass,
                    format!("last stats line {age} s ago"),
                    &[],
                )
            } else {
                r(
                    name,
                    Status::Fail,
                    format!(
                        "last stats line {age} s ago (expected within 120 s: is the collector running?)"
                    ),
                    &[],
                )
            }
        }
        None => r(
            name,
            Status::Fail,
            format!("{} has no stats line", ctx.env.stats_log.display()),
            &[],
        ),
    }
}

fn check_events(ctx: &Ctx) -> CheckResult {
    let name = "events-writable";
    let p = &ctx.env.events_log;
    match std::fs::OpenOptions::new().append(true).open(p) {
        Ok(_) => r(
            name,
            Status::Pass,
            format!("{} is writable", p.display()),
            &[],
        ),
        Err(e) => r(name, Status::Fail, format!("{}: {e}", p.display()), &[]),
    }
}

/// Where the collector and the monitor keep their state (gpu.json): as they
/// default, `DS01_STATE_DIR` else `/var/lib/ds01/resource-stats`.
fn collector_state_dir() -> PathBuf {
    std::env::var_os("DS01_STATE_DIR").map_or_else(
        || PathBuf::from(crate::collect::DEFAULT_STATE_DIR),
        PathBuf::from,
    )
}

/// NVML answers, every GPU reads, its MIG layout matches `nvidia-smi -L` (what the
/// wrapper weighs requests with), and the monitor keeps gpu.json fresh.
fn check_gpu() -> CheckResult {
    let name = "gpu";
    let mut source = match crate::gpu::open() {
        crate::gpu::Opened::Source(s) => s,
        crate::gpu::Opened::NoGpus(why) => {
            return r(name, Status::Skip, format!("no GPUs: {why}"), &[]);
        }
        crate::gpu::Opened::Failed(why) => return r(name, Status::Fail, why, &[]),
    };
    let snap = match source.sample() {
        Ok(s) => s,
        Err(e) => return r(name, Status::Fail, e, &[]),
    };
    let mut problems: Vec<String> = snap
        .gpus
        .iter()
        .filter_map(|g| g.error.as_ref().map(|e| format!("GPU {}: {e}", g.index)))
        .collect();
    problems.extend(crate::gpu::layout_diff(
        &snap,
        &crate::docker::gpu::inventory(),
    ));
    let migs: usize = snap.gpus.iter().map(|g| g.migs.len()).sum();
    let now = jiff::Timestamp::now();
    let monitor = match crate::gpu::report::load(&collector_state_dir()).and_then(|g| g.age_s(now))
    {
        Some(s) if s <= crate::gpu::report::FRESH_S => {
            format!("; the monitor's gpu.json is {s} s old")
        }
        Some(s) => format!("; the monitor's gpu.json is {s} s old (is ds01-monitor running?)"),
        None => "; no gpu.json from the monitor yet".into(),
    };
    let detail = format!(
        "{}: driver {}, {} GPU(s), {migs} MIG instance(s){monitor}",
        source.describe(),
        snap.driver_version.as_deref().unwrap_or("?"),
        snap.gpus.len()
    );
    if problems.is_empty() {
        r(name, Status::Pass, detail, &[])
    } else {
        r(
            name,
            Status::Fail,
            format!("{detail}; {}", problems.join("; ")),
            &[],
        )
    }
}

fn check_greeting(ctx: &Ctx) -> CheckResult {
    let name = "greeting";
    let Some(cfg) = &ctx.cfg else {
        return no_config(name, &[]);
    };
    let Some(u) = ctx.subject().or_else(|| cfg.all_users().into_iter().next()) else {
        return r(name, Status::Skip, "no configured user", &[]);
    };
    let paths = crate::greet::GreetPaths {
        cgroup_root: ctx.env.cgroup_root.clone(),
        events_log: ctx.env.events_log.clone(),
        alerts_dir: ctx.env.alerts_dir.clone(),
        banner: ctx.env.config.with_file_name("banner.txt"),
        state_dir: collector_state_dir(),
    };
    let start = std::time::Instant::now();
    let text = crate::greet::render(cfg, &u, &paths, jiff::Timestamp::now(), false);
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    if text.contains(&u.user) {
        r(
            name,
            Status::Pass,
            format!("greeting for {} rendered in {ms:.1} ms", u.user),
            &[],
        )
    } else {
        r(
            name,
            Status::Fail,
            format!("greeting for {} did not name the user: {text:?}", u.user),
            &[],
        )
    }
}
