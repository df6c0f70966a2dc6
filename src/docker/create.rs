//! The one shape every container creation is decided on: the Engine API's
//! `POST /containers/create` body. The proxy reads it off the wire; the `docker`
//! wrapper builds it from its argv ([`CreateRequest::from_run_args`]), the way the
//! docker CLI would. [`crate::docker::Decider::judge`] decides on it and answers with
//! [`Change`]s, which the proxy writes into the body and the wrapper renders as flags.

use super::args::RunArgs;
use super::gpu;
use crate::units::{format_number, parse_docker_size};
use serde_json::{Map, Value, json};

/// Who sent the request, as far as it matters for the `ds01.container_type` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// The docker CLI (the wrapper, or `User-Agent: Docker-Client/…`).
    Cli,
    /// Anything else on the API: SDKs, tools.
    Api,
}

impl Client {
    /// From an HTTP `User-Agent` header.
    pub fn from_user_agent(ua: Option<&str>) -> Client {
        match ua {
            Some(ua) if ua.starts_with("Docker-Client/") => Client::Cli,
            _ => Client::Api,
        }
    }
}

/// A container-create request: the JSON body and the `name` query parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateRequest {
    pub name: Option<String>,
    /// Always a JSON object.
    pub body: Value,
    pub client: Client,
}

/// One thing ds01 sets on a container it allows.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    CgroupParent(String),
    Label(String, String),
    /// A per-container default the request did not set: the docker flag name
    /// (`memory`, `cpus`, …) and its value as `ds01 limits --docker-args` prints it.
    Default(&'static str, String),
}

impl Change {
    /// As `docker run` flags.
    pub fn flags(&self) -> Vec<String> {
        match self {
            Change::CgroupParent(s) => vec![format!("--cgroup-parent={s}")],
            Change::Label(k, v) => vec!["--label".into(), format!("{k}={v}")],
            Change::Default(flag, v) => vec![format!("--{flag}={v}")],
        }
    }

    /// Written into a create body (an object; `HostConfig` is created if missing).
    pub fn apply(&self, body: &mut Value) {
        let Some(obj) = body.as_object_mut() else {
            return;
        };
        match self {
            Change::CgroupParent(s) => {
                host_config_mut(obj).insert("CgroupParent".into(), json!(s));
            }
            Change::Label(k, v) => {
                let labels = obj.entry("Labels").or_insert_with(|| json!({}));
                if !labels.is_object() {
                    *labels = json!({});
                }
                if let Some(l) = labels.as_object_mut() {
                    l.insert(k.clone(), json!(v));
                }
            }
            Change::Default(flag, v) => {
                if let Some((key, value)) = default_as_body_field(flag, v) {
                    host_config_mut(obj).insert(key.into(), value);
                }
            }
        }
    }
}

fn host_config_mut(obj: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let hc = obj.entry("HostConfig").or_insert_with(|| json!({}));
    if !hc.is_object() {
        *hc = json!({});
    }
    match hc {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// A docker flag default → the `HostConfig` field the CLI would send for it.
fn default_as_body_field(flag: &str, v: &str) -> Option<(&'static str, Value)> {
    Some(match flag {
        "cpus" => ("NanoCpus", json!(cpus_to_nano(v.parse().ok()?))),
        "memory" => ("Memory", json!(parse_docker_size(v).ok()?)),
        "memory-swap" if v == "-1" => ("MemorySwap", json!(-1)),
        "memory-swap" => ("MemorySwap", json!(parse_docker_size(v).ok()?)),
        "shm-size" => ("ShmSize", json!(parse_docker_size(v).ok()?)),
        "pids-limit" => ("PidsLimit", json!(v.parse::<i64>().ok()?)),
        _ => return None,
    })
}

fn cpus_to_nano(c: f64) -> i64 {
    (c * 1e9).round() as i64
}

/// A positive number in a JSON field (0, null, absent = not set).
fn positive(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64).filter(|x| *x > 0.0)
}

/// An API request body that must be a JSON object; an empty body is `{}`.
pub fn json_object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("the request body is not a JSON object".into()),
        Err(e) => Err(format!("the request body is not JSON: {e}")),
    }
}

impl CreateRequest {
    /// From an API body. Anything but a JSON object is refused (the daemon would too).
    pub fn from_body(bytes: &[u8], name: Option<String>, client: Client) -> Result<Self, String> {
        let body = Value::Object(json_object(bytes)?);
        Ok(CreateRequest { name, body, client })
    }

    /// What the docker CLI would send for `docker run|create ARGS`, as far as ds01's
    /// decision reads it. A value ds01 cannot read is an error (the real docker would
    /// refuse it too), never a reason to skip the checks.
    pub fn from_run_args(r: &RunArgs) -> Result<Self, String> {
        let mut body = json!({});
        let obj = body.as_object_mut().expect("object");
        if let Some(image) = r.image() {
            obj.insert("Image".into(), json!(image));
        }
        let mut labels = Map::new();
        for l in r.values("label") {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            labels.insert(k.to_string(), json!(v));
        }
        if !labels.is_empty() {
            obj.insert("Labels".into(), Value::Object(labels));
        }
        // `-e NAME` takes the value from the caller's environment, as docker does.
        let env: Vec<String> = r
            .values("env")
            .map(|e| match e.split_once('=') {
                Some(_) => e.to_string(),
                None => format!("{e}={}", std::env::var(e).unwrap_or_default()),
            })
            .collect();
        if !env.is_empty() {
            obj.insert("Env".into(), json!(env));
        }
        let hc = host_config_mut(obj);
        let size = |flag: &str| -> Result<Option<u64>, String> {
            r.value(flag)
                .map(|v| {
                    parse_docker_size(v).map_err(|e| format!("--{flag} {v:?} is not a size: {e}"))
                })
                .transpose()
        };
        if let Some(p) = r.value("cgroup-parent") {
            hc.insert("CgroupParent".into(), json!(p));
        }
        if let Some(m) = size("memory")? {
            hc.insert("Memory".into(), json!(m));
        }
        if let Some(v) = r.value("memory-swap") {
            let s: i64 = if v == "-1" {
                -1
            } else {
                parse_docker_size(v)
                    .map_err(|e| format!("--memory-swap {v:?} is not a size: {e}"))?
                    as i64
            };
            hc.insert("MemorySwap".into(), json!(s));
        }
        if let Some(s) = size("shm-size")? {
            hc.insert("ShmSize".into(), json!(s));
        }
        if let Some(v) = r.value("cpus") {
            let c: f64 = v
                .parse()
                .ok()
                .filter(|c: &f64| c.is_finite() && *c >= 0.0)
                .ok_or_else(|| format!("--cpus {v:?} is not a number of CPUs"))?;
            hc.insert("NanoCpus".into(), json!(cpus_to_nano(c)));
        }
        for (flag, key) in [("cpu-quota", "CpuQuota"), ("cpu-period", "CpuPeriod")] {
            if let Some(v) = r.value(flag) {
                let n: i64 = v
                    .parse()
                    .map_err(|_| format!("--{flag} {v:?} is not a number"))?;
                hc.insert(key.into(), json!(n));
            }
        }
        if let Some(v) = r.value("pids-limit") {
            let n: i64 = v
                .parse()
                .map_err(|_| format!("--pids-limit {v:?} is not a number"))?;
            hc.insert("PidsLimit".into(), json!(n));
        }
        if let Some(v) = r.value("gpus") {
            hc.insert(
                "DeviceRequests".into(),
                json!([gpu::parse_gpus_request(v)?.to_device_request()]),
            );
        }
        security_fields(r, hc)?;
        Ok(CreateRequest {
            name: r.value("name").map(str::to_string),
            body,
            client: Client::Cli,
        })
    }

    fn host(&self) -> Option<&Map<String, Value>> {
        self.body.get("HostConfig").and_then(Value::as_object)
    }

    fn host_field(&self, key: &str) -> Option<&Value> {
        self.host()
            .and_then(|h| h.get(key))
            .filter(|v| !v.is_null())
    }

    pub fn image(&self) -> &str {
        self.body.get("Image").and_then(Value::as_str).unwrap_or("")
    }

    /// The labels the request sets (string values only, as Docker requires).
    pub fn labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.body
            .get("Labels")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")))
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// `HostConfig.CgroupParent`, if set (an empty string is "not set", as in Docker).
    pub fn cgroup_parent(&self) -> Option<&str> {
        self.host_field("CgroupParent")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// `HostConfig.Memory` in bytes, if set (0 = not set).
    pub fn memory(&self) -> Option<u64> {
        positive(self.host_field("Memory")).map(|m| m as u64)
    }

    /// The CPUs asked for: `NanoCpus`, else `CpuQuota / CpuPeriod` (period 100 ms by
    /// default, as the kernel's).
    pub fn cpus(&self) -> Option<f64> {
        if let Some(n) = positive(self.host_field("NanoCpus")) {
            return Some(n / 1e9);
        }
        let quota = positive(self.host_field("CpuQuota"))?;
        let period = positive(self.host_field("CpuPeriod")).unwrap_or(100_000.0);
        Some(quota / period)
    }

    /// `HostConfig.PidsLimit`: `None` = not set (absent, null or 0), `Some(-1)` (or
    /// any negative) = unlimited.
    pub fn pids_limit(&self) -> Option<i64> {
        self.host_field("PidsLimit")
            .and_then(Value::as_i64)
            .filter(|p| *p != 0)
    }

    /// Whether the request sets the field behind a default flag.
    pub fn sets_default(&self, flag: &str) -> bool {
        match flag {
            "cpus" => self.cpus().is_some(),
            "memory" => self.memory().is_some(),
            "memory-swap" => self
                .host_field("MemorySwap")
                .and_then(Value::as_i64)
                .is_some_and(|s| s != 0),
            "shm-size" => positive(self.host_field("ShmSize")).is_some(),
            "pids-limit" => self.pids_limit().is_some(),
            _ => false,
        }
    }

    /// The GPU devices the request asks for (`HostConfig.DeviceRequests`).
    pub fn gpus(&self, inv: &gpu::Inventory) -> gpu::GpuUse {
        gpu::container_gpus(&self.body, inv)
    }

    /// A short description of the GPU request for messages.
    pub fn gpus_text(&self) -> String {
        match self.host_field("DeviceRequests") {
            Some(v) => v.to_string(),
            None => String::new(),
        }
    }
}

/// `--cpus` as the wrapper printed it before: `2`, `1.5`.
pub fn cpus_text(c: f64) -> String {
    format_number((c * 1000.0).round() / 1000.0)
}

/// The host-facing options of `docker run` as the CLI sends them, for the
/// host-escape policy (`docker::security`).
fn security_fields(r: &RunArgs, hc: &mut Map<String, Value>) -> Result<(), String> {
    if r.has("privileged") {
        hc.insert("Privileged".into(), json!(true));
    }
    let list = |flag: &str| -> Vec<String> { r.values(flag).map(str::to_string).collect() };
    for (flag, key) in [
        ("cap-add", "CapAdd"),
        ("security-opt", "SecurityOpt"),
        ("device-cgroup-rule", "DeviceCgroupRules"),
        ("volume", "Binds"),
        ("volumes-from", "VolumesFrom"),
    ] {
        let v = list(flag);
        if !v.is_empty() {
            hc.insert(key.into(), json!(v));
        }
    }
    for (flag, key) in [
        ("pid", "PidMode"),
        ("ipc", "IpcMode"),
        ("uts", "UTSMode"),
        ("userns", "UsernsMode"),
        ("network", "NetworkMode"),
        ("net", "NetworkMode"),
        ("cgroupns", "CgroupnsMode"),
        ("runtime", "Runtime"),
        ("volume-driver", "VolumeDriver"),
    ] {
        if let Some(v) = r.value(flag) {
            hc.insert(key.into(), json!(v));
        }
    }
    let devices: Vec<Value> = r
        .values("device")
        .map(|d| {
            let mut p = d.splitn(3, ':');
            let host = p.next().unwrap_or("");
            let inside = p.next().unwrap_or(host);
            json!({"PathOnHost": host, "PathInContainer": inside,
                   "CgroupPermissions": p.next().unwrap_or("rwm")})
        })
        .collect();
    if !devices.is_empty() {
        hc.insert("Devices".into(), Value::Array(devices));
    }
    let mut sysctls = Map::new();
    for kv in r.values("sysctl") {
        let (k, v) = kv
            .split_once('=')
            .ok_or(format!("--sysctl {kv:?} is not KEY=VALUE"))?;
        sysctls.insert(k.to_string(), json!(v));
    }
    if !sysctls.is_empty() {
        hc.insert("Sysctls".into(), Value::Object(sysctls));
    }
    let mut mounts = Vec::new();
    for m in r.values("mount") {
        let mut o = Map::new();
        let mut ty = "volume".to_string();
        for field in m.split(',') {
            let (k, v) = field.split_once('=').unwrap_or((field, "true"));
            match k {
                "type" => ty = v.to_string(),
                "source" | "src" => {
                    o.insert("Source".into(), json!(v));
                }
                "target" | "destination" | "dst" => {
                    o.insert("Target".into(), json!(v));
                }
                "readonly" | "ro" => {
                    o.insert("ReadOnly".into(), json!(matches!(v, "true" | "1")));
                }
                "volume-driver" => {
                    o.insert("VolumeOptions".into(), json!({"DriverConfig": {"Name": v}}));
                }
                "volume-opt" => {
                    o.insert(
                        "VolumeOptions".into(),
                        json!({"DriverConfig": {"Options": {"opt": v}}}),
                    );
                }
                _ => {}
            }
        }
        o.insert("Type".into(), json!(ty));
        mounts.push(Value::Object(o));
    }
    if !mounts.is_empty() {
        hc.insert("Mounts".into(), Value::Array(mounts));
    }
    let mut ports = Map::new();
    for p in r.values("publish") {
        // [ip:]host:container[/proto]; the host part is what the policy reads.
        let parts: Vec<&str> = p.rsplitn(3, ':').collect();
        if parts.len() >= 2 {
            let host = parts[1];
            if let Some(a) = ports
                .entry(parts[0].to_string())
                .or_insert_with(|| json!([]))
                .as_array_mut()
            {
                a.push(json!({"HostPort": host}));
            }
        }
    }
    if !ports.is_empty() {
        hc.insert("PortBindings".into(), Value::Object(ports));
    }
    for (flag, key) in [
        ("oom-score-adj", "OomScoreAdj"),
        ("cpu-rt-runtime", "CpuRealtimeRuntime"),
    ] {
        if let Some(v) = r.value(flag) {
            let n: i64 = v
                .parse()
                .map_err(|_| format!("--{flag} {v:?} is not a number"))?;
            hc.insert(key.into(), json!(n));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::args::{Command, parse};

    fn run(s: &str) -> RunArgs {
        let argv: Vec<String> = s.split_whitespace().map(String::from).collect();
        match parse(&argv) {
            Command::Run(r) => r,
            Command::Other => panic!("not a run: {s}"),
        }
    }

    #[test]
    fn argv_becomes_the_body_the_cli_would_send() {
        let r = run(
            "run -d --name c1 -m 1g --cpus 1.5 --memory-swap=-1 --shm-size 64m --pids-limit 99 -l a=b --gpus device=0,1 -e NVIDIA_VISIBLE_DEVICES=all --env X=1 img cmd",
        );
        let c = CreateRequest::from_run_args(&r).expect("readable");
        assert_eq!(c.name.as_deref(), Some("c1"));
        assert_eq!(c.image(), "img");
        assert_eq!(c.memory(), Some(1 << 30));
        assert_eq!(c.cpus(), Some(1.5));
        assert_eq!(c.pids_limit(), Some(99));
        assert_eq!(c.label("a"), Some("b"));
        assert!(c.sets_default("memory-swap"));
        assert!(c.sets_default("shm-size"));
        assert_eq!(
            c.body["HostConfig"]["DeviceRequests"][0]["DeviceIDs"],
            json!(["0", "1"])
        );
        assert_eq!(c.body["HostConfig"]["NanoCpus"], json!(1_500_000_000i64));
        // The security policy reads the environment (NVIDIA_VISIBLE_DEVICES).
        assert_eq!(c.body["Env"], json!(["NVIDIA_VISIBLE_DEVICES=all", "X=1"]));
    }

    #[test]
    fn unreadable_values_are_errors_not_skips() {
        for bad in [
            "run -m lots img",
            "run --cpus x img",
            "run --gpus lots img",
            "run --pids-limit many img",
        ] {
            assert!(CreateRequest::from_run_args(&run(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn cpu_quota_counts_as_cpus() {
        let c = CreateRequest::from_body(
            br#"{"HostConfig":{"CpuQuota":250000,"CpuPeriod":100000}}"#,
            None,
            Client::Api,
        )
        .expect("object");
        assert_eq!(c.cpus(), Some(2.5));
        assert!(c.sets_default("cpus"));
    }

    #[test]
    fn bodies_that_are_not_objects_are_refused() {
        assert!(CreateRequest::from_body(b"[1]", None, Client::Api).is_err());
        assert!(CreateRequest::from_body(b"{", None, Client::Api).is_err());
        assert!(CreateRequest::from_body(b"", None, Client::Api).is_ok());
    }

    #[test]
    fn changes_apply_to_a_body_as_the_cli_flags_would() {
        let mut body = json!({"HostConfig": null, "Labels": null});
        for c in [
            Change::CgroupParent("u.slice".into()),
            Change::Label("ds01.user".into(), "alice".into()),
            Change::Default("memory", "320m".into()),
            Change::Default("cpus", "1.5".into()),
            Change::Default("memory-swap", "-1".into()),
            Change::Default("pids-limit", "4096".into()),
            Change::Default("shm-size", "64m".into()),
        ] {
            c.apply(&mut body);
        }
        assert_eq!(
            body,
            json!({"HostConfig": {"CgroupParent": "u.slice", "Memory": 335544320u64,
                "NanoCpus": 1_500_000_000i64, "MemorySwap": -1, "PidsLimit": 4096,
                "ShmSize": 67108864u64},
                "Labels": {"ds01.user": "alice"}})
        );
    }
}
