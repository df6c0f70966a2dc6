//! Where lifecycle's facts come from: the Engine API (containers, stop, remove) and
//! the kernel (a container scope's `cpu.stat`, its network namespace's
//! `/proc/<pid>/net/dev`) and `nvidia-smi` for GPU utilisation. Behind two traits so
//! the rules are tested against fakes.

use super::{Container, GpuSignal, RunState, Sample};
use crate::docker::engine::{Engine, EngineError, percent_encode};
use crate::docker::gpu;
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

pub trait Docker {
    /// Every container labelled `ds01.user`, running or not.
    fn containers(&mut self) -> Result<Vec<Container>, String>;
    /// Stop these `(id, grace seconds)` at once; one result each.
    fn stop_all(&mut self, stops: &[(String, u64)]) -> Vec<Result<(), String>>;
    fn remove(&mut self, id: &str) -> Result<(), String>;
    /// GPU devices on the host (0 = none).
    fn gpu_devices(&self) -> usize;
}

pub trait Probe {
    /// Called once per pass with the running containers, before any `sample`.
    fn prepare(&mut self, running: &[&Container]);
    /// `slice`: the owner's slice directory relative to the `ds01.slice` root
    /// (`ds01-<group>.slice/ds01-<group>-<user>.slice`), where the wrapper and the
    /// proxy put the container's scope.
    fn sample(&self, c: &Container, slice: &std::path::Path, now: jiff::Timestamp) -> Sample;
}

/// The Engine API. Inspects are cached per container and repeated only when its
/// state changes or its init process is gone (a restart).
pub struct EngineDocker {
    pub engine: Engine,
    /// Sockets to try, in order, when the current one refuses connections.
    pub sockets: Vec<PathBuf>,
    pub inventory: gpu::Inventory,
    pub proc_root: PathBuf,
    cache: HashMap<String, Container>,
}

impl EngineDocker {
    /// `sockets`: where the daemon may be, in order of preference (never empty).
    pub fn new(sockets: Vec<PathBuf>, inventory: gpu::Inventory, proc_root: PathBuf) -> Self {
        let first = sockets
            .first()
            .cloned()
            .unwrap_or_else(|| PathBuf::from(crate::docker::engine::DEFAULT_SOCKET));
        EngineDocker {
            engine: Engine::new(first),
            sockets,
            inventory,
            proc_root,
            cache: HashMap::new(),
        }
    }

    /// The container list from the first socket that answers (remembered).
    fn list(&mut self, path: &str) -> Result<Value, String> {
        let mut last = None;
        let mut order: Vec<PathBuf> = vec![self.engine.socket.clone()];
        order.extend(
            self.sockets
                .iter()
                .filter(|s| **s != self.engine.socket)
                .cloned(),
        );
        for sock in order {
            let e = Engine::new(sock);
            match e.get(path) {
                Ok(v) => {
                    self.engine.socket = e.socket;
                    return Ok(v);
                }
                Err(err @ EngineError::Connect { .. }) => last = Some(err.to_string()),
                Err(err) => return Err(err.to_string()),
            }
        }
        Err(last.unwrap_or_else(|| "no Docker socket to try".into()))
    }
}

fn state_of(s: &str) -> RunState {
    match s {
        "running" => RunState::Running,
        "exited" | "dead" => RunState::Exited,
        "created" => RunState::Created,
        other => RunState::Other(other.to_string()),
    }
}

/// A Docker time (`0001-01-01T00:00:00Z` = never).
fn docker_time(v: Option<&Value>) -> Option<jiff::Timestamp> {
    let t: jiff::Timestamp = v?.as_str()?.parse().ok()?;
    (t.as_second() > 0).then_some(t)
}

/// A [`Container`] from `GET /containers/{id}/json`.
pub fn from_inspect(i: &Value) -> Option<Container> {
    let label = |k: &str| {
        i.pointer("/Config/Labels")
            .and_then(|l| l.get(k))
            .and_then(Value::as_str)
    };
    let user = label("ds01.user")?.to_string();
    let id = i.get("Id")?.as_str()?.to_string();
    let mut gpus: Vec<String> = Vec::new();
    for r in i
        .pointer("/HostConfig/DeviceRequests")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(ids) = r.get("DeviceIDs").and_then(Value::as_array)
            && !ids.is_empty()
        {
            gpus.extend(ids.iter().filter_map(|x| x.as_str().map(str::to_string)));
        } else if r.get("Count").and_then(Value::as_i64).unwrap_or(0) != 0 {
            gpus.push("all".into());
        }
    }
    if gpus.is_empty()
        && let Some(env) = i.pointer("/Config/Env").and_then(Value::as_array)
    {
        for e in env.iter().filter_map(Value::as_str) {
            if let Some(v) = e.strip_prefix("NVIDIA_VISIBLE_DEVICES=")
                && !v.is_empty()
                && v != "void"
                && v != "none"
            {
                gpus.extend(v.split(',').map(|s| s.trim().to_string()));
            }
        }
    }
    Some(Container {
        name: i.get("Name").and_then(Value::as_str).map_or_else(
            || id.chars().take(12).collect(),
            |n| n.trim_start_matches('/').to_string(),
        ),
        id,
        user,
        ctype: label("ds01.container_type")
            .unwrap_or("unknown")
            .to_string(),
        state: state_of(
            i.pointer("/State/Status")
                .and_then(Value::as_str)
                .unwrap_or(""),
        ),
        created: docker_time(i.get("Created")).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        started: docker_time(i.pointer("/State/StartedAt")),
        finished: docker_time(i.pointer("/State/FinishedAt")),
        pid: i
            .pointer("/State/Pid")
            .and_then(Value::as_u64)
            .filter(|p| *p > 0)
            .map(|p| p as u32),
        gpus,
        protected_label: label("ds01.protected") == Some("true"),
    })
}

impl Docker for EngineDocker {
    fn containers(&mut self) -> Result<Vec<Container>, String> {
        let filters = serde_json::json!({ "label": ["ds01.user"] }).to_string();
        let list = self.list(&format!(
            "/containers/json?all=1&filters={}",
            percent_encode(&filters)
        ))?;
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for entry in list.as_array().into_iter().flatten() {
            let Some(id) = entry.get("Id").and_then(Value::as_str) else {
                continue;
            };
            seen.insert(id.to_string());
            let state = state_of(entry.get("State").and_then(Value::as_str).unwrap_or(""));
            let fresh = self.cache.get(id).is_some_and(|c| {
                c.state == state
                    && (state != RunState::Running
                        || c.pid
                            .is_some_and(|p| self.proc_root.join(p.to_string()).exists()))
            });
            if !fresh {
                match self.engine.inspect(id) {
                    Ok(i) => {
                        if let Some(c) = from_inspect(&i) {
                            self.cache.insert(id.to_string(), c);
                        }
                    }
                    // Gone between the list and the inspect.
                    Err(EngineError::Status { status: 404, .. }) => continue,
                    Err(e) => return Err(e.to_string()),
                }
            }
            if let Some(c) = self.cache.get(id) {
                out.push(c.clone());
            }
        }
        self.cache.retain(|id, _| seen.contains(id));
        Ok(out)
    }

    fn stop_all(&mut self, stops: &[(String, u64)]) -> Vec<Result<(), String>> {
        let engine = self.engine.clone();
        let stops = stops.to_vec();
        let n = stops.len();
        let run = async move {
            let mut set = tokio::task::JoinSet::new();
            for (i, (id, grace)) in stops.into_iter().enumerate() {
                let mut e = engine.clone();
                e.timeout = Duration::from_secs(grace + 30);
                set.spawn(async move {
                    let path = format!("/containers/{}/stop?t={grace}", percent_encode(&id));
                    let r = match e.post_empty_async(&path).await {
                        // 304: already stopped.
                        Ok(s) if (200..300).contains(&s) || s == 304 => Ok(()),
                        Ok(s) => Err(format!("docker stop {id}: HTTP {s}")),
                        Err(e) => Err(e.to_string()),
                    };
                    (i, r)
                });
            }
            let mut out: Vec<Result<(), String>> = vec![Err("not run".into()); n];
            while let Some(done) = set.join_next().await {
                if let Ok((i, r)) = done {
                    out[i] = r;
                }
            }
            out
        };
        match crate::docker::engine::block_on(run) {
            Ok(r) => r,
            Err(e) => (0..n).map(|_| Err(e.to_string())).collect(),
        }
    }

    fn remove(&mut self, id: &str) -> Result<(), String> {
        let path = format!("/containers/{}", percent_encode(id));
        match crate::docker::engine::block_on(self.engine.delete_async(&path)) {
            Ok(Ok(s)) if (200..300).contains(&s) || s == 404 => Ok(()),
            Ok(Ok(s)) => Err(format!("docker rm {id}: HTTP {s}")),
            Ok(Err(e)) | Err(e) => Err(e.to_string()),
        }
    }

    fn gpu_devices(&self) -> usize {
        self.inventory.all().0
    }
}

/// The kernel and the GPU source (NVML, or a replayed snapshot).
pub struct RealProbe {
    pub cgroup_root: PathBuf,
    pub proc_root: PathBuf,
    /// Every container scope in the tree, walked at most once a pass and only
    /// when a scope is not where its owner's slice says (an admin's own parent).
    scopes: std::cell::OnceCell<HashMap<String, PathBuf>>,
    /// `cpu.stat` files kept open between passes (on cgroupfs: one `pread` a look).
    files: std::sync::Arc<crate::cgroup::OpenFiles>,
    /// GPU utilisation by every device name ([`crate::gpu::utilisation_map`]);
    /// `None` = not read (or unreadable).
    gpu_util: Option<HashMap<String, f64>>,
    /// Opened at the first pass with a GPU container, kept after.
    gpu: Option<Result<Box<dyn crate::gpu::Source>, String>>,
}

impl RealProbe {
    pub fn new(cgroup_root: PathBuf, proc_root: PathBuf) -> Self {
        RealProbe {
            cgroup_root,
            proc_root,
            scopes: std::cell::OnceCell::new(),
            files: std::sync::Arc::default(),
            gpu_util: None,
            gpu: None,
        }
    }

    fn cpu_usec(&self, dir: PathBuf) -> Option<Option<u64>> {
        let mut d = crate::cgroup::CgroupDir::new(dir);
        d.open_files = crate::cgroup::Shared(Some(std::sync::Arc::clone(&self.files)));
        d.cpu_usage_usec().ok()
    }
}

/// Bytes received + sent on every interface but `lo`, from `/proc/<pid>/net/dev`.
pub fn parse_net_dev(text: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut any = false;
    for line in text.lines().skip(2) {
        let (iface, rest) = line.split_once(':')?;
        any = true;
        if iface.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        total = total.saturating_add(*f.first()?).saturating_add(*f.get(8)?);
    }
    any.then_some(total)
}

impl Probe for RealProbe {
    fn prepare(&mut self, running: &[&Container]) {
        self.scopes = std::cell::OnceCell::new();
        // Close the kept files of containers that stopped.
        let live: std::collections::HashSet<String> = running
            .iter()
            .map(|c| format!("docker-{}.scope", c.id))
            .collect();
        self.files.retain_dirs(|d| {
            d.file_name()
                .is_some_and(|n| live.contains(n.to_string_lossy().as_ref()))
        });
        self.gpu_util = if running.iter().any(|c| !c.gpus.is_empty()) {
            let src = self
                .gpu
                .get_or_insert_with(|| crate::gpu::open().into_result());
            match src {
                Ok(s) => s.sample().ok().map(|s| crate::gpu::utilisation_map(&s)),
                Err(_) => None,
            }
        } else {
            None
        };
    }

    fn sample(&self, c: &Container, slice: &std::path::Path, now: jiff::Timestamp) -> Sample {
        let scope = format!("docker-{}.scope", c.id);
        let cpu_usec = match self.cpu_usec(self.cgroup_root.join(slice).join(&scope)) {
            Some(Some(v)) => Some(v),
            // Not under its owner's slice: find it (one walk a pass at most).
            Some(None) => self
                .scopes
                .get_or_init(|| {
                    let mut m = HashMap::new();
                    if let Ok(w) = crate::cgroup::walk(&self.cgroup_root) {
                        for s in &w.slices {
                            m.extend(crate::cgroup::container_scopes(&s.dir.path));
                        }
                    }
                    m
                })
                .get(&c.id)
                .and_then(|p| self.cpu_usec(p.clone()).flatten()),
            None => None,
        };
        let net_bytes = c.pid.and_then(|pid| {
            std::fs::read_to_string(self.proc_root.join(pid.to_string()).join("net/dev"))
                .ok()
                .and_then(|t| parse_net_dev(&t))
        });
        let gpu = gpu_signal(&c.gpus, self.gpu_util.as_ref());
        Sample {
            at: now,
            cpu_usec,
            net_bytes,
            gpu,
        }
    }
}

/// The busiest of the container's GPUs (`all`: of every GPU).
pub fn gpu_signal(gpus: &[String], util: Option<&HashMap<String, f64>>) -> GpuSignal {
    if gpus.is_empty() {
        return GpuSignal::NoGpu;
    }
    let Some(util) = util else {
        return GpuSignal::Unknown;
    };
    let mut best: Option<f64> = None;
    for g in gpus {
        let vals: Vec<f64> = if g == "all" {
            util.values().copied().collect()
        } else {
            match util.get(g) {
                Some(v) => vec![*v],
                None => return GpuSignal::Unknown,
            }
        };
        for v in vals {
            best = Some(best.map_or(v, |b: f64| b.max(v)));
        }
    }
    best.map_or(GpuSignal::Unknown, GpuSignal::Util)
}

/// The Docker sockets a command asks, in order: the one given; else for an admin
/// the real daemon's ([`default_sockets`]); else the caller's own (`DOCKER_HOST`,
/// the proxy when it is on: a non-admin sees their own containers there).
pub fn sockets_for(explicit: Option<&std::path::Path>, admin: bool) -> Vec<PathBuf> {
    match explicit {
        Some(p) => vec![p.to_path_buf()],
        None if admin => default_sockets(),
        None => vec![Engine::from_env().socket],
    }
}

/// Where the real daemon is, in order: the root-only socket the proxy forwards to
/// (when the proxy is on), then `DOCKER_HOST` / the default. A socket file can
/// outlive its listener (the proxy switched off), so [`EngineDocker`] moves on to
/// the next one whenever a connection is refused.
pub fn default_sockets() -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from(crate::proxy::DEFAULT_UPSTREAM)];
    let env = Engine::from_env().socket;
    if !v.contains(&env) {
        v.push(env);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn net_dev_sums_all_but_loopback() {
        let t = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo: 1000 10 0 0 0 0 0 0 1000 10 0 0 0 0 0 0\n  eth0: 5000 7 0 0 0 0 0 0 300 3 0 0 0 0 0 0\n";
        assert_eq!(parse_net_dev(t), Some(5300));
        assert_eq!(parse_net_dev("garbage"), None);
    }

    #[test]
    fn gpu_signal_takes_the_busiest_and_unknown_is_busy() {
        let u: HashMap<String, f64> = [
            ("0".to_string(), 3.0),
            ("GPU-aaa".to_string(), 3.0),
            ("1".to_string(), 80.0),
            ("GPU-bbb".to_string(), 80.0),
        ]
        .into();
        assert_eq!(gpu_signal(&[], Some(&u)), GpuSignal::NoGpu);
        assert_eq!(gpu_signal(&["0".into()], Some(&u)), GpuSignal::Util(3.0));
        assert_eq!(
            gpu_signal(&["GPU-aaa".into(), "1".into()], Some(&u)),
            GpuSignal::Util(80.0)
        );
        assert_eq!(gpu_signal(&["all".into()], Some(&u)), GpuSignal::Util(80.0));
        assert_eq!(gpu_signal(&["2".into()], Some(&u)), GpuSignal::Unknown);
        assert_eq!(gpu_signal(&["0".into()], None), GpuSignal::Unknown);
    }

    #[test]
    fn a_scope_outside_its_owners_slice_is_found_by_a_walk() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = d.path().join("ds01.slice");
        let at = |user: &str, id: &str| {
            let p = root
                .join("ds01-student.slice")
                .join(format!("ds01-student-{user}.slice"))
                .join(format!("docker-{id}.scope"));
            std::fs::create_dir_all(&p).expect("mkdir");
            std::fs::write(
                p.join("cpu.stat"),
                format!("usage_usec {}\n", id.len() * 1000),
            )
            .expect("write");
        };
        at("alice", "aa");
        at("bob", "bbb"); // alice's container, placed by an admin under bob's slice
        let mut probe = RealProbe::new(root, d.path().join("proc"));
        let c = |id: &str| Container {
            id: id.into(),
            name: id.into(),
            user: "alice".into(),
            ctype: "docker".into(),
            state: RunState::Running,
            created: jiff::Timestamp::UNIX_EPOCH,
            started: None,
            finished: None,
            pid: None,
            gpus: vec![],
            protected_label: false,
        };
        let (a, b, gone) = (c("aa"), c("bbb"), c("zz"));
        probe.prepare(&[&a, &b, &gone]);
        let slice = Path::new("ds01-student.slice/ds01-student-alice.slice");
        let now = jiff::Timestamp::UNIX_EPOCH;
        assert_eq!(probe.sample(&a, slice, now).cpu_usec, Some(2000));
        assert_eq!(probe.sample(&b, slice, now).cpu_usec, Some(3000));
        assert_eq!(probe.sample(&gone, slice, now).cpu_usec, None);
        assert_eq!(
            probe.sample(&a, slice, now).net_bytes,
            None,
            "no pid: no network"
        );
    }

    #[test]
    fn inspect_to_container() {
        let i = serde_json::json!({
            "Id": "abc123", "Name": "/alice-train", "Created": "2026-12-01T10:00:00.5Z",
            "Config": {"Labels": {"ds01.user": "alice", "ds01.container_type": "compose", "ds01.protected": "true"},
                       "Env": ["NVIDIA_VISIBLE_DEVICES=1,2"]},
            "State": {"Status": "running", "StartedAt": "2026-12-01T10:00:01Z", "FinishedAt": "0001-01-01T00:00:00Z", "Pid": 4242},
            "HostConfig": {}
        });
        let c = from_inspect(&i).expect("ds01 container");
        assert_eq!(c.name, "alice-train");
        assert_eq!(c.ctype, "compose");
        assert_eq!(c.state, RunState::Running);
        assert!(c.finished.is_none() && c.started.is_some() && c.protected_label);
        assert_eq!(c.gpus, ["1", "2"]);
        assert_eq!(c.pid, Some(4242));
        let mut other = i.clone();
        other["Config"]["Labels"] = serde_json::json!({});
        assert!(from_inspect(&other).is_none());
    }
}
