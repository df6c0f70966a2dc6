//! `ds01 top`: the live view of who uses what. [`Reader`] reads one frame from the
//! cgroup tree (CPU from `cpu.stat` deltas between frames, files kept open on
//! cgroupfs), [`View`] decides what is shown (sort, filter, expanded users, and
//! what a non-admin may see), [`render_plain`] prints a frame as text (`--once
//! --plain`) and `tui` draws it with ratatui.
//!
//! **What a non-admin sees**: their own row (expanded into their containers) and
//! one row summing everyone else ("(N others)", short enough for the USER column)
//! — how busy the host is, without whose work it is. Admins see every user.

pub mod tui;

use crate::cgroup::{CgroupDir, OpenFiles, Shared, walk};
use crate::units::{Limit, format_human_bytes};
use rustix::fd::OwnedFd;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One container scope under a user's slice.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerRow {
    pub id: String,
    pub name: String,
    pub memory: Option<u64>,
    /// % of one core since the last frame.
    pub cpu_pct: Option<f64>,
}

/// One user slice.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserRow {
    pub user: String,
    pub group: String,
    pub memory: Option<u64>,
    pub memory_max: Option<u64>,
    pub memory_high: Option<u64>,
    /// % of one core since the last frame (`None` on the first frame).
    pub cpu_pct: Option<f64>,
    /// CPUQuota in cores (`None` = unlimited).
    pub cpu_quota: Option<f64>,
    /// Share of the time since the last frame the slice was throttled, in %.
    pub throttled_pct: Option<f64>,
    pub psi_mem_some: Option<f64>,
    pub psi_mem_full: Option<f64>,
    pub psi_cpu_some: Option<f64>,
    pub psi_io_some: Option<f64>,
    pub tasks: Option<u64>,
    pub tasks_max: Option<u64>,
    /// The containers, read for the users in [`Reader::detail`].
    pub containers: Vec<ContainerRow>,
    /// How many containers the user runs (every user).
    pub ctrs: usize,
    pub ooms_24h: u64,
    /// The "(N others)" row a non-admin sees.
    pub others: Option<usize>,
    /// Their GPUs, on a host with GPUs.
    pub gpu: Option<GpuCell>,
    /// Pressure, limits, the container count (and tasks, unless
    /// [`Reader::tasks_of_all`]) were not read: the row was off screen (see
    /// [`Reader::shown`]); [`Reader::complete`] reads them.
    pub partial: bool,
}

/// A user's GPUs in one frame (from the GPU source, docs/gpu.md).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct GpuCell {
    /// Devices their running containers hold.
    pub allocated: u32,
    /// GPU memory of their processes.
    pub memory: u64,
    /// Mean utilisation of the devices they hold.
    pub util_pct: Option<f64>,
}

impl GpuCell {
    fn of(u: &crate::gpu::report::UserGpu) -> GpuCell {
        GpuCell {
            allocated: u.allocated,
            memory: u.memory_bytes,
            util_pct: u.util_pct,
        }
    }
}

/// Host-wide figures for the header.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Host {
    pub memory_total: Option<u64>,
    pub memory_available: Option<u64>,
    pub cpus: usize,
    pub load1: Option<f64>,
    /// ds01's units and their state (`active`, `inactive`, …).
    pub services: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Frame {
    pub rows: Vec<UserRow>,
    pub host: Host,
    /// Slices that could not be read (went away mid-frame, unreadable file).
    pub errors: usize,
    /// The host has GPUs: the GPU column is shown. `(devices, held)`.
    pub gpus: Option<(usize, usize)>,
}

/// Where a frame comes from.
#[derive(Debug, Clone)]
pub struct Sources {
    pub cgroup_root: PathBuf,
    pub events_log: PathBuf,
    pub docker_root: PathBuf,
    pub proc_root: PathBuf,
    pub systemctl: Option<String>,
}

/// Reads frames; keeps what deltas and caches need between them.
pub struct Reader {
    pub src: Sources,
    files: Arc<OpenFiles>,
    /// (usage µs, throttled µs, when) per slice or scope path.
    prev: PathMap<(u64, u64, Instant)>,
    names: HashMap<String, String>,
    ooms: HashMap<String, u64>,
    ooms_at: Option<Instant>,
    services: Vec<(String, String)>,
    services_at: Option<Instant>,
    /// The GPU source (none on a host without GPUs).
    pub gpu: Option<crate::gpu::Sampler>,
    /// Where the monitor keeps gpu.json: holders a non-admin's Docker does not
    /// list come from it.
    pub gpu_state: Option<PathBuf>,
    /// What is kept of each slice between frames: see [`SliceCache`].
    slices: PathMap<SliceCache>,
    /// The tree is on cgroupfs (checked at the first frame).
    cgroupfs: Option<bool>,
    /// A fingerprint of the last frame's cgroup directories: when a frame has the
    /// same, nothing went away and the caches need no pruning.
    dirs: (usize, u64),
    /// The users whose containers are read (memory and CPU per container): the
    /// expanded ones. `None`: everyone's. The others' containers are only counted.
    pub detail: Option<HashSet<String>>,
    /// The users whose every column is read: the rows on screen. The others get
    /// what sorting and the "(N others)" row need — memory, CPU, and tasks when
    /// `tasks_of_all` — and no pressure, limits or container count: their rows
    /// are `partial`. `None`: everyone.
    pub shown: Option<HashSet<String>>,
    /// Read everyone's task count (sorting by tasks, the "(N others)" row).
    pub tasks_of_all: bool,
    /// The last frame's slices, for [`Reader::complete`].
    last: Vec<crate::cgroup::UserSlice>,
}

/// A hash of the directories of the cgroups a frame read, in order.
struct Fingerprint(foldhash::fast::FoldHasher<'static>);

impl Default for Fingerprint {
    fn default() -> Self {
        use std::hash::BuildHasher;
        Fingerprint(foldhash::fast::FixedState::with_seed(0x0d50_1d50).build_hasher())
    }
}

impl Fingerprint {
    fn add(&mut self, d: &CgroupDir) {
        use std::hash::Hasher;
        use std::os::unix::ffi::OsStrExt;
        for p in d.dirs() {
            self.0.write(p.as_os_str().as_bytes());
            self.0.write_u8(0);
        }
    }
}

/// Keyed by a path's bytes with a fast hash (hashing a `Path` goes component by
/// component: thousands of them a frame showed in profiles).
type PathMap<V> = HashMap<std::ffi::OsString, V, foldhash::fast::RandomState>;

/// What a frame keeps of a slice for the next, so that not every file is read
/// every frame.
#[derive(Debug, Clone)]
struct SliceCache {
    /// MemoryMax, MemoryHigh, TasksMax, CPUQuota change only on `slices apply`:
    /// read again after [`SLOW_REFRESH`] (four files fewer per slice and frame);
    /// when they were read.
    limits: Option<(SliceLimits, Instant)>,
    /// The kernel recomputes PSI averages every [`PSI_PERIOD`]: a read in between
    /// returns the same avg10 figures, so they are read that often.
    psi: Option<(SlicePsi, Instant)>,
    /// Listed for the rows read whole and the expanded users.
    scopes: Option<ScopeList>,
}

/// A cached value read at most `every` ago, as of `now`.
fn fresh<T: Copy>(v: Option<(T, Instant)>, every: Duration, now: Instant) -> Option<(T, Instant)> {
    v.filter(|(_, at)| now.duration_since(*at) < every)
}

/// The kernel's PSI averaging period (`PSI_FREQ`, kernel/sched/psi.c).
const PSI_PERIOD: Duration = Duration::from_secs(2);

/// A slice's avg10 pressure figures.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct SlicePsi {
    mem_some: Option<f64>,
    mem_full: Option<f64>,
    cpu_some: Option<f64>,
    io_some: Option<f64>,
}

/// The limit files of one slice.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct SliceLimits {
    memory_max: Option<u64>,
    memory_high: Option<u64>,
    tasks_max: Option<u64>,
    cpu_quota: Option<f64>,
}

/// The OOM counts and unit states are refreshed this often, not every frame.
const SLOW_REFRESH: Duration = Duration::from_secs(10);

fn psi10(p: Option<crate::cgroup::parse::Psi>, full: bool) -> Option<f64> {
    let p = p?;
    if full {
        p.full.map(|l| l.avg10)
    } else {
        Some(p.some.avg10)
    }
}

impl Reader {
    pub fn new(src: Sources) -> Reader {
        Reader {
            src,
            files: Arc::default(),
            prev: PathMap::default(),
            names: HashMap::new(),
            ooms: HashMap::new(),
            ooms_at: None,
            services: Vec::new(),
            services_at: None,
            gpu: None,
            gpu_state: None,
            slices: PathMap::default(),
            detail: None,
            shown: None,
            tasks_of_all: true,
            last: Vec::new(),
            cgroupfs: None,
            dirs: (0, 0),
        }
    }

    /// CPU % of one core and throttled % since the last frame for `path`, from
    /// this frame's `cpu.stat` figures.
    fn cpu(
        &mut self,
        path: &Path,
        stat: Option<(u64, u64)>,
        now: Instant,
    ) -> (Option<f64>, Option<f64>) {
        let Some((usage, throttled)) = stat else {
            return (None, None);
        };
        let prev = self
            .prev
            .insert(path.as_os_str().to_os_string(), (usage, throttled, now));
        let Some((u0, t0, at)) = prev else {
            return (None, None);
        };
        let dt = now.duration_since(at).as_secs_f64() * 1e6;
        if dt <= 0.0 || usage < u0 {
            return (None, None);
        }
        (
            Some((usage - u0) as f64 * 100.0 / dt),
            Some((throttled.saturating_sub(t0)) as f64 * 100.0 / dt),
        )
    }

    /// One frame at `now`: the slices are read on a few threads, then the CPU
    /// deltas and container names are worked out here.
    pub fn read(&mut self, now: Instant) -> Frame {
        let mut f = Frame {
            host: self.host(now),
            ..Frame::default()
        };
        let Ok(w) = walk(&self.src.cgroup_root) else {
            return f;
        };
        if self
            .ooms_at
            .is_none_or(|t| now.duration_since(t) >= SLOW_REFRESH)
        {
            let since = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24);
            self.ooms = crate::greet::recent_ooms_of(&self.src.events_log, None, since)
                .map(|m| m.into_iter().map(|(u, s)| (u, s.count)).collect())
                .unwrap_or_default();
            self.ooms_at = Some(now);
        }
        let files = Arc::clone(&self.files);
        let cgroupfs = *self
            .cgroupfs
            .get_or_insert_with(|| OpenFiles::worth_it(&self.src.cgroup_root));
        let (known, detail, shown) = (&self.slices, &self.detail, &self.shown);
        let tasks_of_all = self.tasks_of_all;
        let raw = crate::cgroup::par_map(&w.slices, |s| {
            let full = shown.as_ref().is_none_or(|d| d.contains(&s.user));
            let read = Refresh {
                cgroupfs,
                scopes: detail.as_ref().is_none_or(|d| d.contains(&s.user)),
                full,
                tasks: full || tasks_of_all,
                now,
            };
            read_raw(&s.dir, &files, known.get(s.dir.path.as_os_str()), read)
        });
        // The cgroups read (and their fingerprint), to prune the caches with when
        // something went away: the slices borrowed from the walk, the scopes
        // moved out of their reads.
        let mut read_slices: Vec<&CgroupDir> = Vec::with_capacity(w.slices.len());
        let mut read_scopes: Vec<CgroupDir> = Vec::new();
        let mut fp = Fingerprint::default();
        for (s, r) in w.slices.iter().zip(raw) {
            // A slice that went away mid-frame, or a garbled file: counted.
            let Some(Ok(r)) = r else {
                f.errors += 1;
                continue;
            };
            let key = s.dir.path.as_os_str();
            match self.slices.get_mut(key) {
                Some(c) => *c = r.cache,
                None => {
                    self.slices.insert(key.to_os_string(), r.cache);
                }
            }
            let mut row = r.row;
            row.user = s.user.clone();
            row.group = s.group.clone();
            fp.add(&s.dir);
            read_slices.push(&s.dir);
            (row.cpu_pct, row.throttled_pct) = self.cpu(&s.dir.path, r.cpu, now);
            for (id, scope, memory, cpu) in r.scopes {
                let name = match self.names.get(&id) {
                    Some(n) => n.clone(),
                    None => {
                        let n = crate::collect::container_name(&self.src.docker_root, &id)
                            .unwrap_or_else(|| id.chars().take(12).collect());
                        self.names.insert(id.clone(), n.clone());
                        n
                    }
                };
                let (cpu_pct, _) = self.cpu(&scope.path, cpu, now);
                fp.add(&scope);
                read_scopes.push(scope);
                row.containers.push(ContainerRow {
                    id,
                    name,
                    memory,
                    cpu_pct,
                });
            }
            row.ooms_24h = self.ooms.get(&row.user).copied().unwrap_or(0);
            f.rows.push(row);
        }
        if let Some(g) = self.gpu.as_mut()
            && let Ok(mut r) = g.report(None, jiff::Timestamp::now())
        {
            if let Some(last) = self
                .gpu_state
                .as_deref()
                .and_then(|d| crate::gpu::report::load_fresh(d, jiff::Timestamp::now()))
            {
                r.merge_holders(&last);
            }
            let devices = r.devices.iter().filter(|d| !d.mig_enabled).count();
            let held = r.devices.iter().filter(|d| !d.holders.is_empty()).count();
            f.gpus = Some((devices, held));
            for row in &mut f.rows {
                row.gpu = Some(r.users.get(&row.user).map(GpuCell::of).unwrap_or_default());
            }
        }
        // Forget what went away (and close its files).
        let fp = (
            read_slices.len() + read_scopes.len(),
            std::hash::Hasher::finish(&fp.0),
        );
        if fp != self.dirs {
            let seen: HashSet<&std::ffi::OsStr, foldhash::fast::RandomState> = read_slices
                .iter()
                .copied()
                .chain(&read_scopes)
                .flat_map(CgroupDir::dirs)
                .map(Path::as_os_str)
                .collect();
            self.prev.retain(|p, _| seen.contains(p.as_os_str()));
            self.slices.retain(|p, _| seen.contains(p.as_os_str()));
            self.files.retain_dirs(|d| seen.contains(d.as_os_str()));
            self.dirs = fp;
        }
        self.last = w.slices;
        f
    }

    /// Read what the `partial` rows of `users` lack (rows that came on screen
    /// since the frame was read: scrolled to, sorted up, filtered in), now, so
    /// that no row on screen waits for the next frame. Whether any row was.
    pub fn complete(&mut self, f: &mut Frame, users: &HashSet<String>, now: Instant) -> bool {
        let wanted = |r: &UserRow| r.partial && users.contains(&r.user);
        if !f.rows.iter().any(wanted) {
            return false;
        }
        let dirs: HashMap<&str, &CgroupDir> = self
            .last
            .iter()
            .map(|s| (s.user.as_str(), &s.dir))
            .collect();
        for row in f.rows.iter_mut().filter(|r| wanted(r)) {
            let Some(dir) = dirs.get(row.user.as_str()) else {
                continue;
            };
            let mut d = (*dir).clone();
            d.open_files = Shared(Some(Arc::clone(&self.files)));
            let cache = self.slices.get_mut(dir.path.as_os_str());
            // Unreadable now (the slice went away): the cells stay "-".
            if let Ok((psi, limits)) = pressure_and_limits(&d, cache.as_deref(), now) {
                fill(row, &psi.0, &limits.0);
                if row.tasks.is_none() {
                    row.tasks = d.pids_current().ok().flatten();
                }
                let prev = cache.as_ref().and_then(|c| c.scopes.as_ref());
                let list = ScopeList::get(&dir.path, prev, self.cgroupfs == Some(true), now);
                row.ctrs = list.names.len();
                if let Some(c) = cache {
                    (c.psi, c.limits, c.scopes) = (Some(psi), Some(limits), Some(list));
                }
            }
        }
        true
    }

    fn host(&mut self, now: Instant) -> Host {
        let proc = &self.src.proc_root;
        let meminfo = std::fs::read_to_string(proc.join("meminfo")).unwrap_or_default();
        let kib = |key: &str| {
            meminfo
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|r| r.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .map(|v| v * 1024)
        };
        if let Some(sc) = &self.src.systemctl
            && self
                .services_at
                .is_none_or(|t| now.duration_since(t) >= SLOW_REFRESH)
        {
            let units = [
                "ds01-monitor.service",
                "ds01-proxy.socket",
                "ds01-collect.timer",
            ];
            // No systemctl (a container, a non-systemd host): no unit states.
            self.services = match std::process::Command::new(sc)
                .arg("is-active")
                .args(units)
                .output()
            {
                Ok(o) => units
                    .iter()
                    .zip(String::from_utf8_lossy(&o.stdout).lines())
                    .map(|(u, s)| (u.to_string(), s.trim().to_string()))
                    .collect(),
                Err(_) => Vec::new(),
            };
            self.services_at = Some(now);
        }
        Host {
            memory_total: kib("MemTotal:"),
            memory_available: kib("MemAvailable:"),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            load1: std::fs::read_to_string(proc.join("loadavg"))
                .ok()
                .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse().ok())),
            services: self.services.clone(),
        }
    }
}

/// `cpu.stat`'s usage and throttled µs.
type CpuStat = Option<(u64, u64)>;

/// The container scopes of one slice, and what tells when to list them again.
///
/// Listing a directory on cgroupfs (open + getdents + close) costs ~14 µs, more
/// than all the slice's files together; the number of child cgroups is the
/// directory's link count less two (kernfs keeps it so), one `fstat` of a kept
/// directory fd (~0.4 µs). So the scopes are listed again when that number changes,
/// or after [`SLOW_REFRESH`] (a container removed and another started between two
/// frames keeps the number; a scope that went away is also noticed when its files
/// cannot be read). Elsewhere (a fixture tree of regular directories) the
/// directory is listed every frame.
#[derive(Debug, Clone)]
struct ScopeList {
    /// The slice directory, kept open (cgroupfs only).
    dir: Option<Arc<OwnedFd>>,
    /// Its link count when listed.
    nlink: u64,
    /// The scopes' directory names.
    names: Arc<[String]>,
    at: Instant,
}

impl ScopeList {
    /// The scopes of `slice` now: `prev` if it still holds, else a new listing.
    fn get(slice: &Path, prev: Option<&ScopeList>, cgroupfs: bool, now: Instant) -> ScopeList {
        let open = || {
            rustix::fs::open(
                slice,
                rustix::fs::OFlags::RDONLY
                    | rustix::fs::OFlags::DIRECTORY
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .ok()
            .map(Arc::new)
        };
        let dir = if cgroupfs {
            prev.and_then(|p| p.dir.clone()).or_else(open)
        } else {
            None
        };
        let nlink = dir
            .as_deref()
            .and_then(|d| rustix::fs::fstat(d).ok())
            .map(|st| st.st_nlink);
        if let (Some(p), Some(n)) = (prev, nlink)
            && p.nlink == n
            && now.duration_since(p.at) < SLOW_REFRESH
        {
            return p.clone();
        }
        let names = crate::cgroup::subdirs_named(slice)
            .into_iter()
            .filter(|n| crate::naming::parse_scope(n).is_some())
            .collect();
        ScopeList {
            dir,
            nlink: nlink.unwrap_or(0),
            names,
            at: now,
        }
    }
}

/// What a frame reads of a slice.
#[derive(Debug, Clone, Copy)]
struct Refresh {
    /// The tree is on cgroupfs (see [`ScopeList`]).
    cgroupfs: bool,
    /// Read the containers' files (else only count them).
    scopes: bool,
    /// Read pressure and limits (else the row is `partial`).
    full: bool,
    /// Read the task count.
    tasks: bool,
    now: Instant,
}

/// One slice as read from the kernel, before deltas.
struct Raw {
    row: UserRow,
    /// What to keep for the next frame.
    cache: SliceCache,
    cpu: CpuStat,
    /// (id, scope, memory.current, cpu.stat figures) per container.
    scopes: Vec<(String, CgroupDir, Option<u64>, CpuStat)>,
}

/// A slice's pressure and limits, each from `cached` while fresh (PSI for
/// [`PSI_PERIOD`], limits for [`SLOW_REFRESH`]), else read; with when read.
#[allow(clippy::type_complexity)]
fn pressure_and_limits(
    d: &CgroupDir,
    cached: Option<&SliceCache>,
    now: Instant,
) -> Result<((SlicePsi, Instant), (SliceLimits, Instant)), crate::cgroup::CgroupError> {
    let psi = match fresh(cached.and_then(|c| c.psi), PSI_PERIOD, now) {
        Some(p) => p,
        None => {
            let mem = d.psi("memory")?;
            let psi = SlicePsi {
                mem_some: psi10(mem, false),
                mem_full: psi10(mem, true),
                cpu_some: psi10(d.psi("cpu")?, false),
                io_some: psi10(d.psi("io")?, false),
            };
            (psi, now)
        }
    };
    let limits = match fresh(cached.and_then(|c| c.limits), SLOW_REFRESH, now) {
        Some(l) => l,
        None => {
            let limits = SliceLimits {
                memory_max: d.memory_max()?.and_then(Limit::value),
                memory_high: d.memory_high()?.and_then(Limit::value),
                tasks_max: d.pids_max()?.and_then(Limit::value),
                cpu_quota: d
                    .cpu_max()?
                    .and_then(|(q, period)| q.value().map(|q| q as f64 / period.max(1) as f64)),
            };
            (limits, now)
        }
    };
    Ok((psi, limits))
}

/// A row's pressure and limit cells.
fn fill(row: &mut UserRow, psi: &SlicePsi, limits: &SliceLimits) {
    row.memory_max = limits.memory_max;
    row.memory_high = limits.memory_high;
    row.tasks_max = limits.tasks_max;
    row.cpu_quota = limits.cpu_quota;
    row.psi_mem_some = psi.mem_some;
    row.psi_mem_full = psi.mem_full;
    row.psi_cpu_some = psi.cpu_some;
    row.psi_io_some = psi.io_some;
    row.partial = false;
}

/// Read one slice (on a hybrid host its memory and pids from the v1 hierarchies);
/// pressure and limits only for a `full` read (kept in the cache as they were
/// otherwise).
fn read_raw(
    slice: &CgroupDir,
    files: &Arc<OpenFiles>,
    cached: Option<&SliceCache>,
    read: Refresh,
) -> Result<Raw, crate::cgroup::CgroupError> {
    let mut d = slice.clone();
    d.open_files = Shared(Some(Arc::clone(files)));
    // The container list: for rows read whole and expanded users (the count is
    // a column, on screen only).
    let list = (read.full || read.scopes).then(|| {
        let prev = cached.and_then(|c| c.scopes.as_ref());
        ScopeList::get(&slice.path, prev, read.cgroupfs, read.now)
    });
    let mut row = UserRow {
        memory: d.memory_current()?,
        tasks: if read.tasks { d.pids_current()? } else { None },
        partial: true,
        ..UserRow::default()
    };
    let (psi, limits) = if read.full {
        let (psi, limits) = pressure_and_limits(&d, cached, read.now)?;
        fill(&mut row, &psi.0, &limits.0);
        (Some(psi), Some(limits))
    } else {
        (cached.and_then(|c| c.psi), cached.and_then(|c| c.limits))
    };
    let cpu = d.cpu_stat()?;
    let listed: &[String] = list.as_ref().map_or(&[], |l| &l.names);
    let mut scopes = Vec::new();
    let mut gone = false;
    let names: &[String] = if read.scopes { listed } else { &[] };
    let kept_dir = list.as_ref().is_some_and(|l| l.dir.is_some());
    for name in names {
        let scope = d.child(name);
        let cpu = scope.cpu_stat().ok().flatten();
        if cpu.is_none() && kept_dir && !scope.path.exists() {
            // Went away since it was listed: not shown, and listed again next
            // frame.
            gone = true;
            continue;
        }
        let mem = scope.memory_current().ok().flatten();
        let id = crate::naming::parse_scope(name).unwrap_or(name).to_string();
        scopes.push((id, scope, mem, cpu));
    }
    row.ctrs = if read.scopes {
        scopes.len()
    } else {
        listed.len()
    };
    let list = match list {
        // No link count matches: listed again next frame.
        Some(l) if gone => Some(ScopeList {
            nlink: u64::MAX,
            ..l
        }),
        Some(l) => Some(l),
        None => cached.and_then(|c| c.scopes.clone()),
    };
    Ok(Raw {
        row,
        cache: SliceCache {
            limits,
            psi,
            scopes: list,
        },
        cpu,
        scopes,
    })
}

/// What the columns sort by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    User,
    Memory,
    Cpu,
    Pressure,
    Tasks,
    Ooms,
    Gpu,
}

impl SortKey {
    pub const ALL: [SortKey; 7] = [
        SortKey::User,
        SortKey::Memory,
        SortKey::Cpu,
        SortKey::Pressure,
        SortKey::Tasks,
        SortKey::Ooms,
        SortKey::Gpu,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SortKey::User => "user",
            SortKey::Memory => "memory",
            SortKey::Cpu => "cpu",
            SortKey::Pressure => "pressure",
            SortKey::Tasks => "tasks",
            SortKey::Ooms => "ooms",
            SortKey::Gpu => "gpu",
        }
    }

    pub fn parse(s: &str) -> Result<SortKey, String> {
        SortKey::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = SortKey::ALL.iter().map(|k| k.name()).collect();
                format!("unknown sort column {s:?} (one of {})", names.join(", "))
            })
    }
}

/// Who is looking.
#[derive(Debug, Clone, PartialEq)]
pub struct Viewer {
    pub admin: bool,
    /// The viewer's sanitized user name (their slice's).
    pub user: String,
}

/// What is shown of a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub sort: SortKey,
    /// A substring of the user or group name.
    pub filter: String,
    pub expanded: HashSet<String>,
    pub viewer: Viewer,
}

impl View {
    pub fn new(viewer: Viewer) -> View {
        let mut expanded = HashSet::new();
        if !viewer.admin {
            expanded.insert(viewer.user.clone());
        }
        View {
            sort: SortKey::Memory,
            filter: String::new(),
            expanded,
            viewer,
        }
    }

    /// The rows to show, in order: filtered, sorted, and for a non-admin their own
    /// row plus one summing everyone else.
    pub fn rows(&self, f: &Frame) -> Vec<UserRow> {
        let mut rows: Vec<UserRow> = if self.viewer.admin {
            f.rows.clone()
        } else {
            let (mine, others): (Vec<_>, Vec<_>) =
                f.rows.iter().partition(|r| r.user == self.viewer.user);
            let mut v: Vec<UserRow> = mine.into_iter().cloned().collect();
            if !others.is_empty() {
                v.push(sum_others(&others));
            }
            v
        };
        if !self.filter.is_empty() {
            rows.retain(|r| {
                r.others.is_some()
                    || r.user.contains(&self.filter)
                    || r.group.contains(&self.filter)
            });
        }
        let key = |r: &UserRow| -> f64 {
            match self.sort {
                SortKey::User => 0.0,
                SortKey::Memory => r.memory.unwrap_or(0) as f64,
                SortKey::Cpu => r.cpu_pct.unwrap_or(0.0),
                SortKey::Pressure => r
                    .psi_mem_some
                    .unwrap_or(0.0)
                    .max(r.psi_cpu_some.unwrap_or(0.0)),
                SortKey::Tasks => r.tasks.unwrap_or(0) as f64,
                SortKey::Ooms => r.ooms_24h as f64,
                SortKey::Gpu => r.gpu.map_or(0.0, |g| g.memory as f64),
            }
        };
        rows.sort_by(|a, b| {
            // The "others" row always last.
            a.others.is_some().cmp(&b.others.is_some()).then_with(|| {
                if self.sort == SortKey::User {
                    a.user.cmp(&b.user)
                } else {
                    key(b).total_cmp(&key(a)).then_with(|| a.user.cmp(&b.user))
                }
            })
        });
        rows
    }
}

fn sum_others(others: &[&UserRow]) -> UserRow {
    let sum_u = |f: &dyn Fn(&UserRow) -> Option<u64>| -> Option<u64> {
        others.iter().filter_map(|r| f(r)).reduce(|a, b| a + b)
    };
    UserRow {
        user: match others.len() {
            1 => "(1 other)".to_string(),
            n => format!("({n} others)"),
        },
        group: String::new(),
        memory: sum_u(&|r| r.memory),
        cpu_pct: others.iter().filter_map(|r| r.cpu_pct).reduce(|a, b| a + b),
        tasks: sum_u(&|r| r.tasks),
        others: Some(others.len()),
        gpu: others.iter().filter_map(|r| r.gpu).reduce(|a, b| GpuCell {
            allocated: a.allocated + b.allocated,
            memory: a.memory + b.memory,
            util_pct: None,
        }),
        ..UserRow::default()
    }
}

fn opt_pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.0}%"))
}

fn opt_f(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.1}"))
}

fn bytes(v: Option<u64>) -> String {
    v.map_or("-".into(), format_human_bytes)
}

/// `2 38G 92%`: devices held, GPU memory, mean utilisation.
pub fn gpu_cell(g: Option<GpuCell>) -> String {
    match g {
        None => "-".into(),
        Some(g) if g.allocated == 0 && g.memory == 0 => "-".into(),
        Some(g) => format!(
            "{} {} {}",
            g.allocated,
            short_bytes(g.memory),
            opt_pct(g.util_pct)
        ),
    }
}

/// `3.2G`, `48G`, `512M`: sizes in at most four characters.
pub fn short_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if v < 10.0 && u > 0 {
        format!("{v:.1}{}", UNITS[u])
    } else {
        format!("{v:.0}{}", UNITS[u])
    }
}

/// The number of columns; the last (GPU) only on a host with GPUs.
pub const COLUMNS: usize = 10;

/// The table's cells for one row, shared by the plain and the TUI renderers.
pub fn cells(r: &UserRow) -> [String; COLUMNS] {
    let mem = match (r.memory, r.memory_max) {
        (Some(m), Some(max)) if max > 0 => format!(
            "{} / {} {:>3.0}%",
            format_human_bytes(m),
            format_human_bytes(max),
            m as f64 * 100.0 / max as f64
        ),
        (m, _) => format!("{} / -", bytes(m)),
    };
    let cpu = match r.cpu_quota {
        Some(q) => format!("{} / {:.0}%", opt_pct(r.cpu_pct), q * 100.0),
        None => format!("{} / -", opt_pct(r.cpu_pct)),
    };
    let tasks = match (r.tasks, r.tasks_max) {
        (Some(t), Some(m)) => format!("{t}/{m}"),
        (Some(t), None) => format!("{t}"),
        _ => "-".into(),
    };
    [
        r.user.clone(),
        r.group.clone(),
        mem,
        cpu,
        opt_pct(r.throttled_pct),
        format!(
            "{}/{}/{}",
            opt_f(r.psi_mem_some),
            opt_f(r.psi_cpu_some),
            opt_f(r.psi_io_some)
        ),
        tasks,
        if r.others.is_some() {
            String::new()
        } else {
            r.ctrs.to_string()
        },
        if r.others.is_some() {
            String::new()
        } else {
            r.ooms_24h.to_string()
        },
        gpu_cell(r.gpu),
    ]
}

pub const HEADERS: [&str; COLUMNS] = [
    "USER",
    "GROUP",
    "MEMORY / MAX",
    "CPU / QUOTA",
    "THROT",
    "PSI m/c/io",
    "TASKS",
    "CTRS",
    "OOM24h",
    "GPU n/mem/util",
];

/// The header line: host totals and the ds01 units.
pub fn header(f: &Frame, view: &View) -> String {
    let h = &f.host;
    let mem = match (h.memory_total, h.memory_available) {
        (Some(t), Some(a)) => format!(
            "mem {} / {}",
            format_human_bytes(t.saturating_sub(a)),
            format_human_bytes(t)
        ),
        _ => "mem -".into(),
    };
    let load = h.load1.map_or(String::new(), |l| format!(", load {l:.2}"));
    let services: Vec<String> = h
        .services
        .iter()
        .map(|(u, s)| format!("{}: {s}", u.trim_start_matches("ds01-")))
        .collect();
    let gpus = f
        .gpus
        .map_or(String::new(), |(n, held)| format!(", GPUs {held}/{n} held"));
    let errs = if f.errors > 0 {
        format!(", {} slice(s) unreadable", f.errors)
    } else {
        String::new()
    };
    format!(
        "ds01 top — {} users, {mem}, {} CPUs{gpus}{load}{}{} | sort: {}{}",
        f.rows.len(),
        h.cpus,
        if services.is_empty() {
            String::new()
        } else {
            format!(" | {}", services.join(", "))
        },
        errs,
        view.sort.name(),
        if view.filter.is_empty() {
            String::new()
        } else {
            format!(", filter: {}", view.filter)
        }
    )
}

/// One frame as plain text (`--once --plain`), `width` columns at most per line.
pub fn render_plain(f: &Frame, view: &View, width: usize) -> String {
    let rows = view.rows(f);
    let ncols = if f.gpus.is_some() {
        COLUMNS
    } else {
        COLUMNS - 1
    };
    let mut table: Vec<[String; COLUMNS]> = vec![HEADERS.map(str::to_string)];
    let mut sub: Vec<Option<String>> = vec![None];
    for r in &rows {
        table.push(cells(r));
        sub.push(None);
        if view.expanded.contains(&r.user) {
            for c in &r.containers {
                table.push([
                    format!("  └ {}", c.name),
                    String::new(),
                    format!("{} / -", bytes(c.memory)),
                    format!("{} / -", opt_pct(c.cpu_pct)),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ]);
                sub.push(Some(c.id.clone()));
            }
        }
    }
    let mut widths = [0usize; COLUMNS];
    for row in &table {
        for (i, c) in row.iter().take(ncols).enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    // Cut by characters: the header has an em dash, and the filter is the user's.
    let mut out: String = header(f, view).chars().take(width.max(20)).collect();
    out.push('\n');
    for row in &table {
        let mut line = String::new();
        for (i, c) in row.iter().take(ncols).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(&format!("{c:<w$}", w = widths[i]));
        }
        let line: String = line.trim_end().chars().take(width).collect();
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
