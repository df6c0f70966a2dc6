//! The `docker` wrapper: place every container in its user's slice, label it, fill
//! the per-container defaults, and refuse what would break the user's quota.
//!
//! Flow: [`args::parse`] → (not run/create: exec the real docker untouched) →
//! identity → config → [`Decider::decide`] (pure: per-container maxima, aggregate
//! memory / GPUs / containers, tasks warning) → exec the real docker with the
//! rewritten argv, or refuse with a box and exit 1.

pub mod args;
pub mod create;
pub mod engine;
pub mod gpu;
pub mod identity;
pub mod security;
pub mod usage;

use crate::config::{Config, Resolved};
use crate::events::Event;
use crate::units::{Limit, format_docker_size, format_human_bytes, format_number};
use args::RunArgs;
pub use create::{Change, Client, CreateRequest};
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
    /// Stopped containers whose GPUs are still held for their owner
    /// (`gpu_hold_after_stop_h` after the stop, so `docker start` works again):
    /// (name, GPU use). They count toward the GPU quota, not the container count.
    pub held_gpus: Vec<(String, GpuUse)>,
}

/// Which quota a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    Memory,
    Gpu,
    Containers,
    PerContainer,
    CgroupParent,
    ReservedLabel,
}

impl Quota {
    pub fn event_type(self) -> &'static str {
        match self {
            Quota::Memory => "quota.memory_exceeded",
            Quota::Gpu => "quota.gpu_exceeded",
            Quota::Containers => "quota.containers_exceeded",
            Quota::PerContainer => "quota.container_limit_exceeded",
            Quota::CgroupParent => "quota.cgroup_parent_refused",
            Quota::ReservedLabel => "quota.reserved_label_refused",
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

/// The wrapper's answer for an argv: run the real docker with these arguments, or
/// refuse.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Run the real docker with these arguments (program name excluded).
    Allow {
        argv: Vec<String>,
        warnings: Vec<String>,
        /// The request the argv stands for, and what ds01 changed in it (as flags:
        /// `Change::flags`), for the `docker.cgroup_inject` event.
        req: CreateRequest,
        changes: Vec<Change>,
    },
    Refuse(Refusal),
}

/// The decision on a create request, for both front ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Allowed with these changes (the wrapper renders them as flags, the proxy
    /// writes them into the body).
    Allow {
        changes: Vec<Change>,
        warnings: Vec<String>,
    },
    Refuse(Refusal),
}

/// Labels ds01 owns: set on every container it places, never chosen by a non-admin.
pub const LABEL_USER: &str = "ds01.user";
pub const LABEL_MANAGED: &str = "ds01.managed";
pub const LABEL_TYPE: &str = "ds01.container_type";

/// The container type label: devcontainer / compose from the clients' own labels,
/// else docker (the CLI) or api (SDKs and other API clients).
pub fn container_type(req: &CreateRequest) -> &'static str {
    let has_prefix = |p: &str| req.labels().any(|(k, _)| k.starts_with(p));
    if has_prefix("devcontainer.") {
        "devcontainer"
    } else if has_prefix("com.docker.compose.") {
        "compose"
    } else if req.client == Client::Cli {
        "docker"
    } else {
        "api"
    }
}

/// Everything the decision needs; no I/O.
pub struct Decider<'a> {
    pub user: &'a Resolved,
    pub admin: bool,
    pub inventory: &'a gpu::Inventory,
}

impl Decider<'_> {
    /// The wrapper's decision on `docker run|create` arguments: the argv becomes the
    /// create request the CLI would send, [`Decider::judge`] decides, and the changes
    /// come back as flags inserted before the image.
    pub fn decide(&self, r: &RunArgs, usage: Option<&Usage>) -> Decision {
        let req = match CreateRequest::from_run_args(r) {
            Ok(req) => req,
            Err(e) => {
                return Decision::Refuse(Refusal {
                    quota: Quota::PerContainer,
                    asked: e,
                    in_use: "-".into(),
                    limit: "ds01 must understand every limit a container asks for".into(),
                    hint: "fix the value (docker run --help)\nds01 limits           (your limits)"
                        .into(),
                });
            }
        };
        match self.judge(&req, usage) {
            Verdict::Refuse(rf) => Decision::Refuse(rf),
            Verdict::Allow { changes, warnings } => {
                let added: Vec<String> = changes.iter().flat_map(Change::flags).collect();
                Decision::Allow {
                    argv: r.with_flags(&added),
                    warnings,
                    req,
                    changes,
                }
            }
        }
    }

    /// The one decision on a container create, for the wrapper and the proxy:
    /// placement (cgroup parent, owner labels), per-container defaults, per-container
    /// maxima and the user's aggregate quotas. `usage` = `None`: the aggregate checks
    /// are skipped (the caller could not read it and has said so).
    pub fn judge(&self, req: &CreateRequest, usage: Option<&Usage>) -> Verdict {
        let l = &self.user.limits;
        let slice = self.user.slice();
        let mut warnings = Vec::new();
        let mut changes: Vec<Change> = Vec::new();

        // The cgroup parent: admins choose their own; nobody else may (their own
        // slice is what ds01 would set, e.g. a wrapper in front of the proxy).
        match req.cgroup_parent() {
            Some(p) if p == slice => {}
            Some(p) if !self.admin => {
                return Verdict::Refuse(Refusal {
                    quota: Quota::CgroupParent,
                    asked: format!("--cgroup-parent={p} (HostConfig.CgroupParent)"),
                    in_use: "-".into(),
                    limit: format!("your containers always run in {slice}"),
                    hint: "remove --cgroup-parent; ds01 places the container for you".into(),
                });
            }
            Some(_) => {}
            None => changes.push(Change::CgroupParent(slice.clone())),
        }
        let kind = container_type(req);
        let own = [
            (LABEL_USER, self.user.slice_user.as_str()),
            (LABEL_MANAGED, "true"),
            (LABEL_TYPE, kind),
        ];
        if !self.admin
            && let Some((k, v)) = req.labels().find(|(k, v)| {
                k.starts_with("ds01.") && !own.iter().any(|(ok, ov)| ok == k && ov == v)
            })
        {
            return Verdict::Refuse(Refusal {
                quota: Quota::ReservedLabel,
                asked: format!("--label {k}={v}"),
                in_use: "-".into(),
                limit: "labels under ds01. are set by ds01 (they say who owns a container)".into(),
                hint: "remove the label".into(),
            });
        }
        for (k, v) in own {
            changes.push(Change::Label(k.into(), v.into()));
        }
        // Per-container defaults where the request set none (the same set as
        // `ds01 limits --docker-args`).
        for (flag, value) in l.docker_defaults() {
            if !req.sets_default(flag) {
                changes.push(Change::Default(flag, value));
            }
        }
        if self.admin {
            return Verdict::Allow { changes, warnings };
        }
        if let Some(rf) = self.per_container_maxima(req) {
            return Verdict::Refuse(rf);
        }
        let gpu_req = req.gpus(self.inventory);
        if let Some(Limit::Value(max)) = l.max_gpu_slots_per_container
            && gpu_req.devices as u64 > max
        {
            return Verdict::Refuse(per_container(
                format!("{} GPU devices ({})", gpu_req.devices, req.gpus_text()),
                format!("{max} GPU device(s) per container"),
            ));
        }
        if l.allow_full_gpu == Some(false) && gpu_req.full_gpu {
            return Verdict::Refuse(per_container(
                format!("a full GPU ({})", req.gpus_text()),
                "MIG instances only: your group may not use a full GPU".into(),
            ));
        }

        // Aggregate quotas (no aggregate = unlimited; no usage = unreadable, already
        // said by the caller).
        let Some(usage) = usage else {
            return Verdict::Allow { changes, warnings };
        };
        let mem_req = req.memory().or(l.memory.and_then(Limit::value));
        let containers = usage.containers.as_deref();
        if let (Some(Limit::Value(max)), Some(containers)) = (l.max_containers_per_user, containers)
        {
            let n = containers.len() as u64;
            if n >= max {
                let names: Vec<&str> = containers.iter().map(|(n, _)| n.as_str()).collect();
                return Verdict::Refuse(Refusal {
                    quota: Quota::Containers,
                    asked: "1 more container".into(),
                    in_use: format!("{n} running: {}", names.join(", ")),
                    limit: format!("{max} containers at once"),
                    hint: stop_hint(),
                });
            }
        }
        let agg = self.user.aggregate.as_ref().filter(|a| !a.is_unlimited());
        if let (Some(a), Some(req_b)) = (agg, mem_req)
            && let Some(Limit::Value(max)) = a.memory_max
            && usage.memory_bytes.saturating_add(req_b) > max
        {
            return Verdict::Refuse(Refusal {
                quota: Quota::Memory,
                asked: format!("{} of memory for this container", format_human_bytes(req_b)),
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
                let running: f64 = containers.iter().map(|(_, g)| g.equivalents).sum();
                let stopped: f64 = usage.held_gpus.iter().map(|(_, g)| g.equivalents).sum();
                let held = running + stopped;
                if held + gpu_req.equivalents > max + 1e-9 {
                    let in_use = if usage.held_gpus.is_empty() {
                        format!(
                            "{} GPU-equivalents by your running containers",
                            format_number(round3(held))
                        )
                    } else {
                        let names: Vec<&str> =
                            usage.held_gpus.iter().map(|(n, _)| n.as_str()).collect();
                        format!(
                            "{} GPU-equivalents: {} by your running containers, {} held for stopped ones ({}; gpu_hold_after_stop_h)",
                            format_number(round3(held)),
                            format_number(round3(running)),
                            format_number(round3(stopped)),
                            names.join(", ")
                        )
                    };
                    return Verdict::Refuse(Refusal {
                        quota: Quota::Gpu,
                        asked: format!(
                            "{} GPU-equivalents",
                            format_number(round3(gpu_req.equivalents))
                        ),
                        in_use,
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
        Verdict::Allow { changes, warnings }
    }

    /// `POST /containers/{id}/update`: what create would refuse per container
    /// (memory, CPUs, pids above the user's maxima) is refused here too. Admins may.
    pub fn judge_update(&self, req: &CreateRequest) -> Option<Refusal> {
        if self.admin {
            return None;
        }
        self.per_container_maxima(req)
    }

    fn per_container_maxima(&self, req: &CreateRequest) -> Option<Refusal> {
        let l = &self.user.limits;
        if let (Some(asked), Some(Limit::Value(max))) = (req.cpus(), l.max_cpus)
            && asked > max + 1e-9
        {
            return Some(per_container(
                format!("--cpus={}", create::cpus_text(asked)),
                format!("{} CPUs per container", format_number(max)),
            ));
        }
        if let (Some(asked), Some(Limit::Value(max))) = (req.memory(), l.memory)
            && asked > max
        {
            return Some(per_container(
                format!("--memory={}", format_docker_size(asked)),
                format!("{} memory per container", format_human_bytes(max)),
            ));
        }
        if let (Some(asked), Some(Limit::Value(max))) = (req.pids_limit(), l.pids_limit)
            && (asked < 0 || asked as u64 > max)
        {
            let asked = if asked < 0 {
                "--pids-limit=-1 (unlimited)".to_string()
            } else {
                format!("--pids-limit={asked}")
            };
            return Some(per_container(
                asked,
                format!("{max} processes per container"),
            ));
        }
        None
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn stop_hint() -> String {
    "docker ps             (your running containers)\ndocker stop NAME      (stop one you no longer need)\nds01 limits           (your limits)".into()
}

fn per_container(asked: String, limit: String) -> Refusal {
    Refusal {
        quota: Quota::PerContainer,
        asked,
        in_use: "-".into(),
        limit,
        hint: "ask for less, or leave the flag out to get your default\nds01 limits           (your limits)".into(),
    }
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

    /// The same refusal as one paragraph, for an API error response (`docker`
    /// prints it after "Error response from daemon: ").
    pub fn api_message(&self) -> String {
        let mut s = format!(
            "ds01: container not started.\n  You asked for: {}",
            self.asked
        );
        if self.in_use != "-" {
            s.push_str(&format!("\n  In use:        {}", self.in_use));
        }
        s.push_str(&format!("\n  Your limit:    {}", self.limit));
        for (i, line) in self.hint.lines().enumerate() {
            let key = if i == 0 { "To free room:" } else { "" };
            s.push_str(&format!("\n  {key:<14} {line}"));
        }
        s
    }

    /// The `quota.*` event; `source` is the front end (`docker-wrapper`, `docker-proxy`).
    pub fn event(
        &self,
        user: &Resolved,
        source: &str,
        req_image: &str,
        name: Option<&str>,
    ) -> Event {
        let mut ev = Event::new(self.quota.event_type())
            .user(&user.slice_user)
            .source(source)
            .detail("group", user.group.as_str())
            .detail("asked", self.asked.as_str())
            .detail("in_use", self.in_use.as_str())
            .detail("limit", self.limit.as_str())
            .detail("image", req_image);
        if let Some(n) = name {
            ev = ev.detail("container", n);
        }
        ev
    }
}

/// The `docker.cgroup_inject` event for an allowed create.
pub fn inject_event(
    user: &Resolved,
    source: &str,
    req: &CreateRequest,
    changes: &[Change],
    admin: bool,
) -> Event {
    let slice = changes
        .iter()
        .find_map(|c| match c {
            Change::CgroupParent(s) => Some(s.clone()),
            _ => None,
        })
        .or_else(|| req.cgroup_parent().map(str::to_string))
        .unwrap_or_default();
    let added: Vec<String> = changes.iter().flat_map(Change::flags).collect();
    let mut ev = Event::new("docker.cgroup_inject")
        .user(&user.slice_user)
        .source(source)
        .detail("group", user.group.as_str())
        .detail("slice", slice)
        .detail("image", req.image())
        .detail("added", added.join(" "));
    if let Some(name) = &req.name {
        ev = ev.detail("container", name.as_str());
    }
    if admin {
        ev = ev.detail("admin", true);
    }
    ev
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CFG: &str = "defaults:\n  max_cpus: 4\n  memory: 1g\n  memory_swap: 2g\n  pids_limit: 512\n  shm_size: 64m\n  max_containers_per_user: 3\n  max_gpu_slots_per_container: 2\ngroups:\n  student:\n    members: [alice]\n    aggregate: {memory_max: 4G, gpu_limit: 2}\n";

    fn config() -> Config {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("resource-limits.yaml");
        std::fs::write(&p, CFG).expect("write");
        crate::config::load(&p).config.expect("config")
    }

    /// A request as both front ends see it: docker run flags, and the body the
    /// docker CLI sends for them.
    fn both(
        mem_mib: Option<u64>,
        cpus_milli: Option<u64>,
        pids: Option<i64>,
        gpus: Option<u8>,
        parent: bool,
        label: Option<(bool, bool)>,
    ) -> (RunArgs, CreateRequest) {
        let mut argv: Vec<String> = vec!["run".into(), "-d".into()];
        let mut hc = serde_json::Map::new();
        let mut labels = serde_json::Map::new();
        if let Some(m) = mem_mib {
            argv.push(format!("--memory={m}m"));
            hc.insert("Memory".into(), serde_json::json!(m << 20));
        }
        if let Some(c) = cpus_milli {
            argv.push(format!("--cpus={}", c as f64 / 1000.0));
            hc.insert("NanoCpus".into(), serde_json::json!(c * 1_000_000));
        }
        if let Some(p) = pids {
            argv.push(format!("--pids-limit={p}"));
            hc.insert("PidsLimit".into(), serde_json::json!(p));
        }
        if let Some(g) = gpus {
            argv.push(format!("--gpus={g}"));
            hc.insert(
                "DeviceRequests".into(),
                serde_json::json!([{"Driver": "", "Count": g, "DeviceIDs": null, "Capabilities": [["gpu"]]}]),
            );
        }
        if parent {
            argv.push("--cgroup-parent=system.slice".into());
            hc.insert("CgroupParent".into(), serde_json::json!("system.slice"));
        }
        if let Some((reserved, own)) = label {
            let (k, v) = match (reserved, own) {
                (true, true) => ("ds01.user", "alice"),
                (true, false) => ("ds01.user", "bob"),
                _ => ("team", "x"),
            };
            argv.push("-l".into());
            argv.push(format!("{k}={v}"));
            labels.insert(k.into(), serde_json::json!(v));
        }
        argv.push("img".into());
        let args::Command::Run(r) = args::parse(&argv) else {
            panic!("run expected");
        };
        let mut body = serde_json::json!({"Image": "img", "HostConfig": hc});
        if !labels.is_empty() {
            body["Labels"] = serde_json::Value::Object(labels);
        }
        (
            r,
            CreateRequest {
                name: None,
                body,
                client: Client::Cli,
            },
        )
    }

    proptest! {
        /// The wrapper (argv) and the proxy (body) decide alike: the same refusal, or
        /// the same changes — the flags the wrapper adds are exactly the changes the
        /// proxy writes into the body.
        #[test]
        fn argv_and_body_decisions_agree(
            mem in proptest::option::of(1u64..8192),
            cpus in proptest::option::of(1u64..8000),
            pids in proptest::option::of(prop_oneof![Just(-1i64), 1i64..2000]),
            gpus in proptest::option::of(0u8..4),
            parent in any::<bool>(),
            label in proptest::option::of((any::<bool>(), any::<bool>())),
            admin in any::<bool>(),
            used_mib in 0u64..4096,
            running in 0usize..4,
        ) {
            let cfg = config();
            let user = cfg.resolve("alice");
            let inv = gpu::Inventory::default();
            let d = Decider { user: &user, admin, inventory: &inv };
            let usage = Usage {
                memory_bytes: used_mib << 20,
                tasks: 0,
                containers: Some((0..running).map(|i| (format!("c{i}"), GpuUse { devices: 1, equivalents: 1.0, full_gpu: true })).collect()),
                held_gpus: Vec::new(),
            };
            let (r, body) = both(mem, cpus, pids, gpus, parent, label);
            let from_argv = d.decide(&r, Some(&usage));
            let from_body = d.judge(&body, Some(&usage));
            match (from_argv, from_body) {
                (Decision::Refuse(a), Verdict::Refuse(b)) => prop_assert_eq!(a.quota, b.quota),
                (Decision::Allow { changes: from_flags, .. }, Verdict::Allow { changes, .. }) => {
                    prop_assert_eq!(&from_flags, &changes);
                    // And written into the body, every change is there.
                    let mut b = body.body.clone();
                    for c in &changes { c.apply(&mut b); }
                    let after = CreateRequest { name: None, body: b, client: Client::Cli };
                    if !admin {
                        let slice = user.slice();
                        prop_assert_eq!(after.cgroup_parent(), Some(slice.as_str()));
                        prop_assert_eq!(after.label("ds01.user"), Some("alice"));
                        prop_assert!(after.memory().is_some());
                    }
                }
                (a, b) => prop_assert!(false, "argv {:?} vs body {:?}", a, b),
            }
        }
    }
}
