//! `/metrics`: every user slice read from the kernel at scrape time with the
//! collector's reader, plus the configured aggregate limits, encoded by the
//! prometheus-client crate (OpenMetrics text). Clients that do not ask for
//! OpenMetrics (curl, `promtool check metrics`, older scrapers) get the classic
//! Prometheus 0.0.4 text format, converted from it by [`to_classic`].

use crate::cgroup::{self, OpenFiles, UserSlice, walk};
use crate::collect::{SliceStats, read_slice_usage};
use crate::config::{Aggregate, Config};
use crate::units::Limit;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub const OPENMETRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const CLASSIC_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One user's configured aggregate limits, labelled like the kernel series.
#[derive(Debug, Clone)]
struct UserLimits {
    user: String,
    group: String,
    agg: Aggregate,
}

/// What one scrape read.
#[derive(Debug)]
struct Scrape {
    slices: Vec<SliceStats>,
    limits: Option<Arc<Limits>>,
    unlisted: Vec<UserLimits>,
    read_errors: usize,
    duration_s: f64,
    open_files: usize,
    triggers: usize,
    gpu: Option<Arc<crate::gpu::report::Report>>,
}

/// The configured aggregate limits of every configured user, resolved once per
/// config (reloads build a new one), keyed by the slice's user name so the limit
/// and the usage series share labels.
#[derive(Debug)]
pub struct Limits {
    config: Arc<Config>,
    configured: Vec<UserLimits>,
    known: HashSet<String>,
}

impl Limits {
    pub fn new(config: Arc<Config>) -> Limits {
        let mut configured = Vec::new();
        let mut known = HashSet::new();
        for r in config.all_users() {
            if !known.insert(r.slice_user.clone()) {
                continue;
            }
            if let Some(agg) = r.aggregate {
                configured.push(UserLimits {
                    user: r.slice_user,
                    group: r.group,
                    agg,
                });
            }
        }
        Limits {
            config,
            configured,
            known,
        }
    }

    /// Built from this very config (the same `Arc`, or an equal config)?
    pub fn is_for(&self, cfg: &Arc<Config>) -> bool {
        Arc::ptr_eq(&self.config, cfg) || *self.config == **cfg
    }

    /// Users with a slice but not in the config: the default group's limits.
    fn unlisted(&self, slices: &[SliceStats]) -> Vec<UserLimits> {
        let mut seen = HashSet::new();
        slices
            .iter()
            .filter(|s| !self.known.contains(&s.user) && seen.insert(s.user.as_str()))
            .filter_map(|s| {
                let r = self.config.resolve(&s.user);
                r.aggregate.map(|agg| UserLimits {
                    user: r.slice_user,
                    group: r.group,
                    agg,
                })
            })
            .collect()
    }
}

/// Read the slices on a few threads (the time is all in open/read/close of some
/// ten kernel files per slice); results in walk order, and how many failed.
fn read_all(list: &[UserSlice]) -> (Vec<SliceStats>, usize) {
    let parts = crate::cgroup::par_map(list, |s| read_slice_usage(s).ok());
    let mut out = Vec::with_capacity(list.len());
    let mut errors = 0;
    for (st, s) in parts.into_iter().map(Option::flatten).zip(list) {
        match st {
            Some(st) => out.push(st),
            // A slice that went away mid-scrape is not an error.
            None if !s.dir.path.is_dir() => {}
            None => errors += 1,
        }
    }
    (out, errors)
}

/// Read every slice under `root` now and render the metrics page.
pub fn render(
    root: &Path,
    files: &Arc<OpenFiles>,
    limits: Option<Arc<Limits>>,
    pressure_triggers: usize,
    gpu: Option<Arc<crate::gpu::report::Report>>,
    openmetrics: bool,
) -> String {
    let start = Instant::now();
    let (slices, read_errors) = match walk(root) {
        Ok(mut w) => {
            // Keep the files of the slices there are; read through them.
            let dirs: HashSet<PathBuf> = w
                .slices
                .iter()
                .flat_map(|s| s.dir.dirs().map(Path::to_path_buf))
                .collect();
            files.retain_dirs(|d| dirs.contains(d));
            if OpenFiles::worth_it(root) {
                for s in &mut w.slices {
                    s.dir.open_files = cgroup::Shared(Some(Arc::clone(files)));
                }
            }
            read_all(&w.slices)
        }
        Err(_) => (Vec::new(), 1),
    };
    let unlisted = limits
        .as_ref()
        .map(|l| l.unlisted(&slices))
        .unwrap_or_default();
    let scrape = Scrape {
        slices,
        limits,
        unlisted,
        read_errors,
        duration_s: start.elapsed().as_secs_f64(),
        open_files: files.len(),
        triggers: pressure_triggers,
        gpu,
    };
    let mut reg = Registry::default();
    reg.register_collector(Box::new(scrape));
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &reg);
    if openmetrics { text } else { to_classic(&text) }
}

/// OpenMetrics text → Prometheus 0.0.4 text: a counter family is named with its
/// `_total` suffix, and the `# UNIT` / `# EOF` lines go.
pub fn to_classic(om: &str) -> String {
    let lines: Vec<&str> = om.lines().collect();
    let mut out = String::with_capacity(om.len() + 64);
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line == "# EOF" || line.starts_with("# UNIT ") {
            i += 1;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ")
            && let Some((name, help)) = rest.split_once(' ')
            && lines.get(i + 1) == Some(&format!("# TYPE {name} counter").as_str())
        {
            out.push_str(&format!(
                "# HELP {name}_total {help}\n# TYPE {name}_total counter\n"
            ));
            i += 2;
            continue;
        }
        out.push_str(line);
        out.push('\n');
        i += 1;
    }
    out
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

fn family<'a, M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    ty: MetricType,
    rows: impl IntoIterator<Item = (Labels<'a>, M)>,
) -> fmt::Result {
    let mut rows = rows.into_iter().peekable();
    if rows.peek().is_none() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, ty)?;
    for (labels, v) in rows {
        let fam = m.encode_family(&labels)?;
        v.encode(fam)?;
    }
    Ok(())
}

/// A family of one series without labels.
fn single(enc: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> fmt::Result {
    let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(v).encode(m)
}

fn gauges<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels<'a>, f64)>,
) -> fmt::Result {
    family(
        enc,
        name,
        help,
        MetricType::Gauge,
        rows.into_iter().map(|(l, v)| (l, ConstGauge::new(v))),
    )
}

/// Counters are named without `_total` here; the encoder adds it.
fn counters<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels<'a>, f64)>,
) -> fmt::Result {
    family(
        enc,
        name,
        help,
        MetricType::Counter,
        rows.into_iter().map(|(l, v)| (l, ConstCounter::new(v))),
    )
}

fn ul(s: &SliceStats) -> Labels<'_> {
    vec![("user", s.user.as_str()), ("group", s.group.as_str())]
}

fn value<T: Copy>(l: Option<Limit<T>>) -> Option<T> {
    l.and_then(Limit::value)
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let slices = &self.slices;
        let each = |f: &dyn Fn(&SliceStats) -> Option<f64>| -> Vec<(Labels<'_>, f64)> {
            slices
                .iter()
                .filter_map(|s| f(s).map(|v| (ul(s), v)))
                .collect()
        };
        let slice_names: Vec<String> = slices
            .iter()
            .map(|s| crate::naming::user_slice(&s.group, &s.user))
            .collect();
        gauges(
            &mut enc,
            "ds01_user_info",
            "A ds01 user slice exists (value 1); labels name the user, group and slice",
            slices.iter().zip(&slice_names).map(|(s, n)| {
                let mut l = ul(s);
                l.push(("slice", n.as_str()));
                (l, 1.0)
            }),
        )?;
        gauges(
            &mut enc,
            "ds01_user_memory_current_bytes",
            "Memory used by the user's slice (memory.current)",
            each(&|s| s.memory_current.map(|v| v as f64)),
        )?;
        gauges(
            &mut enc,
            "ds01_user_memory_max_bytes",
            "The slice's memory limit (memory.max); no series when unlimited",
            each(&|s| value(s.memory_max).map(|v| v as f64)),
        )?;
        gauges(
            &mut enc,
            "ds01_user_memory_high_bytes",
            "The slice's memory throttling threshold (memory.high); no series when unlimited",
            each(&|s| value(s.memory_high).map(|v| v as f64)),
        )?;
        counters(
            &mut enc,
            "ds01_user_cpu_usage_seconds",
            "CPU time used by the user's slice (cpu.stat usage_usec)",
            each(&|s| s.cpu_usage_usec.map(|v| v as f64 / 1e6)),
        )?;
        for (res, pick) in [
            ("cpu", (|s: &SliceStats| s.psi_cpu) as fn(&SliceStats) -> _),
            ("memory", |s: &SliceStats| s.psi_memory),
            ("io", |s: &SliceStats| s.psi_io),
        ] {
            counters(
                &mut enc,
                &format!("ds01_user_pressure_{res}_waiting_seconds"),
                &format!(
                    "Time at least one task of the slice was stalled on {res} (PSI some total)"
                ),
                each(&|s| pick(s).map(|p| p.some.total as f64 / 1e6)),
            )?;
            counters(
                &mut enc,
                &format!("ds01_user_pressure_{res}_stalled_seconds"),
                &format!(
                    "Time all non-idle tasks of the slice were stalled on {res} at once (PSI full total)"
                ),
                each(&|s| pick(s).and_then(|p| p.full).map(|f| f.total as f64 / 1e6)),
            )?;
        }
        for (ev, help) in [
            (
                "oom_kill",
                "Processes of the slice killed by the OOM killer (memory.events oom_kill)",
            ),
            (
                "oom",
                "Times the slice hit its memory limit and the OOM killer ran (memory.events oom)",
            ),
            (
                "max",
                "Times the slice's memory usage was about to go over memory.max (memory.events max)",
            ),
            (
                "high",
                "Times the slice was throttled above memory.high (memory.events high)",
            ),
        ] {
            counters(
                &mut enc,
                &format!("ds01_user_memory_events_{ev}"),
                help,
                each(&|s| {
                    let e = s.events.as_ref()?;
                    let v = match ev {
                        "oom_kill" => e.oom_kill,
                        "oom" => e.oom,
                        "max" => e.max,
                        _ => e.high,
                    };
                    v.map(|v| v as f64)
                }),
            )?;
        }
        gauges(
            &mut enc,
            "ds01_user_tasks_current",
            "Tasks (processes and threads) in the slice (pids.current)",
            each(&|s| s.pids_current.map(|v| v as f64)),
        )?;
        gauges(
            &mut enc,
            "ds01_user_tasks_max",
            "The slice's task limit (pids.max); no series when unlimited",
            each(&|s| value(s.pids_max).map(|v| v as f64)),
        )?;

        let configured = self.limits.as_ref().map_or(&[][..], |l| &l.configured[..]);
        let each_limit = |f: &dyn Fn(&Aggregate) -> Option<f64>| -> Vec<(Labels<'_>, f64)> {
            configured
                .iter()
                .chain(&self.unlisted)
                .filter_map(|u| {
                    f(&u.agg).map(|v| {
                        (
                            vec![("user", u.user.as_str()), ("group", u.group.as_str())],
                            v,
                        )
                    })
                })
                .collect()
        };
        gauges(
            &mut enc,
            "ds01_user_limit_memory_max_bytes",
            "Configured aggregate memory_max of the user (resource-limits.yaml); no series when unlimited",
            each_limit(&|a| value(a.memory_max).map(|v| v as f64)),
        )?;
        gauges(
            &mut enc,
            "ds01_user_limit_memory_high_bytes",
            "Configured aggregate memory_high of the user; no series when unlimited",
            each_limit(&|a| value(a.memory_high).map(|v| v as f64)),
        )?;
        gauges(
            &mut enc,
            "ds01_user_limit_cpu_cores",
            "Configured aggregate cpu_quota of the user, in cores (400% = 4); no series when unlimited",
            each_limit(&|a| value(a.cpu_quota).map(|q| q.cpus())),
        )?;
        gauges(
            &mut enc,
            "ds01_user_limit_tasks",
            "Configured aggregate tasks_max of the user; no series when unlimited",
            each_limit(&|a| value(a.tasks_max).map(|v| v as f64)),
        )?;
        gauges(
            &mut enc,
            "ds01_user_limit_gpus",
            "Configured aggregate gpu_limit of the user; no series when unlimited",
            each_limit(&|a| value(a.gpu_limit)),
        )?;

        single(
            &mut enc,
            "ds01_monitor_scrape_duration_seconds",
            "Time this scrape spent reading the cgroup tree",
            self.duration_s,
        )?;
        single(
            &mut enc,
            "ds01_monitor_user_slices",
            "User slices read in this scrape",
            self.slices.len() as f64,
        )?;
        single(
            &mut enc,
            "ds01_monitor_open_files",
            "Kernel files kept open between scrapes (about 4 KiB of kernel memory each)",
            self.open_files as f64,
        )?;
        single(
            &mut enc,
            "ds01_monitor_read_errors",
            "User slices (or the tree) that could not be read in this scrape",
            self.read_errors as f64,
        )?;
        single(
            &mut enc,
            "ds01_monitor_pressure_triggers",
            "PSI triggers armed by the monitor (0 when PSI or the permission to arm them is missing)",
            self.triggers as f64,
        )?;
        if let Some(r) = &self.gpu {
            encode_gpu(&mut enc, r)?;
        }
        Ok(())
    }
}

fn gl(d: &crate::gpu::report::DeviceRow) -> Labels<'_> {
    vec![("gpu", d.label.as_str())]
}

/// The GPU families, from the monitor's newest GPU report.
fn encode_gpu(enc: &mut DescriptorEncoder, r: &crate::gpu::report::Report) -> fmt::Result {
    let devs = &r.devices;
    gauges(
        enc,
        "ds01_gpu_info",
        "A GPU or MIG instance (value 1); labels give its UUID, name and whether it is a MIG instance",
        devs.iter().map(|d| {
            let mut l = gl(d);
            l.push(("uuid", d.uuid.as_str()));
            l.push(("name", d.name.as_str()));
            l.push(("mig", if d.mig { "true" } else { "false" }));
            (l, 1.0)
        }),
    )?;
    gauges(
        enc,
        "ds01_gpu_up",
        "1 when the GPU answered this sample, 0 when it failed (fell off the bus, …)",
        devs.iter()
            .map(|d| (gl(d), if d.error.is_some() { 0.0 } else { 1.0 })),
    )?;
    gauges(
        enc,
        "ds01_gpu_memory_used_bytes",
        "GPU memory in use on the device",
        devs.iter()
            .filter_map(|d| d.memory_used_bytes.map(|v| (gl(d), v as f64))),
    )?;
    gauges(
        enc,
        "ds01_gpu_memory_total_bytes",
        "GPU memory of the device",
        devs.iter()
            .filter_map(|d| d.memory_total_bytes.map(|v| (gl(d), v as f64))),
    )?;
    gauges(
        enc,
        "ds01_gpu_utilization_ratio",
        "GPU utilisation (0-1); for a MIG instance the sum of its processes' SM use where the driver gives it",
        devs.iter()
            .filter_map(|d| d.utilization_pct.map(|v| (gl(d), v / 100.0))),
    )?;
    gauges(
        enc,
        "ds01_gpu_idle_seconds",
        "Seconds since the device was last busy (0 while busy)",
        devs.iter()
            .filter_map(|d| d.idle_s.map(|v| (gl(d), v as f64))),
    )?;
    gauges(
        enc,
        "ds01_gpu_processes",
        "Processes using the device",
        devs.iter().map(|d| (gl(d), d.processes.len() as f64)),
    )?;
    gauges(
        enc,
        "ds01_gpu_allocated",
        "A running container holds the device (value 1), by user and container",
        devs.iter().flat_map(|d| {
            d.holders.iter().map(move |h| {
                (
                    vec![
                        ("gpu", d.label.as_str()),
                        ("user", h.user.as_str()),
                        ("container", h.container.as_str()),
                    ],
                    1.0,
                )
            })
        }),
    )?;
    let users = &r.users;
    let each = |f: &dyn Fn(&crate::gpu::report::UserGpu) -> Option<f64>| -> Vec<(Labels<'_>, f64)> {
        users
            .iter()
            .filter_map(|(u, g)| f(g).map(|v| (vec![("user", u.as_str())], v)))
            .collect()
    };
    gauges(
        enc,
        "ds01_user_gpus_allocated",
        "Devices (GPUs or MIG instances) the user's running containers hold",
        each(&|g| Some(f64::from(g.allocated))),
    )?;
    gauges(
        enc,
        "ds01_user_gpus_in_use",
        "Of the devices the user holds, those busy in this sample",
        each(&|g| Some(f64::from(g.in_use))),
    )?;
    gauges(
        enc,
        "ds01_user_gpu_memory_bytes",
        "GPU memory used by the user's processes (containers and bare metal)",
        each(&|g| Some(g.memory_bytes as f64)),
    )?;
    gauges(
        enc,
        "ds01_user_gpu_utilization_ratio",
        "Mean utilisation (0-1) of the devices the user holds",
        each(&|g| g.util_pct.map(|v| v / 100.0)),
    )?;
    // Bare metal, by user and whether bare_metal_access exempts them.
    let mut bare: std::collections::BTreeMap<(&str, bool), (f64, f64)> = Default::default();
    for p in devs.iter().flat_map(|d| &d.processes) {
        if p.kind == "bare_metal"
            && let Some(u) = &p.user
        {
            let e = bare.entry((u.as_str(), p.exempt)).or_default();
            e.0 += 1.0;
            e.1 += p.memory_bytes.unwrap_or(0) as f64;
        }
    }
    let ex = |b: bool| if b { "true" } else { "false" };
    gauges(
        enc,
        "ds01_user_gpu_bare_metal_processes",
        "GPU processes outside any container, by Unix owner (exempt: listed in bare_metal_access.exempt_users)",
        bare.iter()
            .map(|((u, e), v)| (vec![("user", *u), ("exempt", ex(*e))], v.0)),
    )?;
    gauges(
        enc,
        "ds01_user_gpu_bare_metal_memory_bytes",
        "GPU memory of processes outside any container, by Unix owner",
        bare.iter()
            .map(|((u, e), v)| (vec![("user", *u), ("exempt", ex(*e))], v.1)),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_names_counter_families_with_total_and_drops_eof() {
        let om = "# HELP a_seconds Time.\n# TYPE a_seconds counter\na_seconds_total{user=\"x\"} 1.5\n# HELP b Thing.\n# TYPE b gauge\nb 2\n# EOF\n";
        assert_eq!(
            to_classic(om),
            "# HELP a_seconds_total Time.\n# TYPE a_seconds_total counter\na_seconds_total{user=\"x\"} 1.5\n# HELP b Thing.\n# TYPE b gauge\nb 2\n"
        );
    }
}
