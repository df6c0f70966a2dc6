//! The `docker` wrapper: place every container in its user's slice, label it, fill
//! the per-container defaults, and refuse what would break the user's quota.
//!
//! Flow: [`args::parse`] → (not run/create: exec the real docker untouched) →
//! identity → config → [`Decider::decide`] (pure: per-container maxima, aggregate
//! memory / GPUs / containers, tasks warning) → exec the real docker with the
//! rewritten argv, or refuse with a box and exit 1.

pub mod args;
pub mod engine;
pub mod gpu;
pub mod identity;

use crate::config::{Config, Resolved};
use crate::events::Event;
use crate::units::{Limit, format_human_bytes, format_number, parse_docker_size};
use args::RunArgs;
use gpu::GpuUse;

pub const ADMIN_UNIX_GROUP: &str = "ds01-admin";

/// What is in use by the user right now (from the slice and the Engine API).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// `memory.current` of the user's slice (0 when it does not exist yet).
    pub memory_bytes: u64,
    /// `pids.current` of the slice.
    pub tasks: u64,
    /// Running containers labelled `ds01.user=<user>`: (name, GPU use). `None`
    /// when the Engine API could not be read (those checks are skipped, loudly).
    pub containers: Option<Vec<(String, GpuUse)>>,
}

/// Which quota a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    Memory,
    Gpu,
    Containers,
    PerContainer,
    CgroupParent,
}

impl Quota {
    pub fn event_type(self) -> &'static str {
        match self {
            Quota::Memory => "quota.memory_exceeded",
            Quota::Gpu => "quota.gpu_exceeded",
            Quota::Containers => "quota.containers_exceeded",
            Quota::PerContainer => "quota.container_limit_exceeded",
            Quota::CgroupParent => "quota.cgroup_parent_refused",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub quota: Quota,
    pub asked: String,
    pub in_use: String,
    pub limit: String,
    pub hint: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Run the real docker with these arguments (program name excluded).
    Allow {
        argv: Vec<String>,
        warnings: Vec<String>,
        /// The flags ds01 added.
        added: Vec<String>,
    },
    Refuse(Refusal),
}

/// The container type label: devcontainer / compose / docker.
pub fn container_type(r: &RunArgs) -> &'static str {
    let has_prefix = |p: &str| {
        r.values("label")
            .any(|l| l.split('=').next().is_some_and(|k| k.starts_with(p)))
    };
    if has_prefix("devcontainer.") {
        "devcontainer"
    } else if has_prefix("com.docker.compose.") {
        "compose"
    } else {
        "docker"
    }
}

/// Everything the decision needs; no I/O.
pub struct Decider<'a> {
    pub user: &'a Resolved,
    pub admin: bool,
    pub inventory: &'a gpu::Inventory,
}

impl Decider<'_> {
    pub fn decide(&self, r: &RunArgs, usage: Option<&Usage>) -> Decision {
        let l = &self.user.limits;
        let slice = self.user.slice();
        let mut warnings = Vec::new();
        let mut added: Vec<String> = Vec::new();

        // --cgroup-parent: admins choose their own; nobody else may.
        if r.has("cgroup-parent") {
            if !self.admin {
                return Decision::Refuse(Refusal {
                    quota: Quota::CgroupParent,
                    asked: format!("--cgroup-parent={}", r.value("cgroup-parent").unwrap_or("")),
                    in_use: "-".into(),
                    limit: format!("your containers always run in {slice}"),
                    hint: "remove --cgroup-parent; ds01 places the container for you".into(),
                });
            }
        } else {
            added.push(format!("--cgroup-parent={slice}"));
        }
        added.push("--label".into());
        added.push(format!("ds01.user={}", self.user.slice_user));
        added.push("--label".into());
        added.push("ds01.managed=true".into());
        added.push("--label".into());
        added.push(format!("ds01.container_type={}", container_type(r)));

        // Per-container defaults where the command gave none (the same set as
        // `ds01 limits --docker-args`).
        for (flag, value) in l.docker_defaults() {
            if !r.has(flag) {
                added.push(format!("--{flag}={value}"));
            }
        }
        let argv = r.with_flags(&added);
        if self.admin {
            return Decision::Allow {
                argv,
                warnings,
                added,
            };
        }

        // Per-container maxima.
        let cpus: Option<f64> = r.value("cpus").and_then(|v| v.parse().ok());
        if let (Some(asked), Some(Limit::Value(max))) = (cpus, l.max_cpus)
            && asked > max
        {
            return per_container(
                format!("--cpus={}", format_number(asked)),
                format!("{} CPUs per container", format_number(max)),
            );
        }
        let mem_req: Option<u64> = match r.value("memory") {
            Some(v) => match parse_docker_size(v) {
                Ok(b) => Some(b),
                Err(e) => {
                    warnings.push(format!(
                        "cannot read --memory {v:?} ({e}); Docker will decide"
                    ));
                    None
                }
            },
            None => l.memory.and_then(Limit::value),
        };
        if let (Some(v), Some(asked), Some(Limit::Value(max))) =
            (r.value("memory"), mem_req, l.memory)
            && asked > max
        {
            return per_container(
                format!("--memory={v}"),
                format!("{} memory per container", format_human_bytes(max)),
            );
        }
        let gpu_req = match r.value("gpus") {
            Some(v) => match gpu::parse_gpus_flag(v, self.inventory) {
                Ok(u) => u,
                Err(e) => {
                    return Decision::Refuse(Refusal {
                        quota: Quota::PerContainer,
                        asked: format!("--gpus {v}"),
                        in_use: "-".into(),
                        limit: e,
                        hint: "ds01 limits   (your GPU limits)".into(),
                    });
                }
            },
            None => GpuUse::NONE,
        };
        if let Some(Limit::Value(max)) = l.max_gpu_slots_per_container
            && gpu_req.devices as u64 > max
        {
            return per_container(
                format!(
                    "--gpus {} ({} GPU devices)",
                    r.value("gpus").unwrap_or(""),
                    gpu_req.devices
                ),
                format!("{max} GPU device(s) per container"),
            );
        }
        if l.allow_full_gpu == Some(false) && gpu_req.full_gpu {
            return per_container(
                format!("--gpus {} (a full GPU)", r.value("gpus").unwrap_or("")),
                "MIG instances only: your group may not use a full GPU".into(),
            );
        }

        // Aggregate quotas (no aggregate = unlimited; no usage = API unreadable,
        // already warned about by the caller).
        let Some(usage) = usage else {
            return Decision::Allow {
                argv,
                warnings,
                added,
            };
        };
        let containers = usage.containers.as_deref();
        if let (Some(Limit::Value(max)), Some(containers)) = (l.max_containers_per_user, containers)
        {
            let n = containers.len() as u64;
            if n >= max {
                let names: Vec<&str> = containers.iter().map(|(n, _)| n.as_str()).collect();
                return Decision::Refuse(Refusal {
                    quota: Quota::Containers,
                    asked: "1 more container".into(),
                    in_use: format!("{n} running: {}", names.join(", ")),
                    limit: format!("{max} containers at once"),
                    hint: stop_hint(),
                });
            }
        }
        let agg = self.user.aggregate.as_ref().filter(|a| !a.is_unlimited());
        if let (Some(a), Some(req)) = (agg, mem_req)
            && let Some(Limit::Value(max)) = a.memory_max
            && usage.memory_bytes.saturating_add(req) > max
        {
            return Decision::Refuse(Refusal {
                quota: Quota::Memory,
                asked: format!("{} of memory for this container", format_human_bytes(req)),
                in_use: format!(
                    "{} by your running containers",
                    format_human_bytes(usage.memory_bytes)
                ),
                limit: format!(
                    "{} in total (MemoryMax of {slice})",
                    format_human_bytes(max)
                ),
                hint: stop_hint(),
            });
        }
        if let Some(a) = agg {
            if let (Some(Limit::Value(max)), true, Some(containers)) =
                (a.gpu_limit, gpu_req.devices > 0, containers)
            {
                let held: f64 = containers.iter().map(|(_, g)| g.equivalents).sum();
                if held + gpu_req.equivalents > max + 1e-9 {
                    return Decision::Refuse(Refusal {
                        quota: Quota::Gpu,
                        asked: format!(
                            "{} GPU-equivalents",
                            format_number(round3(gpu_req.equivalents))
                        ),
                        in_use: format!(
                            "{} GPU-equivalents by your running containers",
                            format_number(round3(held))
                        ),
                        limit: format!("{} GPU-equivalents in total", format_number(max)),
                        hint: stop_hint(),
                    });
                }
            }
            if let Some(Limit::Value(t)) = a.tasks_max
                && t > 0
                && usage.tasks * 10 > t * 9
            {
                warnings.push(format!(
                        "your containers use {} of {t} tasks (processes and threads); new processes may fail soon",
                        usage.tasks
                    ));
            }
        }
        Decision::Allow {
            argv,
            warnings,
            added,
        }
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn stop_hint() -> String {
    "docker ps             (your running containers)\ndocker stop NAME      (stop one you no longer need)\nds01 limits           (your limits)".into()
}

fn per_container(asked: String, limit: String) -> Decision {
    Decision::Refuse(Refusal {
        quota: Quota::PerContainer,
        asked,
        in_use: "-".into(),
        limit,
        hint: "ask for less, or leave the flag out to get your default\nds01 limits           (your limits)".into(),
    })
}

impl Refusal {
    /// The box printed to the user.
    pub fn message(&self) -> String {
        let mut s = String::new();
        let rule = "─".repeat(64);
        s.push_str(&format!(
            "┌─ ds01: container not started {}\n",
            "─".repeat(34)
        ));
        let mut row = |k: &str, v: &str| {
            for (i, line) in v.lines().enumerate() {
                let key = if i == 0 { k } else { "" };
                s.push_str(&format!("│ {key:<14} {line}\n"));
            }
        };
        row("You asked for", &self.asked);
        if self.in_use != "-" {
            row("In use", &self.in_use);
        }
        row("Your limit", &self.limit);
        row("To free room", &self.hint);
        s.push_str(&format!("└{rule}\n"));
        s
    }

    pub fn event(&self, user: &Resolved, r: &RunArgs) -> Event {
        Event::new(self.quota.event_type())
            .user(&user.slice_user)
            .source("docker-wrapper")
            .detail("group", user.group.as_str())
            .detail("asked", self.asked.as_str())
            .detail("in_use", self.in_use.as_str())
            .detail("limit", self.limit.as_str())
            .detail("image", r.image().unwrap_or(""))
    }
}

/// Is this user an admin for the wrapper: root, a member of the Unix group
/// `ds01-admin` (or `access_control.admin_group`), in the config's `admin` group, or
/// in `access_control.admin_users`.
pub fn is_admin(cfg: Option<&Config>, uid: u32, user: &str, unix_groups: &[String]) -> bool {
    if uid == 0 {
        return true;
    }
    let admin_group = cfg
        .and_then(|c| c.sections.get("access_control"))
        .and_then(|a| a.get("admin_group"))
        .and_then(|g| g.as_str())
        .unwrap_or(ADMIN_UNIX_GROUP);
    if unix_groups
        .iter()
        .any(|g| g == admin_group || g == ADMIN_UNIX_GROUP)
    {
        return true;
    }
    let Some(cfg) = cfg else {
        return false;
    };
    cfg.admin_users().iter().any(|u| u == user)
        || cfg
            .group("admin")
            .is_some_and(|g| g.members.iter().any(|m| m.name == user))
}
