//! `ds01 monitor`: the long-running collector. Every `interval` it runs the same
//! pass as `ds01 collect`; between passes it watches every user slice's
//! `memory.events` with inotify (the kernel raises IN_MODIFY when the file changes)
//! and logs an OOM kill as soon as it happens, through the same locked OOM state as
//! `ds01 collect`, so the two never log a kill twice, and it arms PSI triggers on
//! every slice (`psi`), logging `resource.pressure` when one fires. Both wait in one
//! epoll set. Slices that appear or go away are picked up by a cheap rescan every
//! `rescan` period. It writes the users' alerts files (read by the greeting) after
//! each pass and on each OOM kill, and with `--listen` serves `/metrics` and
//! `/healthz` from a thread of its own (`http`, `metrics`).

pub mod http;
pub mod metrics;
pub mod psi;

use crate::cgroup::{UserSlice, walk};
use crate::collect::{self, CollectPaths, PassReport, SliceStats};
use crate::config::{Config, PressureConfig};
use crate::events::Event;
use rustix::event::epoll;
use rustix::fs::inotify;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct MonitorOpts {
    pub paths: CollectPaths,
    pub interval: Duration,
    pub rescan: Duration,
    pub alerts_dir: PathBuf,
    /// Print a line per pass (slices read, skipped directories).
    pub verbose: bool,
    /// `resource-limits.yaml`: `monitoring.pressure` and the limit gauges.
    pub config: Option<PathBuf>,
    /// Serve `/metrics` and `/healthz` here.
    pub listen: Option<std::net::SocketAddr>,
    /// Enforce the container lifecycle every `interval` (a thread of its own).
    pub lifecycle: Option<crate::lifecycle::Paths>,
    /// The Docker daemon for lifecycle (`None`: the default).
    pub docker_socket: Option<PathBuf>,
    /// Sample the GPUs this often (a thread of its own; `None`: never).
    pub gpu_interval: Option<Duration>,
    /// /proc, where GPU processes are attributed.
    pub proc_root: PathBuf,
}

/// The monitor runs as root: the real daemon's sockets unless one is given.
fn docker_sockets(opts: &MonitorOpts) -> Vec<PathBuf> {
    crate::lifecycle::source::sockets_for(opts.docker_socket.as_deref(), true)
}

/// A thread named `name` that calls `tick` every `interval` until the monitor
/// stops. `tick` returns its problems (empty: none); a standing problem (the same
/// text as last time) is said once, not every interval. `setup` runs first, on the
/// thread, and may decline (`None`) after saying why.
fn spawn_every<S: 'static>(
    name: &'static str,
    interval: Duration,
    setup: impl FnOnce() -> Option<S> + Send + 'static,
    mut tick: impl FnMut(&mut S) -> String + Send + 'static,
) -> Option<std::thread::JoinHandle<()>> {
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let Some(mut state) = setup() else { return };
            let mut last_error: Option<String> = None;
            let mut next = Instant::now();
            while !stop_requested() {
                if Instant::now() < next {
                    std::thread::sleep(Duration::from_millis(200).min(interval));
                    continue;
                }
                next = Instant::now() + interval;
                let err = tick(&mut state);
                if !err.is_empty() && last_error.as_deref() != Some(err.as_str()) {
                    eprintln!("{name}: {err}");
                }
                last_error = (!err.is_empty()).then_some(err);
            }
        });
    match spawned {
        Ok(h) => Some(h),
        Err(e) => {
            eprintln!("error: cannot start the {name} thread: {e}");
            None
        }
    }
}

/// The GPU thread: a sample every `gpu_interval`, attributed, kept for `/metrics`
/// and the stats lines (`shared.gpu`) and saved as `gpu.json`. Ends at once on a
/// host without GPUs.
fn spawn_gpu(
    opts: &MonitorOpts,
    cfg: Arc<std::sync::Mutex<Option<Arc<Config>>>>,
    shared: Arc<http::Shared>,
) -> Option<std::thread::JoinHandle<()>> {
    let interval = opts.gpu_interval?;
    let sockets = docker_sockets(opts);
    let proc_root = opts.proc_root.clone();
    let state_dir = opts.paths.state_dir.clone();
    let verbose = opts.verbose;
    let setup = move || {
        let sampler = crate::gpu::Sampler::open(sockets, proc_root);
        if let Some(why) = sampler.unavailable() {
            say(&format!("GPU accounting off: {why}"));
            return None;
        }
        say(&format!(
            "GPU accounting: {} every {interval:?}",
            sampler.describe()
        ));
        Some(sampler)
    };
    spawn_every("gpu", interval, setup, move |sampler| {
        let current = cfg.lock().ok().and_then(|c| c.clone());
        match sampler.report_and_save(current.as_deref(), &state_dir, jiff::Timestamp::now()) {
            Ok((r, saved)) => {
                if verbose {
                    say(&format!(
                        "gpu: {} device(s), {} user(s)",
                        r.devices.len(),
                        r.users.len()
                    ));
                }
                let mut errs = r.errors.clone();
                errs.extend(saved);
                shared.set_gpu(Some(Arc::new(r)), interval);
                errs.join("; ")
            }
            Err(e) => {
                shared.set_gpu(None, interval);
                e
            }
        }
    })
}

/// The lifecycle thread: a pass every `interval` with the config the loop last
/// loaded cleanly (none yet: no pass). Its own thread, so a `docker stop` waiting
/// out a container's grace never delays an OOM event.
fn spawn_lifecycle(
    opts: &MonitorOpts,
    cfg: Arc<std::sync::Mutex<Option<Arc<Config>>>>,
) -> Option<std::thread::JoinHandle<()>> {
    let paths = opts.lifecycle.clone()?;
    let sockets = docker_sockets(opts);
    let verbose = opts.verbose;
    let setup = move || Some(crate::lifecycle::Runner::new(paths, sockets));
    spawn_every("lifecycle", opts.interval, setup, move |runner| {
        let current = cfg.lock().ok().and_then(|c| c.clone());
        let Some(current) = current else {
            return String::new();
        };
        let out = runner.run(&current, false, jiff::Timestamp::now());
        for r in &out.rows {
            for a in &r.actions {
                say(&format!("lifecycle: {} ({}): {a}", r.container, r.user));
            }
        }
        if verbose {
            say(&format!(
                "lifecycle: {} container(s), {} warned, {} stopped, {} removed",
                out.rows.len(),
                out.warned,
                out.stopped,
                out.removed
            ));
        }
        out.errors.join("; ")
    })
}

static STOP: AtomicBool = AtomicBool::new(false);
static HUP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

extern "C" fn on_hup(_: libc::c_int) {
    HUP.store(true, Ordering::SeqCst);
}

/// SIGTERM/SIGINT stop the loop cleanly; SIGHUP re-reads the config (every log
/// write opens its file anew, so logrotate needs nothing more).
pub fn install_signal_handlers() {
    // SAFETY: the handlers only store to atomics, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, on_stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGHUP, on_hup as *const () as libc::sighandler_t);
    }
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Where the monitor's notices go (stdout: the journal under systemd).
fn say(msg: &str) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{msg}");
    let _ = o.flush();
}

/// Alerts for one user from what the kernel shows now.
pub fn alerts_for(s: &SliceStats) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let (Some(cur), Some(crate::units::Limit::Value(max))) = (s.memory_current, s.memory_max)
        && max > 0
        && cur.saturating_mul(10) >= max.saturating_mul(9)
    {
        out.push((
                "memory_high".to_string(),
                format!(
                    "Your containers use {:.0}% of your memory limit ({} of {}); near the limit the kernel kills processes",
                    cur as f64 * 100.0 / max as f64,
                    crate::units::format_human_bytes(cur),
                    crate::units::format_human_bytes(max)
                ),
            ));
    }
    if let (Some(cur), Some(crate::units::Limit::Value(max))) = (s.pids_current, s.pids_max)
        && max > 0
        && cur.saturating_mul(10) >= max.saturating_mul(9)
    {
        out.push((
                "tasks_high".to_string(),
                format!("Your containers run {cur} of {max} allowed tasks; new processes and threads may fail"),
            ));
    }
    out
}

/// Replace the monitor's own entries in `<alerts dir>/<user>.json` (other tools'
/// entries are kept), each expiring at `expires` — an OOM-kill alert after 24 h,
/// and it survives later rewrites until then.
pub fn write_alerts(
    dir: &Path,
    user: &str,
    alerts: &[(String, String)],
    expires: jiff::Timestamp,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let _lock = crate::fsutil::lock(
        &dir.join(crate::lifecycle::notify::ALERTS_LOCK),
        Duration::from_secs(5),
    )
    .map_err(std::io::Error::other)?;
    let path = dir.join(format!("{user}.json"));
    let mut list: Vec<Value> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<Vec<Value>>(&t).ok())
        .unwrap_or_default();
    let before = list.len();
    let now = jiff::Timestamp::now();
    let has_new_oom = alerts.iter().any(|(t, _)| t == "oom_kill");
    // The monitor's own entries are replaced, except an unexpired OOM-kill alert:
    // it lasts a day, not one interval.
    list.retain(|a| {
        let ours = a.get("source").and_then(Value::as_str) == Some("ds01-monitor");
        let lasting_oom = a.get("type").and_then(Value::as_str) == Some("oom_kill")
            && !has_new_oom
            && a.get("expires")
                .and_then(Value::as_str)
                .and_then(crate::timespec::parse_log_time)
                .is_some_and(|e| e > now);
        !ours || lasting_oom
    });
    if alerts.is_empty() && list.len() == before {
        return Ok(());
    }
    for (ty, msg) in alerts {
        let exp = if ty == "oom_kill" {
            now + jiff::SignedDuration::from_hours(24)
        } else {
            expires
        };
        list.push(json!({"type": ty, "message": msg, "source": "ds01-monitor", "expires": crate::timespec::format_event_time(exp)}));
    }
    let text = serde_json::to_vec_pretty(&list).map_err(std::io::Error::other)?;
    crate::fsutil::write_atomic(&path, &text, 0o644)
}

struct Watches {
    fd: rustix::fd::OwnedFd,
    by_wd: HashMap<i32, UserSlice>,
    by_path: HashMap<PathBuf, i32>,
    /// Slices with no OOM file to watch (a hybrid host's slice without a v1
    /// memory cgroup, or one seen mid-creation): the rescan count at which to try
    /// again, and the wait that led there.
    unwatchable: HashMap<PathBuf, (u64, u64)>,
    scans: u64,
    /// Slices watched since the loop last looked: read at once, so a kill between
    /// the slice's creation and its watch is not left to the next pass (when the
    /// killed container's scope may be gone and the event could not name it).
    fresh: Vec<UserSlice>,
    /// Watches on `ds01.slice` and each group slice directory (IN_CREATE): a new
    /// user slice is watched at once, not at the next rescan, so a kill in a
    /// container that just started is read while its scope still exists.
    dir_wds: HashMap<PathBuf, i32>,
    /// A directory watch fired: rescan now.
    rescan_now: bool,
}

/// A slice without an OOM file is tried again at the next rescan, then after 2,
/// 4, 8 rescans, then every this many: a slice caught mid-creation (the
/// directory-watch rescan can see it before its files) is watched a rescan
/// later, while a slice that never gets one costs little.
const UNWATCHABLE_RETRY: u64 = 15;

impl Watches {
    /// Follow the slices now in the tree: watch new ones, forget vanished ones.
    /// Returns the slices now in the tree.
    fn rescan(&mut self, root: &Path) -> Result<Vec<UserSlice>, String> {
        // The directories first, then the walk: a user slice made after the walk
        // of its group directory would otherwise wait for the next rescan (systemd
        // makes a group slice and its first user slice back to back), and a kill
        // in it would be read after its container's scope is gone.
        let mut dirs: Vec<PathBuf> = vec![root.to_path_buf()];
        if let Ok(entries) = std::fs::read_dir(root) {
            dirs.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
        for d in dirs {
            if !self.dir_wds.contains_key(&d)
                && let Ok(wd) = inotify::add_watch(
                    &self.fd,
                    &d,
                    inotify::WatchFlags::CREATE | inotify::WatchFlags::ONLYDIR,
                )
            {
                self.dir_wds.insert(d, wd);
            }
        }
        self.dir_wds.retain(|d, _| d.is_dir());
        crate::fault::pause("monitor-rescan-walk");
        let w = walk(root).map_err(|e| e.to_string())?;
        self.scans += 1;
        let mut seen = std::collections::HashSet::new();
        for s in &w.slices {
            // The slice directory too (a container's scope made in it): the slice
            // is read then, so its OOM tracking knows the container before a kill
            // — the kill of a container's main process can remove its scope before
            // the kill is read, and the container is then named by elimination
            // (collect::oom_rise).
            if !self.by_path.contains_key(&s.dir.path)
                && let Ok(wd) = inotify::add_watch(
                    &self.fd,
                    &s.dir.path,
                    inotify::WatchFlags::CREATE
                        | inotify::WatchFlags::MOVED_TO
                        | inotify::WatchFlags::ONLYDIR,
                )
            {
                self.by_path.insert(s.dir.path.clone(), wd);
                self.by_wd.insert(wd, s.clone());
            }
            seen.insert(s.dir.path.clone());
            let file = s.dir.oom_file();
            seen.insert(file.clone());
            if self.by_path.contains_key(&file)
                || self
                    .unwatchable
                    .get(&file)
                    .is_some_and(|(at, _)| *at > self.scans)
            {
                continue;
            }
            match inotify::add_watch(&self.fd, &file, inotify::WatchFlags::MODIFY) {
                Ok(wd) => {
                    self.unwatchable.remove(&file);
                    self.by_path.insert(file, wd);
                    self.by_wd.insert(wd, s.clone());
                    if self.scans > 1 {
                        self.fresh.push(s.clone());
                    }
                }
                // No such file in a slice that is there: nothing to watch for now.
                Err(_) if s.dir.path.is_dir() => {
                    let wait = self
                        .unwatchable
                        .get(&file)
                        .map_or(1, |(_, w)| (w * 2).min(UNWATCHABLE_RETRY));
                    self.unwatchable.insert(file, (self.scans + wait, wait));
                }
                // The slice went away between the walk and the watch.
                Err(_) => continue,
            }
        }
        self.unwatchable.retain(|p, _| seen.contains(p));
        let gone: Vec<PathBuf> = self
            .by_path
            .keys()
            .filter(|p| !seen.contains(*p))
            .cloned()
            .collect();
        for p in gone {
            if let Some(wd) = self.by_path.remove(&p) {
                let _ = inotify::remove_watch(&self.fd, wd);
                self.by_wd.remove(&wd);
            }
        }
        Ok(w.slices)
    }

    /// The slices whose watched file changed (drains the inotify queue).
    fn changed(&mut self) -> Vec<UserSlice> {
        let mut buf = [MaybeUninit::<u8>::uninit(); 8192];
        let mut reader = inotify::Reader::new(&self.fd, &mut buf);
        let mut wds = Vec::new();
        while let Ok(ev) = reader.next() {
            if ev.events().contains(inotify::ReadFlags::IGNORED) {
                continue;
            }
            if self.dir_wds.values().any(|w| *w == ev.wd()) {
                self.rescan_now = true;
                continue;
            }
            if !wds.contains(&ev.wd()) {
                wds.push(ev.wd());
            }
        }
        wds.iter()
            .filter_map(|wd| self.by_wd.get(wd).cloned())
            .collect()
    }
}

/// Log a `resource.pressure` event and say so.
fn log_pressure(opts: &MonitorOpts, ev: &Event) {
    let d = |k: &str| ev.details.get(k).map_or("?".to_string(), |v| v.to_string());
    say(&format!(
        "pressure: {} {} {} (avg10 {})",
        ev.user.as_deref().unwrap_or("?"),
        d("resource").trim_matches('"'),
        d("kind").trim_matches('"'),
        d("avg10")
    ));
    if let Err(e) = opts.paths.events.append(ev) {
        eprintln!("error: cannot log a pressure event: {e}");
    }
}

fn alerts_after(opts: &MonitorOpts, stats: &[SliceStats], rep: &PassReport, now: jiff::Timestamp) {
    let expires =
        now + jiff::SignedDuration::from_secs((opts.interval.as_secs() as i64 * 3).max(300));
    for s in stats {
        let mut alerts = alerts_for(s);
        if let Some(ev) = rep
            .oom_events
            .iter()
            .find(|e| e.user.as_deref() == Some(s.user.as_str()))
        {
            let container = ev
                .details
                .get("container")
                .and_then(Value::as_str)
                .map(|c| format!(" in container {c}"))
                .unwrap_or_default();
            alerts.push((
                "oom_kill".to_string(),
                format!("A process{container} was killed for exceeding memory; see ds01 events --user {}", s.user),
            ));
        }
        if let Err(e) = write_alerts(&opts.alerts_dir, &s.user, &alerts, expires) {
            eprintln!(
                "error: cannot write alerts for {} in {}: {e}",
                s.user,
                opts.alerts_dir.display()
            );
        }
    }
}

/// The config as the monitor sees it: reloaded every pass and on SIGHUP; a config
/// with errors keeps the last good one in force (said once per distinct error).
struct ConfigWatch {
    path: Option<PathBuf>,
    current: Option<Arc<Config>>,
    last_problem: Option<String>,
}

impl ConfigWatch {
    fn reload(&mut self) {
        let Some(path) = &self.path else { return };
        if !path.exists() {
            let p = format!("note: no config at {}", path.display());
            if self.last_problem.as_deref() != Some(p.as_str()) {
                say(&format!(
                    "{p}: built-in pressure settings, no limit gauges (it is read again every pass)"
                ));
            }
            self.current = None;
            self.last_problem = Some(p);
            return;
        }
        let loaded = crate::config::load(path);
        let problem = match (&loaded.config, loaded.diagnostics.first_error()) {
            (Some(_), None) => None,
            (_, Some(e)) => Some(e.to_string()),
            (None, None) => Some("cannot be loaded".to_string()),
        };
        match problem {
            None => {
                if self.last_problem.take().is_some() {
                    say(&format!(
                        "config {}: loaded again without errors",
                        path.display()
                    ));
                }
                self.current = loaded.config.map(Arc::new);
            }
            Some(p) => {
                if self.last_problem.as_deref() != Some(p.as_str()) {
                    let keep = if self.current.is_some() {
                        "keeping the last good config"
                    } else {
                        "using built-in pressure settings and no limit gauges"
                    };
                    eprintln!(
                        "{p}\nds01 monitor: the config has errors; {keep} (see ds01 config check)"
                    );
                }
                self.last_problem = Some(p);
            }
        }
    }

    fn pressure(&self) -> PressureConfig {
        self.current
            .as_ref()
            .map(|c| c.pressure.clone())
            .unwrap_or_default()
    }
}

const INOTIFY_TOKEN: u64 = 0;

/// Run until SIGTERM/SIGINT (or `stop_requested`).
pub fn run(opts: &MonitorOpts) -> Result<(), String> {
    crate::cgroup::raise_fd_limit();
    let root = opts.paths.cgroup_root.clone();
    let mut config = ConfigWatch {
        path: opts.config.clone(),
        current: None,
        last_problem: None,
    };
    config.reload();
    let shared = Arc::new(http::Shared::new(root.clone(), opts.interval));
    shared.set_config(config.current.clone());
    let lifecycle_cfg = Arc::new(std::sync::Mutex::new(config.current.clone()));
    let lifecycle = spawn_lifecycle(opts, Arc::clone(&lifecycle_cfg));
    let gpu = spawn_gpu(opts, Arc::clone(&lifecycle_cfg), Arc::clone(&shared));
    if let Some(addr) = opts.listen {
        let bound = http::serve(addr, Arc::clone(&shared))
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        say(&format!(
            "ds01 monitor: serving http://{bound}/metrics and /healthz"
        ));
    }
    let fd = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC)
        .map_err(|e| format!("inotify: {e}"))?;
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC).map_err(|e| format!("epoll: {e}"))?;
    epoll::add(
        &ep,
        &fd,
        epoll::EventData::new_u64(INOTIFY_TOKEN),
        epoll::EventFlags::IN,
    )
    .map_err(|e| format!("epoll: {e}"))?;
    let mut w = Watches {
        fd,
        by_wd: HashMap::new(),
        by_path: HashMap::new(),
        unwatchable: HashMap::new(),
        scans: 0,
        fresh: Vec::new(),
        dir_wds: HashMap::new(),
        rescan_now: false,
    };
    let mut triggers = psi::Triggers::new(config.pressure(), INOTIFY_TOKEN + 1);
    let sync = |w: &mut Watches, triggers: &mut psi::Triggers| match w.rescan(&root) {
        Ok(slices) => {
            if let Some(msg) = triggers.sync(&ep, &slices) {
                eprintln!("warning: no pressure events: {msg}");
            }
            shared
                .pressure_triggers
                .store(triggers.count(), Ordering::SeqCst);
        }
        Err(e) => eprintln!("error: {e}"),
    };
    sync(&mut w, &mut triggers);
    let pressure = match triggers.off_reason() {
        None => format!("{} pressure trigger(s)", triggers.count()),
        Some(why) => format!("no pressure triggers ({why})"),
    };
    say(&format!(
        "ds01 monitor: watching {} user slice(s) under {}, {pressure}; a pass every {:?}; lifecycle {}",
        w.by_wd.len(),
        root.display(),
        opts.interval,
        if opts.lifecycle.is_some() {
            "on"
        } else {
            "off"
        }
    ));
    let mut next_pass = Instant::now();
    let mut next_scan = Instant::now() + opts.rescan;
    let mut retry: Vec<(UserSlice, u32)> = Vec::new();
    let mut ready: Vec<epoll::Event> = Vec::with_capacity(256);
    while !stop_requested() {
        let mut reload = false;
        if HUP.swap(false, Ordering::SeqCst) {
            say("SIGHUP: reloading the config (logs are opened per write; nothing to reopen)");
            reload = true;
        }
        let now = Instant::now();
        if now >= next_pass {
            reload = true;
        }
        if reload {
            config.reload();
            shared.set_config(config.current.clone());
            if let Ok(mut c) = lifecycle_cfg.lock() {
                c.clone_from(&config.current);
            }
            // New pressure settings are armed at once; otherwise the rescan below
            // (every `rescan`) is enough — a pass walks the tree itself.
            if triggers.reconfigure(&ep, &config.pressure()) {
                sync(&mut w, &mut triggers);
            }
        }
        if now >= next_pass {
            let ts = jiff::Timestamp::now();
            let gpu_now = shared.gpu_fresh();
            let (rep, stats) = collect::run_pass_with_stats(&opts.paths, ts, gpu_now.as_deref());
            if opts.verbose {
                for d in &rep.skipped {
                    say(&format!("skipped (not a ds01 slice): {}", d.display()));
                }
                say(&format!(
                    "pass: {} user slice(s) into {}, {} pressure trigger(s)",
                    rep.slices,
                    opts.paths.stats_log.display(),
                    triggers.count()
                ));
            }
            rep.print(true);
            alerts_after(opts, &stats, &rep, ts);
            shared.pass_done(Instant::now());
            next_pass = now + opts.interval;
        }
        if now >= next_scan {
            sync(&mut w, &mut triggers);
            next_scan = now + opts.rescan;
        }
        let cap = if retry.is_empty() { 500 } else { 50 };
        let wait = next_pass
            .min(next_scan)
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(cap));
        let ts = rustix::time::Timespec {
            tv_sec: wait.as_secs() as _,
            tv_nsec: wait.subsec_nanos() as _,
        };
        ready.clear();
        if let Err(e) = epoll::wait(&ep, rustix::buffer::spare_capacity(&mut ready), Some(&ts))
            && e != rustix::io::Errno::INTR
        {
            return Err(format!("epoll: {e}"));
        }
        let mut inotify_ready = false;
        for ev in &ready {
            let token = ev.data.u64();
            if token == INOTIFY_TOKEN {
                inotify_ready = true;
            } else if let Some(pe) = triggers.fired(&ep, token, ev.flags, Instant::now()) {
                log_pressure(opts, &pe);
            }
        }
        shared
            .pressure_triggers
            .store(triggers.count(), Ordering::SeqCst);
        if !inotify_ready && retry.is_empty() && w.fresh.is_empty() {
            continue;
        }
        let mut changed = if inotify_ready {
            w.changed()
        } else {
            Vec::new()
        };
        if std::mem::take(&mut w.rescan_now) {
            // A slice directory appeared: watch it now (its first read follows).
            sync(&mut w, &mut triggers);
        }
        for s in std::mem::take(&mut w.fresh) {
            if !changed.iter().any(|c| c.dir.path == s.dir.path) {
                changed.push(s);
            }
        }
        // Slices whose read failed last time (a file mid-update, a slice going
        // away) are tried again, a few times, so a kill is not left to the next pass.
        for (s, _) in &retry {
            if !changed.iter().any(|c| c.dir.path == s.dir.path) {
                changed.push(s.clone());
            }
        }
        if changed.is_empty() {
            continue;
        }
        let mut stats = Vec::new();
        let mut again = Vec::new();
        for s in &changed {
            match collect::read_slice(s) {
                Ok(st) => stats.push(st),
                Err(e) => {
                    let tries = retry
                        .iter()
                        .find(|(r, _)| r.dir.path == s.dir.path)
                        .map_or(0, |(_, n)| *n);
                    if tries < 10 && s.dir.path.is_dir() {
                        again.push((s.clone(), tries + 1));
                    } else {
                        eprintln!("error: slice {}: {e}", s.dir.path.display());
                    }
                }
            }
        }
        retry = again;
        let ts = jiff::Timestamp::now();
        let mut rep = PassReport::default();
        collect::track_ooms_as(&opts.paths, &stats, ts, &mut rep, "monitor");
        rep.print(true);
        if !rep.oom_events.is_empty() {
            alerts_after(opts, &stats, &rep, ts);
        }
    }
    if let Some(h) = gpu {
        let _ = h.join();
    }
    if let Some(h) = lifecycle {
        let _ = h.join();
    }
    say("ds01 monitor: stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_keep_other_tools_entries_and_a_recent_oom_alert() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(
            d.join("alice.json"),
            r#"[{"type": "gpu_hold", "message": "kept", "source": "other-tool"}]"#,
        )
        .expect("write");
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_mins(5);
        let oom = vec![("oom_kill".to_string(), "killed".to_string())];
        write_alerts(d, "alice", &oom, later).expect("write");
        let mem = vec![("memory_high".to_string(), "92%".to_string())];
        write_alerts(d, "alice", &mem, later).expect("rewrite");
        let v: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(d.join("alice.json")).expect("read"))
                .expect("json");
        let types: Vec<&str> = v.iter().filter_map(|a| a["type"].as_str()).collect();
        assert_eq!(types, ["gpu_hold", "oom_kill", "memory_high"]);
        // Nothing to say any more: the memory alert goes, the day-long OOM alert stays.
        write_alerts(d, "alice", &[], later).expect("rewrite");
        let v: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(d.join("alice.json")).expect("read"))
                .expect("json");
        let types: Vec<&str> = v.iter().filter_map(|a| a["type"].as_str()).collect();
        assert_eq!(types, ["gpu_hold", "oom_kill"]);
    }
}
