//! The host-escape policy for non-admin containers (issue #15): what a create,
//! update or exec body may ask of the host, judged against the caller's
//! [`Policy`](crate::config::security::Policy). One copy, used by the proxy and the
//! wrapper.
//!
//! The property: through a container, a non-admin reads or writes on the host only
//! what they could without Docker, gains no privilege on the host, and stays in
//! their slice. Root inside the container is allowed (pip/apt in a CUDA image);
//! what makes that safe is that every bind-mount source lies under an allowed root
//! on a `nosuid,nodev` mount, so a setuid program or a device node that root in the
//! container plants there does nothing on the host (see docs/architecture.md).
//!
//! Pure apart from [`Host`], the file-system view (real: [`RealHost`]; tests: a
//! fake). Container references (`container:<id>` modes, `VolumesFrom`) are judged
//! from an ownership table the front end fills from the daemon first.

use crate::config::security::normalize_cap;
pub use crate::config::security::{BindRoot, Policy};
use crate::events::Event;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Who asks: the caller as NSS knows them.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    /// Login name (for `{user}` in bind roots).
    pub name: String,
    pub uid: u32,
    /// Primary and supplementary gids.
    pub gids: Vec<u32>,
    /// From NSS (`{home}`); `None`: `{home}` roots do not apply.
    pub home: Option<PathBuf>,
}

impl Subject {
    /// From NSS: the gids of `groups` (names) plus `primary_gid`, and the home.
    pub fn lookup(uid: u32, name: &str, groups: &[String], primary_gid: Option<u32>) -> Subject {
        let mut gids: Vec<u32> = primary_gid.into_iter().collect();
        for g in groups {
            if let Some(gid) = super::identity::group_gid(g)
                && !gids.contains(&gid)
            {
                gids.push(gid);
            }
        }
        Subject {
            name: name.to_string(),
            uid,
            gids,
            home: super::identity::home_dir(uid),
        }
    }
}

/// The wrapper's check (blocking): the containers the body refers to are looked up
/// through `engine`, then [`check_create`] on the real host.
pub fn check_create_blocking(
    policy: &Policy,
    subject: &Subject,
    label_user: &str,
    body: &Value,
    engine: &super::engine::Engine,
) -> Result<(), Denial> {
    let empty = Value::Null;
    let hc = body.get("HostConfig").unwrap_or(&empty);
    let mut owned = HashMap::new();
    for (_, id) in referenced_containers(hc) {
        let mine = engine
            .inspect(&id)
            .is_ok_and(|c| c["Config"]["Labels"][super::LABEL_USER].as_str() == Some(label_user));
        owned.insert(id, mine);
    }
    let host = RealHost::new(None);
    let ctx = Ctx {
        policy,
        subject,
        owned: &owned,
        host: &host,
    };
    check_create(&ctx, body)
}

/// A refusal: the option as the user typed it, the config key that would allow it
/// (`None`: nothing in the config does — admins only), and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    pub option: String,
    pub key: Option<String>,
    pub why: String,
}

impl Denial {
    fn new(option: impl Into<String>, key: Option<&str>, why: impl Into<String>) -> Denial {
        Denial {
            option: option.into(),
            key: key.map(|k| format!("container_security.{k}")),
            why: why.into(),
        }
    }

    /// The message the client prints ("Error response from daemon: …").
    pub fn message(&self) -> String {
        let how = match &self.key {
            Some(k) => format!(
                "an admin can allow it with `{k}` in resource-limits.yaml (for a group: \
                 `container_security.groups.<group>.{}`)",
                k.trim_start_matches("container_security.")
            ),
            None => "only admins can do this".to_string(),
        };
        format!(
            "ds01: {} refused: {}; {how}. Nothing was created.",
            self.option, self.why
        )
    }

    /// The `security.denied` event.
    pub fn event(&self, user: &str, source: &str, container: Option<&str>) -> Event {
        let mut e = Event::new("security.denied")
            .source(source)
            .user(user)
            .detail("option", self.option.as_str())
            .detail("reason", self.why.as_str());
        if let Some(k) = &self.key {
            e = e.detail("config_key", k.as_str());
        }
        if let Some(c) = container {
            e = e.detail("container", c);
        }
        e
    }
}

/// Facts about one path on the host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FileInfo {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub is_dir: bool,
    pub dev: u64,
    pub ino: u64,
}

/// One mount: where, and whether it is `nosuid` and `nodev`.
#[derive(Debug, Clone, PartialEq)]
pub struct MountEntry {
    pub point: PathBuf,
    pub nosuid: bool,
    pub nodev: bool,
}

/// The host's file system as the daemon will see it.
pub trait Host {
    /// Resolve symlinks and `..` as the kernel will when the daemon mounts it.
    fn canonicalize(&self, p: &Path) -> std::io::Result<PathBuf>;
    fn stat(&self, p: &Path) -> std::io::Result<FileInfo>;
    fn mounts(&self) -> std::io::Result<Vec<MountEntry>>;
    /// (dev, ino) of the Docker sockets: never bind-mountable.
    fn docker_sockets(&self) -> Vec<(u64, u64)>;
}

/// The real host. Mounts come from PID 1's mount table when readable (the host's
/// view, which the daemon shares, not a sandboxed service's), else our own.
pub struct RealHost {
    pub sockets: Vec<PathBuf>,
}

impl RealHost {
    pub fn new(upstream: Option<&Path>) -> RealHost {
        let mut sockets: Vec<PathBuf> = [
            "/run/docker.sock",
            "/var/run/docker.sock",
            "/run/docker-engine.sock",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        if let Some(u) = upstream {
            sockets.push(u.to_path_buf());
        }
        RealHost { sockets }
    }
}

impl Host for RealHost {
    fn canonicalize(&self, p: &Path) -> std::io::Result<PathBuf> {
        std::fs::canonicalize(p)
    }

    fn stat(&self, p: &Path) -> std::io::Result<FileInfo> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(p)?;
        Ok(FileInfo {
            uid: m.uid(),
            gid: m.gid(),
            mode: m.mode(),
            is_dir: m.is_dir(),
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    fn mounts(&self) -> std::io::Result<Vec<MountEntry>> {
        let text = std::fs::read_to_string("/proc/1/mountinfo")
            .or_else(|_| std::fs::read_to_string("/proc/self/mountinfo"))?;
        Ok(parse_mountinfo(&text))
    }

    fn docker_sockets(&self) -> Vec<(u64, u64)> {
        self.sockets
            .iter()
            .filter_map(|s| self.stat(s).ok())
            .map(|i| (i.dev, i.ino))
            .collect()
    }
}

/// `/proc/*/mountinfo` → mounts with their per-mount flags (field 6).
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let point = unescape_octal(f.get(4)?);
            let opts = f.get(5)?;
            let has = |o: &str| opts.split(',').any(|x| x == o);
            Some(MountEntry {
                point: PathBuf::from(point),
                nosuid: has("nosuid"),
                nodev: has("nodev"),
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Container ids a HostConfig refers to, with the option that names them:
/// `container:<id>` in any namespace mode or Cgroup, and VolumesFrom.
pub fn referenced_containers(hc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (field, flag) in [
        ("PidMode", "--pid"),
        ("IpcMode", "--ipc"),
        ("NetworkMode", "--network"),
        ("UTSMode", "--uts"),
        ("UsernsMode", "--userns"),
        ("CgroupnsMode", "--cgroupns"),
        ("Cgroup", "--cgroup"),
    ] {
        if let Some(id) = hc
            .get(field)
            .and_then(Value::as_str)
            .and_then(|v| v.strip_prefix("container:"))
        {
            out.push((format!("{flag} container:{id}"), id.to_string()));
        }
    }
    for v in hc
        .get("VolumesFrom")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let id = v.split(':').next().unwrap_or(v);
        out.push((format!("--volumes-from {v}"), id.to_string()));
    }
    out
}

/// The namespaced sysctls a container may set whatever the config says (Docker's
/// namespaced set). `net.*` only with a network namespace of its own.
fn safe_sysctl(name: &str, own_netns: bool) -> bool {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    IPC.contains(&name) || name.starts_with("fs.mqueue.") || (own_netns && name.starts_with("net."))
}

fn listed(name: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => p == name,
    })
}

/// Security options that only tighten: always allowed.
fn tightening(opt: &str) -> bool {
    let norm = opt.replacen(':', "=", 1);
    matches!(
        norm.as_str(),
        "no-new-privileges" | "no-new-privileges=true" | "no-new-privileges=false"
    ) || norm == "apparmor=docker-default"
}

/// Everything the judge needs besides the body.
pub struct Ctx<'a> {
    pub policy: &'a Policy,
    pub subject: &'a Subject,
    /// Container id/name → whether the caller owns it (absent: unknown → refused).
    pub owned: &'a HashMap<String, bool>,
    pub host: &'a dyn Host,
}

/// Judge a create body (`HostConfig` inside) for a non-admin.
pub fn check_create(ctx: &Ctx<'_>, body: &Value) -> Result<(), Denial> {
    let empty = Value::Null;
    let hc = body.get("HostConfig").unwrap_or(&empty);
    gpu_env(body)?;
    check_host_config(ctx, hc)
}

/// `NVIDIA_VISIBLE_DEVICES` set by the caller: under the NVIDIA runtime it hands
/// the container GPUs that no device request names, so no GPU quota counts them.
/// GPUs come through `--gpus` (a device request); `void`/`none`/empty give none
/// and are fine.
fn gpu_env(body: &Value) -> Result<(), Denial> {
    for e in strings(body.get("Config").unwrap_or(body), "Env") {
        if let Some(v) = e.strip_prefix("NVIDIA_VISIBLE_DEVICES=")
            && !matches!(v.trim(), "" | "void" | "none")
        {
            return Err(Denial::new(
                format!("-e NVIDIA_VISIBLE_DEVICES={v}"),
                None,
                "GPUs are requested with --gpus (counted against your GPU quota), not through NVIDIA_VISIBLE_DEVICES",
            ));
        }
    }
    Ok(())
}

/// Judge `POST /containers/{id}/update` (its body is a flat resources object).
pub fn check_update(ctx: &Ctx<'_>, body: &Value) -> Result<(), Denial> {
    devices(ctx, body)
}

/// Judge `POST /containers/{id}/exec`: no privileged exec.
pub fn check_exec(policy: &Policy, body: &Value) -> Result<(), Denial> {
    if body.get("Privileged").and_then(Value::as_bool) == Some(true) && !policy.allow_privileged {
        return Err(Denial::new(
            "docker exec --privileged",
            Some("allow_privileged"),
            "a privileged process gets every capability, enough to leave the container",
        ));
    }
    Ok(())
}

/// Judge `POST /volumes/create`: local volumes without driver options only (`-o
/// type=none,o=bind,device=/etc` would make a bind mount of anything).
pub fn check_volume_create(body: &Value) -> Result<(), Denial> {
    let driver = body.get("Driver").and_then(Value::as_str).unwrap_or("");
    if !matches!(driver, "" | "local") {
        return Err(Denial::new(
            format!("volume driver {driver:?}"),
            None,
            "volume drivers other than local are admins' (they can mount host paths)",
        ));
    }
    let opts = body.get("DriverOpts");
    if opts
        .and_then(Value::as_object)
        .is_some_and(|o| !o.is_empty())
    {
        return Err(Denial::new(
            "docker volume create --opt",
            None,
            "volume driver options can make a volume a bind mount of any host path",
        ));
    }
    Ok(())
}

fn s<'v>(hc: &'v Value, k: &str) -> &'v str {
    hc.get(k).and_then(Value::as_str).unwrap_or("")
}

fn strings<'v>(hc: &'v Value, k: &str) -> impl Iterator<Item = &'v str> {
    hc.get(k)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

fn check_host_config(ctx: &Ctx<'_>, hc: &Value) -> Result<(), Denial> {
    let p = ctx.policy;
    if hc.is_null() {
        return Ok(());
    }
    if !hc.is_object() {
        return Err(Denial::new(
            "HostConfig",
            None,
            "HostConfig must be an object",
        ));
    }
    shape(hc)?;
    if hc.get("Privileged").and_then(Value::as_bool) == Some(true) && !p.allow_privileged {
        return Err(Denial::new(
            "--privileged",
            Some("allow_privileged"),
            "a privileged container has every capability and every host device: root on the host",
        ));
    }
    for cap in strings(hc, "CapAdd") {
        let c = normalize_cap(cap);
        if !p.cap_add.iter().any(|a| a == &c || a == "ALL") {
            return Err(Denial::new(
                format!("--cap-add {cap}"),
                Some("cap_add"),
                format!(
                    "CAP_{c} is not in the capabilities non-admin containers may add (allowed: {})",
                    if p.cap_add.is_empty() {
                        "none".to_string()
                    } else {
                        p.cap_add.join(", ")
                    }
                ),
            ));
        }
    }
    for opt in strings(hc, "SecurityOpt") {
        if !tightening(opt) && !p.security_opt.iter().any(|a| a == opt) {
            return Err(Denial::new(
                format!("--security-opt {opt}"),
                Some("security_opt"),
                "it changes the seccomp, AppArmor or SELinux confinement that keeps root in a container from the host",
            ));
        }
    }
    for (field, what) in [("MaskedPaths", "masked"), ("ReadonlyPaths", "read-only")] {
        if hc.get(field).is_some_and(|v| !v.is_null())
            && !p.security_opt.iter().any(|a| a == "systempaths=unconfined")
        {
            return Err(Denial::new(
                "--security-opt systempaths=unconfined",
                Some("security_opt"),
                format!("{field} replaces the /proc and /sys paths kept {what} in every container"),
            ));
        }
    }
    namespaces(ctx, hc)?;
    devices(ctx, hc)?;
    if let Some(sys) = hc.get("Sysctls").and_then(Value::as_object) {
        let own_netns = s(hc, "NetworkMode") != "host";
        for (k, v) in sys {
            if !safe_sysctl(k, own_netns) && !listed(k, &p.sysctls) {
                return Err(Denial::new(
                    format!("--sysctl {k}={}", v.as_str().unwrap_or("")),
                    Some("sysctls"),
                    "only namespaced sysctls (kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*, net.* with a network of its own) are per container",
                ));
            }
        }
    }
    let rt = s(hc, "Runtime");
    if !rt.is_empty() && !p.runtimes.iter().any(|r| r == rt) {
        return Err(Denial::new(
            format!("--runtime {rt}"),
            Some("runtimes"),
            format!(
                "the runtimes non-admins may use are {}",
                p.runtimes.join(", ")
            ),
        ));
    }
    if hc
        .get("OomScoreAdj")
        .and_then(Value::as_i64)
        .is_some_and(|v| v < 0)
    {
        return Err(Denial::new(
            "--oom-score-adj (negative)",
            None,
            "a negative OOM score shields a container from the OOM killer at others' expense",
        ));
    }
    if hc
        .get("CpuRealtimeRuntime")
        .and_then(Value::as_i64)
        .is_some_and(|v| v > 0)
    {
        return Err(Denial::new(
            "--cpu-rt-runtime",
            None,
            "real-time CPU time can starve the host",
        ));
    }
    if !p.allow_privileged_ports {
        ports(hc)?;
    }
    let vd = s(hc, "VolumeDriver");
    if !matches!(vd, "" | "local") {
        return Err(Denial::new(
            format!("--volume-driver {vd}"),
            None,
            "volume drivers other than local are admins' (they can mount host paths)",
        ));
    }
    binds(ctx, hc)
}

/// Every field the policy reads has the type the daemon expects: a value of
/// another shape is refused, never skipped (it must not pass unjudged).
fn shape(hc: &Value) -> Result<(), Denial> {
    let bad = |k: &str, want: &str| {
        Err(Denial::new(
            format!("HostConfig.{k}"),
            None,
            format!("{k} must be {want}"),
        ))
    };
    for (k, v) in hc.as_object().into_iter().flatten() {
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            "Privileged" if !v.is_boolean() => return bad(k, "true or false"),
            "CapAdd" | "SecurityOpt" | "Binds" | "VolumesFrom" | "DeviceCgroupRules"
            | "MaskedPaths" | "ReadonlyPaths"
                if !v.as_array().is_some_and(|a| a.iter().all(Value::is_string)) =>
            {
                return bad(k, "a list of strings");
            }
            "Devices" | "Mounts"
                if !v.as_array().is_some_and(|a| a.iter().all(Value::is_object)) =>
            {
                return bad(k, "a list of objects");
            }
            "Sysctls"
                if !v
                    .as_object()
                    .is_some_and(|o| o.values().all(Value::is_string)) =>
            {
                return bad(k, "an object of strings");
            }
            "PortBindings" if !v.is_object() => return bad(k, "an object"),
            "PidMode" | "IpcMode" | "UTSMode" | "UsernsMode" | "NetworkMode" | "CgroupnsMode"
            | "Cgroup" | "Runtime" | "VolumeDriver"
                if !v.is_string() =>
            {
                return bad(k, "a string");
            }
            "OomScoreAdj" | "CpuRealtimeRuntime" if !v.is_i64() => return bad(k, "an integer"),
            _ => {}
        }
    }
    Ok(())
}

fn namespaces(ctx: &Ctx<'_>, hc: &Value) -> Result<(), Denial> {
    let p = ctx.policy;
    for (field, ns, flag) in [
        ("PidMode", "pid", "--pid"),
        ("IpcMode", "ipc", "--ipc"),
        ("UTSMode", "uts", "--uts"),
        ("UsernsMode", "userns", "--userns"),
        ("NetworkMode", "network", "--network"),
        ("CgroupnsMode", "cgroup", "--cgroupns"),
    ] {
        let v = s(hc, field);
        if v == "host" && !p.host_namespaces.iter().any(|n| n == ns) {
            return Err(Denial::new(
                format!("{flag} host"),
                Some("host_namespaces"),
                format!(
                    "the host's {ns} namespace shares the host's {} with the container",
                    match ns {
                        "pid" => "processes (signals, /proc/<pid>/root of everyone's processes)",
                        "ipc" => "shared memory and semaphores",
                        "uts" => "host name",
                        "userns" => "user ids, undoing any remapping",
                        "network" => "network interfaces (raw sockets, privileged ports)",
                        _ => "cgroup tree",
                    }
                ),
            ));
        }
    }
    for (option, id) in referenced_containers(hc) {
        if ctx.owned.get(&id) != Some(&true) {
            return Err(Denial::new(
                option,
                None,
                format!("{id:?} is not one of your containers"),
            ));
        }
    }
    Ok(())
}

fn devices(ctx: &Ctx<'_>, hc: &Value) -> Result<(), Denial> {
    let p = ctx.policy;
    for d in hc
        .get("Devices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let path = d.get("PathOnHost").and_then(Value::as_str).unwrap_or("");
        let canon = |x: &str| ctx.host.canonicalize(Path::new(x)).ok();
        let ok = p
            .devices
            .iter()
            .any(|a| a == path || (canon(a).is_some() && canon(a) == canon(path)));
        if !ok {
            return Err(Denial::new(
                format!("--device {path}"),
                Some("devices"),
                "a host device in a container is used as root there (a disk is every file on it)",
            ));
        }
    }
    if hc
        .get("DeviceCgroupRules")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
        && !p.allow_device_cgroup_rules
    {
        let r = strings(hc, "DeviceCgroupRules").next().unwrap_or("");
        return Err(Denial::new(
            format!("--device-cgroup-rule {r}"),
            Some("allow_device_cgroup_rules"),
            "device cgroup rules open host devices to nodes created in the container",
        ));
    }
    Ok(())
}

fn ports(hc: &Value) -> Result<(), Denial> {
    let Some(pb) = hc.get("PortBindings").and_then(Value::as_object) else {
        return Ok(());
    };
    for (cport, binds) in pb {
        for b in binds.as_array().into_iter().flatten() {
            let hp = b.get("HostPort").and_then(Value::as_str).unwrap_or("");
            let low = hp
                .split('-')
                .next()
                .and_then(|x| x.trim().parse::<u32>().ok())
                .unwrap_or(0);
            if low > 0 && low < 1024 {
                return Err(Denial::new(
                    format!("-p {hp}:{cport}"),
                    Some("allow_privileged_ports"),
                    "host ports below 1024 are privileged",
                ));
            }
        }
    }
    Ok(())
}

/// A bind mount asked for: source, read-only, and the option as typed.
struct Bind {
    source: String,
    read_only: bool,
    option: String,
}

fn bind_list(hc: &Value) -> Result<Vec<Bind>, Denial> {
    let mut out = Vec::new();
    for b in strings(hc, "Binds") {
        let mut parts = b.split(':');
        let src = parts.next().unwrap_or("");
        if !src.starts_with('/') {
            continue; // a named volume: ownership is checked by the front end
        }
        let opts = b.splitn(3, ':').nth(2).unwrap_or("");
        out.push(Bind {
            source: src.to_string(),
            read_only: opts.split(',').any(|o| o == "ro"),
            option: format!("-v {b}"),
        });
    }
    for m in hc
        .get("Mounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let ty = m.get("Type").and_then(Value::as_str).unwrap_or("volume");
        let src = m.get("Source").and_then(Value::as_str).unwrap_or("");
        match ty {
            "bind" => out.push(Bind {
                source: src.to_string(),
                read_only: m.get("ReadOnly").and_then(Value::as_bool) == Some(true),
                option: format!("--mount type=bind,source={src}"),
            }),
            "volume" => {
                if m.pointer("/VolumeOptions/DriverConfig").is_some_and(|d| {
                    d.get("Options")
                        .and_then(Value::as_object)
                        .is_some_and(|o| !o.is_empty())
                        || !matches!(
                            d.get("Name").and_then(Value::as_str),
                            None | Some("" | "local")
                        )
                }) {
                    return Err(Denial::new(
                        format!("--mount type=volume,source={src},volume-driver/opt"),
                        None,
                        "volume driver options can make a volume a bind mount of any host path",
                    ));
                }
            }
            "tmpfs" | "image" => {}
            other => {
                return Err(Denial::new(
                    format!("--mount type={other}"),
                    None,
                    "only bind, volume, tmpfs and image mounts are known to ds01",
                ));
            }
        }
    }
    Ok(out)
}

/// May `subject` do `want` (bits of `rwx`, as 4/2/1) on a file with `info`?
fn permits(subject: &Subject, info: &FileInfo, want: u32) -> bool {
    let bits = if info.uid == subject.uid {
        (info.mode >> 6) & 7
    } else if subject.gids.contains(&info.gid) {
        (info.mode >> 3) & 7
    } else {
        info.mode & 7
    };
    bits & want == want
}

fn expand(root: &BindRoot, subject: &Subject) -> Option<PathBuf> {
    let mut p = root.path.replace("{user}", &subject.name);
    if p.contains("{home}") {
        let home = subject.home.as_ref()?.to_str()?;
        p = p.replace("{home}", home);
    }
    Some(PathBuf::from(p))
}

fn binds(ctx: &Ctx<'_>, hc: &Value) -> Result<(), Denial> {
    let list = bind_list(hc)?;
    if list.is_empty() {
        return Ok(());
    }
    let sockets = ctx.host.docker_sockets();
    let mounts = ctx.host.mounts().map_err(|e| {
        Denial::new(
            "bind mounts",
            None,
            format!("the host's mount table cannot be read ({e})"),
        )
    })?;
    let roots: Vec<(PathBuf, &BindRoot)> = ctx
        .policy
        .bind_roots
        .iter()
        .filter_map(|r| {
            let p = expand(r, ctx.subject)?;
            Some((ctx.host.canonicalize(&p).ok()?, r))
        })
        .collect();
    for b in list {
        one_bind(ctx, &b, &sockets, &mounts, &roots)?;
    }
    Ok(())
}

fn one_bind(
    ctx: &Ctx<'_>,
    b: &Bind,
    sockets: &[(u64, u64)],
    mounts: &[MountEntry],
    roots: &[(PathBuf, &BindRoot)],
) -> Result<(), Denial> {
    let deny = |key: Option<&str>, why: String| Denial::new(b.option.clone(), key, why);
    let given = Path::new(&b.source);
    let canon = ctx.host.canonicalize(given).map_err(|e| {
        deny(
            None,
            format!(
                "{} cannot be resolved ({e}); it must exist (create it yourself first)",
                b.source
            ),
        )
    })?;
    let info = ctx
        .host
        .stat(&canon)
        .map_err(|e| deny(None, format!("{}: {e}", canon.display())))?;
    if sockets.contains(&(info.dev, info.ino)) {
        return Err(deny(
            None,
            "the Docker socket in a container is root on the host".into(),
        ));
    }
    let Some((_, root)) = roots.iter().find(|(r, _)| canon.starts_with(r)) else {
        let allowed: Vec<String> = ctx
            .policy
            .bind_roots
            .iter()
            .filter_map(|r| expand(r, ctx.subject))
            .map(|p| p.display().to_string())
            .collect();
        let via = if canon != given {
            format!(" (it resolves to {})", canon.display())
        } else {
            String::new()
        };
        return Err(deny(
            Some("bind_roots"),
            format!(
                "{}{via} is outside the places you may mount from: {}",
                b.source,
                if allowed.is_empty() {
                    "none".into()
                } else {
                    allowed.join(", ")
                }
            ),
        ));
    };
    if root.read_only && !b.read_only {
        return Err(deny(
            Some("bind_roots"),
            format!(
                "{} may be mounted read-only only: add :ro (or readonly with --mount)",
                root.path
            ),
        ));
    }
    // The caller's own permissions: search on every directory above, then read
    // (and search, for a directory) or write on the source itself.
    for dir in canon.ancestors().skip(1) {
        let dir_info = ctx
            .host
            .stat(dir)
            .map_err(|e| deny(None, format!("{}: {e}", dir.display())))?;
        if !permits(ctx.subject, &dir_info, 1) {
            return Err(deny(
                None,
                format!("you cannot enter {} yourself", dir.display()),
            ));
        }
    }
    let want = if b.read_only { 4 } else { 2 } | if info.is_dir { 1 } else { 0 };
    if !permits(ctx.subject, &info, want) {
        return Err(deny(
            None,
            format!(
                "you cannot {} {} yourself",
                if b.read_only { "read" } else { "write" },
                canon.display()
            ),
        ));
    }
    // nosuid,nodev: on the mount holding the source and on every mount below it
    // (a bind is recursive).
    let holder = mounts
        .iter()
        .filter(|m| canon.starts_with(&m.point))
        .max_by_key(|m| m.point.as_os_str().len());
    let below = mounts
        .iter()
        .filter(|m| m.point.starts_with(&canon) && m.point != canon);
    for m in holder.into_iter().chain(below) {
        if !(m.nosuid && m.nodev) {
            return Err(deny(
                None,
                format!(
                    "{} is on {}, which is not mounted nosuid,nodev: root in the container could leave a setuid program or a device node there that works on the host. An admin fixes the mount (`ds01 check` prints the line)",
                    canon.display(),
                    m.point.display()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// A small host: alice (1001) has /home/alice (on /home, nosuid,nodev), with a
    /// symlink `etc` → /etc and a private dir; bob's home is 0700; /scratch is on a
    /// mount without nosuid.
    struct Fake;
    impl Host for Fake {
        fn canonicalize(&self, p: &Path) -> std::io::Result<PathBuf> {
            let s = p.to_string_lossy();
            let s = s.replace("/home/alice/etc", "/etc");
            let s = s.replace("/home/alice/../", "/home/");
            let known = [
                "/",
                "/etc",
                "/home",
                "/home/alice",
                "/home/alice/data",
                "/home/alice/secret",
                "/home/bob",
                "/home/bob/x",
                "/scratch",
                "/scratch/alice",
                "/dev/sda",
                "/run/docker.sock",
                "/data",
                "/data/set",
            ];
            if known.contains(&s.as_str()) {
                Ok(PathBuf::from(s))
            } else {
                Err(std::io::Error::from(std::io::ErrorKind::NotFound))
            }
        }
        fn stat(&self, p: &Path) -> std::io::Result<FileInfo> {
            let (uid, mode) = match p.to_str().unwrap_or("") {
                "/home/alice" | "/home/alice/data" | "/scratch/alice" => (1001, 0o40755),
                "/home/alice/secret" => (0, 0o40700),
                "/home/bob" => (1002, 0o40700),
                "/home/bob/x" => (1002, 0o40777),
                "/run/docker.sock" => (0, 0o140660),
                "/dev/sda" => (0, 0o60660),
                _ => (0, 0o40755),
            };
            Ok(FileInfo {
                uid,
                gid: uid,
                mode,
                is_dir: mode & 0o40000 != 0,
                dev: 1,
                ino: p
                    .to_string_lossy()
                    .bytes()
                    .fold(1469598103934665603u64, |h, b| {
                        (h ^ b as u64).wrapping_mul(1099511628211)
                    }),
            })
        }
        fn mounts(&self) -> std::io::Result<Vec<MountEntry>> {
            Ok(vec![
                MountEntry {
                    point: "/".into(),
                    nosuid: false,
                    nodev: false,
                },
                MountEntry {
                    point: "/home".into(),
                    nosuid: true,
                    nodev: true,
                },
                MountEntry {
                    point: "/data".into(),
                    nosuid: true,
                    nodev: true,
                },
            ])
        }
        fn docker_sockets(&self) -> Vec<(u64, u64)> {
            let i = self.stat(Path::new("/run/docker.sock")).expect("stat");
            vec![(i.dev, i.ino)]
        }
    }

    fn alice() -> Subject {
        Subject {
            name: "alice".into(),
            uid: 1001,
            gids: vec![1001],
            home: Some("/home/alice".into()),
        }
    }

    fn judge(policy: &Policy, hc: Value) -> Result<(), Denial> {
        let owned: HashMap<String, bool> =
            [("mine".to_string(), true), ("bobs".to_string(), false)].into();
        let subject = alice();
        let ctx = Ctx {
            policy,
            subject: &subject,
            owned: &owned,
            host: &Fake,
        };
        check_create(&ctx, &json!({"Image": "x", "HostConfig": hc}))
    }

    fn denied(hc: Value) -> Denial {
        judge(&Policy::default(), hc.clone()).expect_err(&format!("{hc} must be refused"))
    }

    #[test]
    fn every_escape_is_refused_by_default_and_names_its_key() {
        let cases = [
            (
                json!({"Privileged": true}),
                "--privileged",
                Some("allow_privileged"),
            ),
            (
                json!({"CapAdd": ["SYS_ADMIN"]}),
                "--cap-add SYS_ADMIN",
                Some("cap_add"),
            ),
            (
                json!({"CapAdd": ["cap_net_admin"]}),
                "--cap-add cap_net_admin",
                Some("cap_add"),
            ),
            (
                json!({"SecurityOpt": ["seccomp=unconfined"]}),
                "--security-opt seccomp=unconfined",
                Some("security_opt"),
            ),
            (
                json!({"SecurityOpt": ["apparmor:unconfined"]}),
                "--security-opt apparmor:unconfined",
                Some("security_opt"),
            ),
            (
                json!({"SecurityOpt": ["label=disable"]}),
                "--security-opt label=disable",
                Some("security_opt"),
            ),
            (
                json!({"MaskedPaths": []}),
                "--security-opt systempaths=unconfined",
                Some("security_opt"),
            ),
            (
                json!({"PidMode": "host"}),
                "--pid host",
                Some("host_namespaces"),
            ),
            (
                json!({"IpcMode": "host"}),
                "--ipc host",
                Some("host_namespaces"),
            ),
            (
                json!({"UTSMode": "host"}),
                "--uts host",
                Some("host_namespaces"),
            ),
            (
                json!({"UsernsMode": "host"}),
                "--userns host",
                Some("host_namespaces"),
            ),
            (
                json!({"NetworkMode": "host"}),
                "--network host",
                Some("host_namespaces"),
            ),
            (
                json!({"PidMode": "container:bobs"}),
                "--pid container:bobs",
                None,
            ),
            (
                json!({"NetworkMode": "container:bobs"}),
                "--network container:bobs",
                None,
            ),
            (
                json!({"IpcMode": "container:unknown"}),
                "--ipc container:unknown",
                None,
            ),
            (
                json!({"VolumesFrom": ["bobs:ro"]}),
                "--volumes-from bobs:ro",
                None,
            ),
            (
                json!({"Devices": [{"PathOnHost": "/dev/sda"}]}),
                "--device /dev/sda",
                Some("devices"),
            ),
            (
                json!({"DeviceCgroupRules": ["b 8:* rmw"]}),
                "--device-cgroup-rule b 8:* rmw",
                Some("allow_device_cgroup_rules"),
            ),
            (
                json!({"Sysctls": {"kernel.panic": "1"}}),
                "--sysctl kernel.panic=1",
                Some("sysctls"),
            ),
            (
                json!({"NetworkMode": "bridge", "Sysctls": {"vm.swappiness": "1"}}),
                "--sysctl vm.swappiness=1",
                Some("sysctls"),
            ),
            (
                json!({"Runtime": "runsc-unsafe"}),
                "--runtime runsc-unsafe",
                Some("runtimes"),
            ),
            (
                json!({"Binds": ["/:/host"]}),
                "-v /:/host",
                Some("bind_roots"),
            ),
            (
                json!({"Binds": ["/etc:/x"]}),
                "-v /etc:/x",
                Some("bind_roots"),
            ),
            (
                json!({"Binds": ["/home/bob:/b"]}),
                "-v /home/bob:/b",
                Some("bind_roots"),
            ),
            (
                json!({"Binds": ["/home/alice/etc:/e"]}),
                "-v /home/alice/etc:/e",
                Some("bind_roots"),
            ),
            (
                json!({"Binds": ["/home/alice/../bob:/b"]}),
                "-v /home/alice/../bob:/b",
                Some("bind_roots"),
            ),
            (
                json!({"Binds": ["/run/docker.sock:/s"]}),
                "-v /run/docker.sock:/s",
                None,
            ),
            (
                json!({"Binds": ["/home/alice/new:/n"]}),
                "-v /home/alice/new:/n",
                None,
            ),
            (
                json!({"Binds": ["/home/alice/secret:/s"]}),
                "-v /home/alice/secret:/s",
                None,
            ),
            (
                json!({"Mounts": [{"Type": "bind", "Source": "/etc", "Target": "/x"}]}),
                "--mount type=bind,source=/etc",
                Some("bind_roots"),
            ),
            (
                json!({"Mounts": [{"Type": "volume", "Source": "v", "VolumeOptions": {"DriverConfig": {"Options": {"device": "/etc", "o": "bind"}}}}]}),
                "--mount type=volume,source=v,volume-driver/opt",
                None,
            ),
            (
                json!({"Mounts": [{"Type": "npipe", "Source": "x"}]}),
                "--mount type=npipe",
                None,
            ),
            (
                json!({"PortBindings": {"80/tcp": [{"HostPort": "80"}]}}),
                "-p 80:80/tcp",
                Some("allow_privileged_ports"),
            ),
            (
                json!({"OomScoreAdj": -500}),
                "--oom-score-adj (negative)",
                None,
            ),
            (
                json!({"CpuRealtimeRuntime": 1000}),
                "--cpu-rt-runtime",
                None,
            ),
            (
                json!({"VolumeDriver": "sshfs"}),
                "--volume-driver sshfs",
                None,
            ),
        ];
        for (hc, option, key) in cases {
            let d = denied(hc.clone());
            assert_eq!(d.option, option, "{hc}");
            assert_eq!(
                d.key.as_deref(),
                key.map(|k| format!("container_security.{k}")).as_deref(),
                "{hc}"
            );
            let msg = d.message();
            assert!(
                msg.contains(option) && msg.contains("Nothing was created"),
                "{msg}"
            );
        }
    }

    #[test]
    fn ordinary_containers_and_own_binds_pass() {
        let ok = [
            json!(null),
            json!({}),
            json!({"Binds": ["/home/alice/data:/data", "/home/alice:/h:ro", "vol:/v"]}),
            json!({"Mounts": [{"Type": "bind", "Source": "/home/alice/data", "Target": "/d"},
                               {"Type": "tmpfs", "Target": "/t"}, {"Type": "volume", "Source": "v"}]}),
            json!({"CapAdd": [], "CapDrop": ["ALL"], "SecurityOpt": ["no-new-privileges:true"]}),
            json!({"PidMode": "container:mine", "NetworkMode": "container:mine", "VolumesFrom": ["mine"]}),
            json!({"Sysctls": {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1"}}),
            json!({"Runtime": "nvidia", "NetworkMode": "bridge", "IpcMode": "shareable"}),
            json!({"PortBindings": {"80/tcp": [{"HostPort": "8080"}], "81/tcp": [{"HostPort": ""}]}}),
            json!({"OomScoreAdj": 500, "DeviceRequests": [{"Count": 1}]}),
        ];
        for hc in ok {
            assert_eq!(judge(&Policy::default(), hc.clone()), Ok(()), "{hc}");
        }
    }

    #[test]
    fn binds_need_nosuid_nodev_and_read_only_roots_need_ro() {
        let mut p = Policy::default();
        p.bind_roots.push(BindRoot {
            path: "/scratch/{user}".into(),
            read_only: false,
        });
        p.bind_roots.push(BindRoot {
            path: "/data".into(),
            read_only: true,
        });
        let d = judge(&p, json!({"Binds": ["/scratch/alice:/s"]})).expect_err("suid mount");
        assert!(
            d.why.contains("nosuid,nodev") && d.why.contains("on /,"),
            "{}",
            d.why
        );
        let d = judge(&p, json!({"Binds": ["/data/set:/d"]})).expect_err("rw of ro root");
        assert!(d.why.contains("read-only"), "{}", d.why);
        assert_eq!(judge(&p, json!({"Binds": ["/data/set:/d:ro"]})), Ok(()));
        // Without a home from NSS, {home} roots do not apply.
        let owned = HashMap::new();
        let subject = Subject {
            home: None,
            ..alice()
        };
        let ctx = Ctx {
            policy: &p,
            subject: &subject,
            owned: &owned,
            host: &Fake,
        };
        let body = json!({"HostConfig": {"Binds": ["/home/alice/data:/d"]}});
        assert_eq!(
            check_create(&ctx, &body).map_err(|d| d.key),
            Err(Some("container_security.bind_roots".into()))
        );
    }

    #[test]
    fn gpus_only_through_device_requests() {
        let owned = HashMap::new();
        let subject = alice();
        let p = Policy::default();
        let ctx = Ctx {
            policy: &p,
            subject: &subject,
            owned: &owned,
            host: &Fake,
        };
        let d = check_create(&ctx, &json!({"Env": ["A=1", "NVIDIA_VISIBLE_DEVICES=all"]}))
            .expect_err("env GPUs");
        assert_eq!(d.option, "-e NVIDIA_VISIBLE_DEVICES=all");
        assert!(d.why.contains("--gpus"), "{}", d.why);
        for ok in [
            "NVIDIA_VISIBLE_DEVICES=void",
            "NVIDIA_VISIBLE_DEVICES=",
            "CUDA_VISIBLE_DEVICES=0",
        ] {
            assert_eq!(check_create(&ctx, &json!({"Env": [ok]})), Ok(()), "{ok}");
        }
    }

    #[test]
    fn relaxations_allow_what_they_name_only() {
        let p = Policy {
            allow_privileged: true,
            cap_add: vec!["SYS_PTRACE".into()],
            host_namespaces: vec!["ipc".into()],
            devices: vec!["/dev/sda".into()],
            sysctls: vec!["kernel.sched_*".into()],
            security_opt: vec!["seccomp=unconfined".into()],
            ..Policy::default()
        };
        for hc in [
            json!({"Privileged": true}),
            json!({"CapAdd": ["CAP_SYS_PTRACE"]}),
            json!({"IpcMode": "host"}),
            json!({"Devices": [{"PathOnHost": "/dev/sda"}]}),
            json!({"Sysctls": {"kernel.sched_x": "1"}}),
            json!({"SecurityOpt": ["seccomp=unconfined"]}),
        ] {
            assert_eq!(judge(&p, hc.clone()), Ok(()), "{hc}");
        }
        assert!(judge(&p, json!({"CapAdd": ["SYS_ADMIN"]})).is_err());
        assert!(judge(&p, json!({"PidMode": "host"})).is_err());
    }

    #[test]
    fn exec_update_and_volume_bodies() {
        let p = Policy::default();
        assert!(check_exec(&p, &json!({"Privileged": true, "Cmd": ["sh"]})).is_err());
        assert!(check_exec(&p, &json!({"User": "root", "Cmd": ["sh"]})).is_ok());
        let owned = HashMap::new();
        let subject = alice();
        let ctx = Ctx {
            policy: &p,
            subject: &subject,
            owned: &owned,
            host: &Fake,
        };
        assert!(check_update(&ctx, &json!({"Devices": [{"PathOnHost": "/dev/sda"}]})).is_err());
        assert!(check_update(&ctx, &json!({"Memory": 1})).is_ok());
        assert!(
            check_volume_create(
                &json!({"Name": "v", "DriverOpts": {"device": "/etc", "o": "bind", "type": "none"}})
            )
            .is_err()
        );
        assert!(check_volume_create(&json!({"Name": "v", "Driver": "sshfs"})).is_err());
        assert!(
            check_volume_create(&json!({"Name": "v", "Driver": "local", "DriverOpts": {}})).is_ok()
        );
    }

    #[test]
    fn mountinfo_is_parsed_with_escapes() {
        let text = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                    40 22 8:2 / /home rw,nosuid,nodev,relatime shared:2 - ext4 /dev/sda2 rw\n\
                    41 22 0:5 / /my\\040dir rw,nodev - tmpfs t rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(
            m[1],
            MountEntry {
                point: "/home".into(),
                nosuid: true,
                nodev: true
            }
        );
        assert_eq!(m[2].point, PathBuf::from("/my dir"));
        assert!(!m[2].nosuid && m[2].nodev);
    }

    fn host_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(json!(true)),
            Just(json!(false)),
            Just(json!(null)),
            Just(json!("host")),
            Just(json!("container:bobs")),
            Just(json!("container:mine")),
            Just(json!(["SYS_ADMIN"])),
            Just(json!(["seccomp=unconfined"])),
            Just(json!(["/:/h", "/home/alice/data:/d"])),
            Just(json!([{"Type": "bind", "Source": "/home/alice/etc"}])),
            Just(json!([{"PathOnHost": "/dev/sda"}])),
            Just(json!({"kernel.panic": "1"})),
            Just(json!({"80/tcp": [{"HostPort": "22"}]})),
            Just(json!(-5)),
            Just(json!([])),
            "[a-z/:.]{0,12}".prop_map(Value::from),
        ]
    }

    proptest! {
        /// Random HostConfigs: either refused, or every host-facing field is within
        /// the default policy.
        #[test]
        fn refused_or_within_policy(fields in proptest::collection::btree_map(
            prop_oneof![
                Just("Privileged"), Just("CapAdd"), Just("SecurityOpt"), Just("PidMode"),
                Just("IpcMode"), Just("UTSMode"), Just("UsernsMode"), Just("NetworkMode"),
                Just("Devices"), Just("DeviceCgroupRules"), Just("Sysctls"), Just("Runtime"),
                Just("Binds"), Just("Mounts"), Just("VolumesFrom"), Just("PortBindings"),
                Just("MaskedPaths"), Just("OomScoreAdj"), Just("CgroupnsMode"),
            ].prop_map(str::to_string),
            host_value(),
            0..6,
        )) {
            let hc = Value::Object(fields.into_iter().collect());
            if judge(&Policy::default(), hc.clone()).is_ok() {
                let f = |k: &str| hc.get(k).cloned().unwrap_or(Value::Null);
                prop_assert!(f("Privileged") != json!(true));
                for k in ["PidMode", "IpcMode", "UTSMode", "UsernsMode", "NetworkMode", "CgroupnsMode"] {
                    let v = f(k);
                    prop_assert!(v != json!("host") && v != json!("container:bobs"), "{k}: {v}");
                }
                let bad = [
                    ("CapAdd", json!(["SYS_ADMIN"])),
                    ("SecurityOpt", json!(["seccomp=unconfined"])),
                    ("Binds", json!(["/:/h", "/home/alice/data:/d"])),
                    ("Devices", json!([{"PathOnHost": "/dev/sda"}])),
                ];
                for (k, v) in bad {
                    prop_assert!(f(k) != v, "{k}: {v}");
                }
                for k in ["DeviceCgroupRules", "VolumesFrom"] {
                    let v = f(k);
                    prop_assert!(v.as_array().is_none_or(|a| a.iter().all(|x| x == "mine")), "{k}: {v}");
                }
                let bad_mount = json!([{"Type": "bind", "Source": "/home/alice/etc"}]);
                prop_assert!(f("Mounts") != bad_mount, "Mounts");
                let bad_sysctl = json!({"kernel.panic": "1"});
                prop_assert!(f("Sysctls") != bad_sysctl, "Sysctls");
                let bad_port = json!({"80/tcp": [{"HostPort": "22"}]});
                prop_assert!(f("PortBindings") != bad_port, "PortBindings");
                prop_assert!(f("MaskedPaths").is_null());
                prop_assert!(f("OomScoreAdj").as_i64().is_none_or(|v| v >= 0));
                prop_assert!(f("Runtime").as_str().is_none_or(|r| r.is_empty() || r == "runc" || r == "nvidia"));
            }
        }
    }
}
