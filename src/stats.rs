//! The stats history (`resource-stats.log` and its rotations): the latest sample
//! per user, per-user summaries over a range, and plots. Reading goes through the
//! same line-file code and time phrases as `ds01 events`.

use crate::events::query::{files_for, par_fold};
use crate::timespec::parse_log_time;
use jiff::Timestamp;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io;
use std::path::Path;

pub const DEFAULT_LOG: &str = "/var/log/ds01/resource-stats.log";

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub users: Vec<String>,
    pub group: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

/// One stats line, as far as the views need it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sample {
    pub ts: Timestamp,
    pub user: String,
    pub group: String,
    pub memory_current: u64,
    pub memory_max: Option<u64>,
    pub memory_pct: f64,
    pub pids_current: u64,
    pub pids_max: Option<u64>,
    pub psi_memory_some: Option<f64>,
    pub psi_memory_full: Option<f64>,
    pub psi_cpu_some: Option<f64>,
    pub oom_kill_count: u64,
    /// GPU fields (hosts with GPUs; absent in older lines).
    pub gpus_allocated: Option<u32>,
    pub gpu_memory: Option<u64>,
    pub gpu_util_pct: Option<f64>,
}

#[derive(Debug, PartialEq, Deserialize)]
struct Raw<'a> {
    timestamp: &'a str,
    user: &'a str,
    #[serde(default)]
    group: &'a str,
    #[serde(default)]
    memory_current_bytes: u64,
    memory_max_bytes: Option<u64>,
    #[serde(default)]
    memory_pct: f64,
    #[serde(default)]
    pids_current: u64,
    pids_max: Option<u64>,
    psi_memory_some_avg10: Option<f64>,
    psi_memory_full_avg10: Option<f64>,
    psi_cpu_some_avg10: Option<f64>,
    #[serde(default)]
    oom_kill_count: u64,
    gpus_allocated: Option<u32>,
    gpu_memory_bytes: Option<u64>,
    gpu_util_pct: Option<f64>,
}

/// A stats line's fields: ds01's own flat lines through the fast scanner, anything
/// else it will not vouch for through serde_json (the same answer, later).
fn parse_raw(line: &str) -> Option<Raw<'_>> {
    fast_raw(line).or_else(|| serde_json::from_str(line).ok())
}

/// [`Raw`] from [`crate::flatjson::scan`], with serde's rules for each field
/// (`#[serde(default)]` fields may be absent, `Option`s may be null); `None` for
/// whatever serde might read otherwise (a duplicate field, a value of another
/// type, a missing timestamp or user), which then goes to serde.
fn fast_raw(line: &str) -> Option<Raw<'_>> {
    use crate::flatjson::Scalar;
    #[derive(Default)]
    struct Seen<'a> {
        timestamp: Option<&'a str>,
        user: Option<&'a str>,
        group: Option<&'a str>,
        memory_current_bytes: Option<u64>,
        memory_max_bytes: Option<Option<u64>>,
        memory_pct: Option<f64>,
        pids_current: Option<u64>,
        pids_max: Option<Option<u64>>,
        psi_memory_some_avg10: Option<Option<f64>>,
        psi_memory_full_avg10: Option<Option<f64>>,
        psi_cpu_some_avg10: Option<Option<f64>>,
        oom_kill_count: Option<u64>,
        gpus_allocated: Option<Option<u32>>,
        gpu_memory_bytes: Option<Option<u64>>,
        gpu_util_pct: Option<Option<f64>>,
    }
    /// Set a field once (a second time is serde's "duplicate field").
    fn once<T>(slot: &mut Option<T>, v: Option<T>) -> bool {
        match (slot.is_none(), v) {
            (true, Some(v)) => {
                *slot = Some(v);
                true
            }
            _ => false,
        }
    }
    fn opt<'a, T>(v: Scalar<'a>, f: impl Fn(Scalar<'a>) -> Option<T>) -> Option<Option<T>> {
        match v {
            Scalar::Null => Some(None),
            v => f(v).map(Some),
        }
    }
    fn text(v: Scalar<'_>) -> Option<&str> {
        match v {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }
    let mut s = Seen::default();
    crate::flatjson::scan(line, |k, v| match k {
        "timestamp" => once(&mut s.timestamp, text(v)),
        "user" => once(&mut s.user, text(v)),
        "group" => once(&mut s.group, text(v)),
        "memory_current_bytes" => once(&mut s.memory_current_bytes, v.unsigned()),
        "memory_max_bytes" => once(&mut s.memory_max_bytes, opt(v, Scalar::unsigned)),
        "memory_pct" => once(&mut s.memory_pct, v.float()),
        "pids_current" => once(&mut s.pids_current, v.unsigned()),
        "pids_max" => once(&mut s.pids_max, opt(v, Scalar::unsigned)),
        "psi_memory_some_avg10" => once(&mut s.psi_memory_some_avg10, opt(v, Scalar::float)),
        "psi_memory_full_avg10" => once(&mut s.psi_memory_full_avg10, opt(v, Scalar::float)),
        "psi_cpu_some_avg10" => once(&mut s.psi_cpu_some_avg10, opt(v, Scalar::float)),
        "oom_kill_count" => once(&mut s.oom_kill_count, v.unsigned()),
        "gpus_allocated" => once(&mut s.gpus_allocated, opt(v, Scalar::unsigned)),
        "gpu_memory_bytes" => once(&mut s.gpu_memory_bytes, opt(v, Scalar::unsigned)),
        "gpu_util_pct" => once(&mut s.gpu_util_pct, opt(v, Scalar::float)),
        _ => true,
    })?;
    Some(Raw {
        timestamp: s.timestamp?,
        user: s.user?,
        group: s.group.unwrap_or_default(),
        memory_current_bytes: s.memory_current_bytes.unwrap_or_default(),
        memory_max_bytes: s.memory_max_bytes.flatten(),
        memory_pct: s.memory_pct.unwrap_or_default(),
        pids_current: s.pids_current.unwrap_or_default(),
        pids_max: s.pids_max.flatten(),
        psi_memory_some_avg10: s.psi_memory_some_avg10.flatten(),
        psi_memory_full_avg10: s.psi_memory_full_avg10.flatten(),
        psi_cpu_some_avg10: s.psi_cpu_some_avg10.flatten(),
        oom_kill_count: s.oom_kill_count.unwrap_or_default(),
        gpus_allocated: s.gpus_allocated.flatten(),
        gpu_memory_bytes: s.gpu_memory_bytes.flatten(),
        gpu_util_pct: s.gpu_util_pct.flatten(),
    })
}

/// Parse one stats line; `None` when it is not one (malformed, truncated).
pub fn parse_sample(line: &str) -> Option<Sample> {
    let r = parse_raw(line)?;
    Some(Sample {
        ts: parse_log_time(r.timestamp)?,
        user: r.user.to_string(),
        group: r.group.to_string(),
        memory_current: r.memory_current_bytes,
        memory_max: r.memory_max_bytes,
        memory_pct: r.memory_pct,
        pids_current: r.pids_current,
        pids_max: r.pids_max,
        psi_memory_some: r.psi_memory_some_avg10,
        psi_memory_full: r.psi_memory_full_avg10,
        psi_cpu_some: r.psi_cpu_some_avg10,
        oom_kill_count: r.oom_kill_count,
        gpus_allocated: r.gpus_allocated,
        gpu_memory: r.gpu_memory_bytes,
        gpu_util_pct: r.gpu_util_pct,
    })
}

impl Filter {
    fn matches(&self, s: &Sample) -> bool {
        self.matches_fields(&s.user, &s.group, s.ts)
    }

    fn matches_fields(&self, user: &str, group: &str, ts: Timestamp) -> bool {
        (self.users.is_empty() || self.users.iter().any(|u| u == user))
            && self.group.as_ref().is_none_or(|g| g == group)
            && self.since.is_none_or(|t| ts >= t)
            && self.until.is_none_or(|t| ts <= t)
    }

    /// Skip blank lines and lines the raw-text test rules out; a line ruled out
    /// unread is counted as malformed only if it is not a complete `{…}` line
    /// (as for events).
    fn worth_parsing(&self, line: &str, malformed: &mut usize) -> bool {
        if line.trim().is_empty() {
            return false;
        }
        if !self.may_match(line) {
            *malformed += usize::from(crate::events::query::looks_incomplete(line));
            return false;
        }
        true
    }

    /// A cheap test on the raw line that every matching line passes.
    fn may_match(&self, line: &str) -> bool {
        let has = |v: &str| !v.contains(['"', '\\']) && line.contains(&format!("\"{v}\""));
        (self.users.is_empty() || self.users.iter().any(|u| has(u) || u.contains(['"', '\\'])))
            && self
                .group
                .as_ref()
                .is_none_or(|g| has(g) || g.contains(['"', '\\']))
    }
}

fn first_stats_ts(path: &Path) -> Option<Timestamp> {
    crate::events::query::first_line_ts(path, |l| parse_sample(l).map(|s| s.ts))
}

/// Every matching sample in time order (per file; files oldest first), the
/// original lines when `keep_lines`, and the number of malformed lines.
pub struct Loaded {
    pub samples: Vec<Sample>,
    pub lines: Vec<String>,
    pub malformed: usize,
}

pub fn load(path: &Path, f: &Filter, keep_lines: bool) -> io::Result<Loaded> {
    #[derive(Default)]
    struct Part {
        samples: Vec<Sample>,
        lines: Vec<String>,
        malformed: usize,
    }
    let step = |p: &mut Part, line: &str| {
        if !f.worth_parsing(line, &mut p.malformed) {
            return;
        }
        match parse_sample(line) {
            Some(s) if f.matches(&s) => {
                if keep_lines {
                    p.lines.push(line.to_string());
                }
                p.samples.push(s);
            }
            Some(_) => {}
            None => p.malformed += 1,
        }
    };
    let mut out = Loaded {
        samples: Vec::new(),
        lines: Vec::new(),
        malformed: 0,
    };
    for file in files_for(path, f.since, first_stats_ts) {
        for part in par_fold(&file, &Part::default, &step)? {
            out.samples.extend(part.samples);
            out.lines.extend(part.lines);
            out.malformed += part.malformed;
        }
    }
    Ok(out)
}

/// The latest sample per user, highest memory percentage first.
pub fn latest(samples: &[Sample]) -> Vec<Sample> {
    let mut by: BTreeMap<&str, &Sample> = BTreeMap::new();
    for s in samples {
        match by.get(s.user.as_str()) {
            Some(prev) if prev.ts > s.ts => {}
            _ => {
                by.insert(&s.user, s);
            }
        }
    }
    let mut v: Vec<Sample> = by.into_values().cloned().collect();
    v.sort_by(|a, b| {
        b.memory_pct
            .total_cmp(&a.memory_pct)
            .then(a.user.cmp(&b.user))
    });
    v
}

/// One user's summary over the range.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub user: String,
    pub group: String,
    pub samples: usize,
    pub peak_pct: f64,
    pub mean_pct: f64,
    /// Seconds spent at or above 90 % of the memory limit.
    pub secs_above_90: i64,
    pub peak_psi_some: Option<f64>,
    pub peak_psi_full: Option<f64>,
    /// OOM kills in the range, from the counter's rises (a drop is a reset: the new
    /// value counts as new kills).
    pub oom_kills: u64,
    /// GPU-hours held (devices allocated × time, counted like time above 90 %);
    /// `None` when no sample has GPU fields.
    pub gpu_hours: Option<f64>,
    pub peak_gpus: Option<u32>,
    /// Mean utilisation of the held devices over the samples that held any.
    pub mean_gpu_util: Option<f64>,
    pub peak_gpu_memory: Option<u64>,
}

/// One sample as the summary needs it: no strings, and 64 bytes, not 96 (a
/// million of them are kept for a week of 100 users; `None` is NaN or the
/// type's MAX, which no stats line holds).
#[derive(Debug, Clone, Copy)]
struct Point {
    ts: i64,
    pct: f64,
    psi_some: f64,
    psi_full: f64,
    oom: u64,
    gpu_util: f64,
    gpu_mem: u64,
    gpus: u32,
}

impl Point {
    fn of(s: &Sample) -> Point {
        Point::from_raw(
            s.ts.as_second(),
            &Raw {
                timestamp: "",
                user: "",
                group: "",
                memory_current_bytes: 0,
                memory_max_bytes: None,
                memory_pct: s.memory_pct,
                pids_current: 0,
                pids_max: None,
                psi_memory_some_avg10: s.psi_memory_some,
                psi_memory_full_avg10: s.psi_memory_full,
                psi_cpu_some_avg10: None,
                oom_kill_count: s.oom_kill_count,
                gpus_allocated: s.gpus_allocated,
                gpu_memory_bytes: s.gpu_memory,
                gpu_util_pct: s.gpu_util_pct,
            },
        )
    }

    /// The one place a line's figures become a point.
    fn from_raw(ts: i64, r: &Raw) -> Point {
        Point {
            ts,
            pct: r.memory_pct,
            psi_some: r.psi_memory_some_avg10.unwrap_or(f64::NAN),
            psi_full: r.psi_memory_full_avg10.unwrap_or(f64::NAN),
            oom: r.oom_kill_count,
            gpu_util: r.gpu_util_pct.unwrap_or(f64::NAN),
            gpu_mem: r.gpu_memory_bytes.unwrap_or(u64::MAX),
            gpus: r.gpus_allocated.unwrap_or(u32::MAX),
        }
    }

    fn psi_some(&self) -> Option<f64> {
        Some(self.psi_some).filter(|v| !v.is_nan())
    }
    fn psi_full(&self) -> Option<f64> {
        Some(self.psi_full).filter(|v| !v.is_nan())
    }
    fn gpu_util(&self) -> Option<f64> {
        Some(self.gpu_util).filter(|v| !v.is_nan())
    }
    fn gpu_mem(&self) -> Option<u64> {
        Some(self.gpu_mem).filter(|v| *v != u64::MAX)
    }
    fn gpus(&self) -> Option<u32> {
        Some(self.gpus).filter(|v| *v != u32::MAX)
    }
}

type Users<T> = std::collections::HashMap<String, T, foldhash::fast::RandomState>;

/// The group of a user's latest sample (of several at the latest time, the last
/// in the file, as a stable sort by time leaves them).
#[derive(Debug, Default, Clone)]
struct LatestGroup {
    group: String,
    ts: i64,
    seen: bool,
}

impl LatestGroup {
    fn see(&mut self, group: &str, ts: i64) {
        if ts >= self.ts || !self.seen {
            if self.group != group {
                self.group = group.to_string();
            }
            self.ts = ts;
            self.seen = true;
        }
    }

    /// Take in what came after `self` in the file.
    fn then(&mut self, later: LatestGroup) {
        if later.seen && (later.ts >= self.ts || !self.seen) {
            *self = later;
        }
    }
}

/// What the pairs of consecutive samples one gap apart add up to.
#[derive(Debug, Default, Clone, Copy)]
struct GapTally {
    pairs: u64,
    /// Pairs whose first sample was at or above 90 %.
    above: u64,
    /// The devices the first samples held.
    gpus: u64,
}

/// One user's samples reduced in time order as they come: everything the summary
/// needs in a few numbers and a table of the gaps between consecutive samples (one
/// entry per distinct gap — a handful), so a year of history takes no more memory
/// than an hour of it, and nothing is sorted. A sample earlier than the one before
/// it marks the reduction `disordered`: it is then useless, and the user is reduced
/// again from their sorted points ([`reduce_sorted`]).
#[derive(Debug, Default, Clone)]
struct Reduction {
    n: usize,
    first: Option<Point>,
    last: Option<Point>,
    gaps: BTreeMap<i64, GapTally>,
    disordered: bool,
    sum_pct: f64,
    peak_pct: f64,
    peak_psi_some: Option<f64>,
    peak_psi_full: Option<f64>,
    kills: u64,
    any_gpu: bool,
    peak_gpus: Option<u32>,
    util_sum: f64,
    util_n: usize,
    peak_gpu_mem: Option<u64>,
}

fn peak_f64(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

impl Reduction {
    fn push(&mut self, p: Point) {
        match self.last {
            _ if self.disordered => return,
            Some(last) if p.ts < last.ts => {
                self.disordered = true;
                return;
            }
            Some(last) => self.pair(&last, &p),
            None => self.first = Some(p),
        }
        self.last = Some(p);
        self.n += 1;
        self.sum_pct += p.pct;
        self.peak_pct = self.peak_pct.max(p.pct);
        self.peak_psi_some = peak_f64(self.peak_psi_some, p.psi_some());
        self.peak_psi_full = peak_f64(self.peak_psi_full, p.psi_full());
        self.any_gpu |= p.gpus().is_some();
        self.peak_gpus = self.peak_gpus.max(p.gpus());
        if p.gpus().unwrap_or(0) > 0
            && let Some(u) = p.gpu_util()
        {
            self.util_sum += u;
            self.util_n += 1;
        }
        self.peak_gpu_mem = self.peak_gpu_mem.max(p.gpu_mem());
    }

    /// Consecutive samples `a` then `b`: their gap, and the OOM counter's rise (a
    /// drop is a reset: the new value counts as new kills).
    fn pair(&mut self, a: &Point, b: &Point) {
        let t = self.gaps.entry(b.ts - a.ts).or_default();
        t.pairs += 1;
        t.above += u64::from(a.pct >= 90.0);
        t.gpus += u64::from(a.gpus().unwrap_or(0));
        let rise = if b.oom >= a.oom { b.oom - a.oom } else { b.oom };
        self.kills = self.kills.saturating_add(rise);
    }

    /// Take in the same user's reduction over what came after in the file.
    fn then(&mut self, later: Reduction) {
        if self.disordered || later.disordered {
            self.disordered = true;
            return;
        }
        let (Some(last), Some(first)) = (self.last, later.first) else {
            if self.n == 0 {
                *self = later;
            }
            return;
        };
        if first.ts < last.ts {
            self.disordered = true;
            return;
        }
        self.pair(&last, &first);
        for (gap, t) in later.gaps {
            let mine = self.gaps.entry(gap).or_default();
            mine.pairs += t.pairs;
            mine.above += t.above;
            mine.gpus += t.gpus;
        }
        self.last = later.last;
        self.n += later.n;
        self.sum_pct += later.sum_pct;
        self.peak_pct = self.peak_pct.max(later.peak_pct);
        self.peak_psi_some = peak_f64(self.peak_psi_some, later.peak_psi_some);
        self.peak_psi_full = peak_f64(self.peak_psi_full, later.peak_psi_full);
        self.kills = self.kills.saturating_add(later.kills);
        self.any_gpu |= later.any_gpu;
        self.peak_gpus = self.peak_gpus.max(later.peak_gpus);
        self.util_sum += later.util_sum;
        self.util_n += later.util_n;
        self.peak_gpu_mem = self.peak_gpu_mem.max(later.peak_gpu_mem);
    }

    /// The summary. Time above 90 %: each sample at or above 90 % counts until the
    /// next sample of that user, at most twice the user's median sampling interval
    /// (a gap in collection is not counted as time at the limit); the last sample
    /// counts one median interval. GPU-hours the same way.
    fn finish(self, user: String, group: String) -> Summary {
        let pairs: u64 = self.gaps.values().map(|t| t.pairs).sum();
        let mut median = 60;
        let mut k = pairs / 2;
        for (gap, t) in &self.gaps {
            if k < t.pairs {
                median = *gap;
                break;
            }
            k -= t.pairs;
        }
        let median = median.max(1);
        let cap = 2 * median;
        let mut above: i128 = 0;
        let mut gpu_secs: i128 = 0;
        for (gap, t) in &self.gaps {
            let counted = i128::from((*gap).min(cap));
            above += counted * i128::from(t.above);
            gpu_secs += counted * i128::from(t.gpus);
        }
        if let Some(last) = self.last {
            above += i128::from(median) * i128::from(last.pct >= 90.0);
            gpu_secs += i128::from(median) * i128::from(last.gpus().unwrap_or(0));
        }
        Summary {
            user,
            group,
            samples: self.n,
            peak_pct: self.peak_pct,
            mean_pct: self.sum_pct / self.n.max(1) as f64,
            secs_above_90: i64::try_from(above).unwrap_or(i64::MAX),
            peak_psi_some: self.peak_psi_some,
            peak_psi_full: self.peak_psi_full,
            oom_kills: self.kills,
            gpu_hours: self.any_gpu.then_some(gpu_secs as f64 / 3600.0),
            peak_gpus: self.peak_gpus,
            mean_gpu_util: (self.util_n > 0).then(|| self.util_sum / self.util_n as f64),
            peak_gpu_memory: self.peak_gpu_mem,
        }
    }
}

/// Per-user summaries of samples in any order.
pub fn summarize(samples: &[Sample]) -> Vec<Summary> {
    let mut by: Users<(LatestGroup, Vec<Point>)> = Default::default();
    for s in samples {
        let p = Point::of(s);
        let e = by.entry(s.user.clone()).or_default();
        e.0.see(&s.group, p.ts);
        e.1.push(p);
    }
    summaries(reduce_sorted(by))
}

/// Each user's points, sorted by time (stably: samples of one second keep their
/// order), reduced.
fn reduce_sorted(by: Users<(LatestGroup, Vec<Point>)>) -> Users<(LatestGroup, Reduction)> {
    by.into_iter()
        .map(|(user, (group, mut points))| {
            points.sort_by_key(|p| p.ts);
            let mut r = Reduction::default();
            for p in points {
                r.push(p);
            }
            (user, (group, r))
        })
        .collect()
}

fn summaries(by: Users<(LatestGroup, Reduction)>) -> Vec<Summary> {
    let mut out: Vec<Summary> = by
        .into_iter()
        .map(|(user, (group, r))| r.finish(user, group.group))
        .collect();
    out.sort_by(|a, b| b.peak_pct.total_cmp(&a.peak_pct).then(a.user.cmp(&b.user)));
    out
}

/// A line's user, group and point when it is a stats line `f` keeps; counts it
/// in `malformed` when it is not a stats line.
fn point_of<'a>(line: &'a str, f: &Filter, malformed: &mut usize) -> Option<(Raw<'a>, Point)> {
    if !f.worth_parsing(line, malformed) {
        return None;
    }
    let Some(r) = parse_raw(line) else {
        *malformed += 1;
        return None;
    };
    let Some(ts) = crate::timespec::fast_utc(r.timestamp).or_else(|| parse_log_time(r.timestamp))
    else {
        *malformed += 1;
        return None;
    };
    if !f.matches_fields(r.user, r.group, ts) {
        return None;
    }
    let point = Point::from_raw(ts.as_second(), &r);
    Some((r, point))
}

/// What a user's points are gathered into, in file order: a running
/// [`Reduction`], or the points themselves.
trait Gather: Default + Send {
    fn push(&mut self, p: Point);
    /// Take in the same user's gathering over what came after in the file.
    fn then(&mut self, later: Self);
}

impl Gather for Reduction {
    fn push(&mut self, p: Point) {
        Reduction::push(self, p);
    }
    fn then(&mut self, later: Self) {
        Reduction::then(self, later);
    }
}

impl Gather for Vec<Point> {
    fn push(&mut self, p: Point) {
        Vec::push(self, p);
    }
    fn then(&mut self, later: Self) {
        self.extend(later);
    }
}

/// Gather each matching line of the log and its rotations (oldest first; each
/// file on every core) under its user, with the group of their latest sample.
/// Returns them and the malformed count.
fn gather<T: Gather>(path: &Path, f: &Filter) -> io::Result<(Users<(LatestGroup, T)>, usize)> {
    struct Part<T> {
        by: Users<(LatestGroup, T)>,
        malformed: usize,
    }
    let init = || Part {
        by: Users::default(),
        malformed: 0,
    };
    let step = |p: &mut Part<T>, line: &str| {
        let Some((r, point)) = point_of(line, f, &mut p.malformed) else {
            return;
        };
        let (group, points) = match p.by.get_mut(r.user) {
            Some(s) => s,
            None => p.by.entry(r.user.to_string()).or_default(),
        };
        group.see(r.group, point.ts);
        points.push(point);
    };
    let mut by: Users<(LatestGroup, T)> = Users::default();
    let mut malformed = 0;
    for file in files_for(path, f.since, first_stats_ts) {
        for part in par_fold(&file, &init, &step)? {
            malformed += part.malformed;
            for (user, (group, points)) in part.by {
                let mine = by.entry(user).or_default();
                mine.0.then(group);
                mine.1.then(points);
            }
        }
    }
    Ok((by, malformed))
}

/// [`load`] + [`summarize`] in one streaming pass: each line is reduced under its
/// user as it comes (no samples kept, nothing sorted), on as many threads as
/// `par_fold` uses. A user whose lines are out of time order (a clock stepped
/// back) is read again with their points kept and sorted. Returns the summaries
/// and the malformed count.
pub fn load_summary(path: &Path, f: &Filter) -> io::Result<(Vec<Summary>, usize)> {
    let (mut by, malformed) = gather::<Reduction>(path, f)?;
    let disordered: Vec<String> = by
        .iter()
        .filter(|(_, (_, r))| r.disordered)
        .map(|(user, _)| user.clone())
        .collect();
    if !disordered.is_empty() {
        let again = Filter {
            users: disordered,
            ..f.clone()
        };
        let (points, _) = gather::<Vec<Point>>(path, &again)?;
        by.extend(reduce_sorted(points));
    }
    Ok((summaries(by), malformed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEYS: [&str; 10] = [
        "timestamp",
        "user",
        "group",
        "memory_current_bytes",
        "memory_max_bytes",
        "memory_pct",
        "psi_memory_some_avg10",
        "gpus_allocated",
        "oom_kill_count",
        "psi_cpu_full_avg10",
    ];
    const VALUES: [&str; 17] = [
        "\"a\\\\b\"",
        "0",
        "42",
        "-1",
        "94.47",
        "1e3",
        "-0",
        "null",
        "true",
        "\"x\"",
        "\"2026-11-24T08:23:56Z\"",
        "{}",
        "[1]",
        "18446744073709551616",
        "4294967296",
        "\"a\\\"b\"",
        "01",
    ];

    /// A value serde takes for `key` (picked by `i`).
    fn fitting(key: &str, i: usize) -> &'static str {
        let pool: &[&str] = match key {
            "timestamp" | "user" | "group" => {
                &["\"x\"", "\"2026-11-24T08:23:56Z\"", "\"ü\"", "\"a\\\\b\""]
            }
            "memory_current_bytes" | "oom_kill_count" => &["0", "42", "18446744073709551615"],
            "memory_max_bytes" => &["null", "42", "51539607552"],
            "memory_pct" => &["94.47", "1e3", "-1", "0", "7"],
            "psi_memory_some_avg10" => &["null", "2.85", "0.0", "12"],
            "gpus_allocated" => &["null", "2", "4294967295"],
            _ => &["null", "true", "1.5", "\"y\""],
        };
        pool[i % pool.len()]
    }

    fn same(a: &Raw, b: &Raw) -> bool {
        let f = |x: f64, y: f64| x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs());
        let of = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) => f(x, y),
            (x, y) => x == y,
        };
        a.timestamp == b.timestamp
            && a.user == b.user
            && a.group == b.group
            && a.memory_current_bytes == b.memory_current_bytes
            && a.memory_max_bytes == b.memory_max_bytes
            && f(a.memory_pct, b.memory_pct)
            && a.pids_current == b.pids_current
            && a.pids_max == b.pids_max
            && of(a.psi_memory_some_avg10, b.psi_memory_some_avg10)
            && a.oom_kill_count == b.oom_kill_count
            && a.gpus_allocated == b.gpus_allocated
    }

    proptest! {
        /// The fast path never reads a line differently from serde: where it
        /// answers, serde gives the same fields; where serde refuses a line, the
        /// fast path does not answer.
        #[test]
        fn the_fast_path_agrees_with_serde(
            pairs in proptest::collection::vec(
                (0..KEYS.len(), 0..VALUES.len(), 0..4usize, any::<bool>()),
                0..8,
            ),
            anchor in any::<bool>(),
        ) {
            let mut fields: Vec<String> = pairs
                .iter()
                .map(|(k, v, good, spaced)| {
                    let sep = if *spaced { "\": " } else { "\":" };
                    // Mostly a value of the field's type, sometimes anything.
                    let value = if *good > 0 { fitting(KEYS[*k], *v) } else { VALUES[*v] };
                    format!("\"{}{sep}{value}", KEYS[*k])
                })
                .collect();
            if anchor {
                // Mostly-valid lines too, not only noise.
                fields.insert(0, "\"timestamp\":\"2026-11-24T08:23:56Z\",\"user\":\"u\"".into());
            }
            let line = format!("{{{}}}", fields.join(","));
            let serde: Result<Raw, _> = serde_json::from_str(&line);
            match (fast_raw(&line), serde) {
                (Some(f), Ok(s)) => prop_assert!(same(&f, &s), "{line}: {f:?} vs {s:?}"),
                (Some(f), Err(e)) => prop_assert!(false, "{line}: fast {f:?}, serde {e}"),
                (None, _) => {}
            }
        }
    }

    /// The summary arithmetic written the plain way (sort every point, walk them):
    /// the oracle for the streaming [`Reduction`].
    fn oracle(user: &str, mut v: Vec<Point>) -> Summary {
        v.sort_by_key(|p| p.ts);
        let mut gaps: Vec<i64> = v.windows(2).map(|w| w[1].ts - w[0].ts).collect();
        gaps.sort_unstable();
        let median = gaps.get(gaps.len() / 2).copied().unwrap_or(60).max(1);
        let cap = 2 * median;
        let (mut above, mut gpu_secs) = (0, 0.0);
        for (i, p) in v.iter().enumerate() {
            let next = v.get(i + 1).map_or(median, |n| n.ts - p.ts).min(cap);
            if p.pct >= 90.0 {
                above += next;
            }
            gpu_secs += f64::from(p.gpus().unwrap_or(0)) * next as f64;
        }
        let held: Vec<f64> = v
            .iter()
            .filter(|p| p.gpus().unwrap_or(0) > 0)
            .filter_map(|p| p.gpu_util())
            .collect();
        let kills = v
            .windows(2)
            .map(|w| {
                if w[1].oom >= w[0].oom {
                    w[1].oom - w[0].oom
                } else {
                    w[1].oom
                }
            })
            .sum();
        let peak = |f: fn(&Point) -> Option<f64>| v.iter().filter_map(f).reduce(f64::max);
        Summary {
            user: user.into(),
            group: String::new(),
            samples: v.len(),
            peak_pct: v.iter().map(|p| p.pct).fold(0.0, f64::max),
            mean_pct: v.iter().map(|p| p.pct).sum::<f64>() / v.len().max(1) as f64,
            secs_above_90: above,
            peak_psi_some: peak(Point::psi_some),
            peak_psi_full: peak(Point::psi_full),
            oom_kills: kills,
            gpu_hours: v
                .iter()
                .any(|p| p.gpus().is_some())
                .then_some(gpu_secs / 3600.0),
            peak_gpus: v.iter().filter_map(|p| p.gpus()).max(),
            mean_gpu_util: (!held.is_empty()).then(|| held.iter().sum::<f64>() / held.len() as f64),
            peak_gpu_memory: v.iter().filter_map(|p| p.gpu_mem()).max(),
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    prop_compose! {
        fn point()(
            ts in 0i64..40, pct in 80.0f64..100.0, psi in proptest::option::of(0.0f64..50.0),
            oom in 0u64..4, gpus in proptest::option::of(0u32..3),
            util in proptest::option::of(0.0f64..100.0), mem in proptest::option::of(0u64..9),
        ) -> Point {
            let mut p = Point::from_raw(ts * 30, &Raw {
                timestamp: "", user: "", group: "", memory_current_bytes: 0,
                memory_max_bytes: None, memory_pct: pct, pids_current: 0, pids_max: None,
                psi_memory_some_avg10: psi, psi_memory_full_avg10: psi.map(|v| v / 2.0),
                psi_cpu_some_avg10: None, oom_kill_count: oom, gpus_allocated: gpus,
                gpu_memory_bytes: mem, gpu_util_pct: util,
            });
            p.pct = (p.pct * 100.0).round() / 100.0;
            p
        }
    }

    proptest! {
        /// The streaming reduction, over the points cut in any number of pieces
        /// (as `par_fold` cuts a file) and joined in order, gives the oracle's
        /// summary; points out of time order are always noticed.
        #[test]
        fn the_streaming_reduction_equals_sorting_everything(
            mut points in proptest::collection::vec(point(), 0..60),
            cuts in proptest::collection::vec(0usize..60, 0..4),
            order in 0..3,
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(points.len())).collect();
            cuts.extend([0, points.len()]);
            cuts.sort_unstable();
            match order {
                // In time order, as the collector writes.
                0 => points.sort_by_key(|p| p.ts),
                // Each piece in order, the pieces not (a clock stepped back between).
                1 => cuts.windows(2).for_each(|w| points[w[0]..w[1]].sort_by_key(|p| p.ts)),
                _ => {}
            }
            let mut whole = Reduction::default();
            for w in cuts.windows(2) {
                let mut piece = Reduction::default();
                for p in &points[w[0]..w[1]] {
                    piece.push(*p);
                }
                whole.then(piece);
            }
            let sorted = points.windows(2).all(|w| w[0].ts <= w[1].ts);
            prop_assert_eq!(whole.disordered, !sorted);
            if !sorted {
                return Ok(());
            }
            let got = whole.finish("u".into(), String::new());
            let want = oracle("u", points);
            prop_assert!(close(got.mean_pct, want.mean_pct), "{got:?} vs {want:?}");
            let same_mean = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) => close(a, b),
                (a, b) => a == b,
            };
            prop_assert!(same_mean(got.mean_gpu_util, want.mean_gpu_util));
            prop_assert_eq!(
                Summary { mean_pct: 0.0, mean_gpu_util: None, ..got },
                Summary { mean_pct: 0.0, mean_gpu_util: None, ..want }
            );
        }

        /// `summarize` (any order: sorted, then reduced) gives the oracle's summary.
        #[test]
        fn summarize_sorts_what_comes_out_of_order(
            points in proptest::collection::vec(point(), 1..60),
        ) {
            let samples: Vec<Sample> = points
                .iter()
                .map(|p| Sample {
                    ts: Timestamp::from_second(p.ts).expect("in range"),
                    user: "u".into(),
                    memory_pct: p.pct,
                    psi_memory_some: p.psi_some(),
                    psi_memory_full: p.psi_full(),
                    oom_kill_count: p.oom,
                    gpus_allocated: p.gpus(),
                    gpu_memory: p.gpu_mem(),
                    gpu_util_pct: p.gpu_util(),
                    ..Default::default()
                })
                .collect();
            let got = summarize(&samples).remove(0);
            let want = oracle("u", points);
            prop_assert!(close(got.mean_pct, want.mean_pct));
            prop_assert_eq!(
                Summary { mean_pct: 0.0, mean_gpu_util: None, ..got },
                Summary { mean_pct: 0.0, mean_gpu_util: None, ..want }
            );
        }
    }

    #[test]
    fn the_collectors_lines_take_the_fast_path() {
        let line = r#"{"timestamp":"2026-11-24T08:23:56Z","user":"user000","group":"student","memory_current_bytes":48687021843,"memory_max_bytes":51539607552,"memory_pct":94.47,"pids_current":251,"pids_max":12288,"psi_memory_some_avg10":48.53,"psi_memory_full_avg10":24.27,"psi_cpu_some_avg10":2.85,"psi_cpu_full_avg10":0.0,"oom_count":0,"oom_kill_count":3,"gpus_allocated":2,"gpu_memory_bytes":1024,"gpu_util_pct":null}"#;
        let f = fast_raw(line).expect("fast path");
        let s: Raw = serde_json::from_str(line).expect("serde");
        assert_eq!(f, s);
        assert_eq!(f.oom_kill_count, 3);
        // The old scripts' spacing too.
        let spaced = line.replace("\":", "\": ").replace(",\"", ", \"");
        assert_eq!(fast_raw(&spaced), Some(s));
    }
}
