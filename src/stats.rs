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

#[derive(Deserialize)]
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

/// Parse one stats line; `None` when it is not one (malformed, truncated).
pub fn parse_sample(line: &str) -> Option<Sample> {
    let r: Raw = serde_json::from_str(line).ok()?;
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

/// One sample as the summary needs it: no strings.
#[derive(Debug, Clone, Copy)]
struct Point {
    ts: i64,
    pct: f64,
    psi_some: Option<f64>,
    psi_full: Option<f64>,
    oom: u64,
    gpus: Option<u32>,
    gpu_util: Option<f64>,
    gpu_mem: Option<u64>,
}

impl Point {
    fn of(s: &Sample) -> Point {
        Point {
            ts: s.ts.as_second(),
            pct: s.memory_pct,
            psi_some: s.psi_memory_some,
            psi_full: s.psi_memory_full,
            oom: s.oom_kill_count,
            gpus: s.gpus_allocated,
            gpu_util: s.gpu_util_pct,
            gpu_mem: s.gpu_memory,
        }
    }
}

/// A user's points and the group of their latest sample.
#[derive(Debug, Default)]
struct UserPoints {
    group: String,
    group_ts: i64,
    points: Vec<Point>,
}

impl UserPoints {
    fn add(&mut self, group: &str, p: Point) {
        if p.ts >= self.group_ts || self.points.is_empty() {
            if self.group != group {
                self.group = group.to_string();
            }
            self.group_ts = p.ts;
        }
        self.points.push(p);
    }
}

/// Per-user summaries. Time above 90 %: each sample at or above 90 % counts until
/// the next sample of that user, at most twice the user's median sampling interval
/// (a gap in collection is not counted as time at the limit).
pub fn summarize(samples: &[Sample]) -> Vec<Summary> {
    let mut by: std::collections::HashMap<String, UserPoints> = Default::default();
    for s in samples {
        by.entry(s.user.clone())
            .or_default()
            .add(&s.group, Point::of(s));
    }
    summarize_points(by)
}

/// [`load`] + [`summarize`] in one streaming pass: each line is reduced to a few
/// numbers under its user (no strings per line, no samples kept), on as many
/// threads as `par_fold` uses. Returns the summaries and the malformed count.
pub fn load_summary(path: &Path, f: &Filter) -> io::Result<(Vec<Summary>, usize)> {
    #[derive(Default)]
    struct Part {
        by: std::collections::HashMap<String, UserPoints>,
        malformed: usize,
    }
    let step = |p: &mut Part, line: &str| {
        if !f.worth_parsing(line, &mut p.malformed) {
            return;
        }
        let Ok(r) = serde_json::from_str::<Raw>(line) else {
            p.malformed += 1;
            return;
        };
        let Some(ts) =
            crate::timespec::fast_utc(r.timestamp).or_else(|| parse_log_time(r.timestamp))
        else {
            p.malformed += 1;
            return;
        };
        if !f.matches_fields(r.user, r.group, ts) {
            return;
        }
        let point = Point {
            ts: ts.as_second(),
            pct: r.memory_pct,
            psi_some: r.psi_memory_some_avg10,
            psi_full: r.psi_memory_full_avg10,
            oom: r.oom_kill_count,
            gpus: r.gpus_allocated,
            gpu_util: r.gpu_util_pct,
            gpu_mem: r.gpu_memory_bytes,
        };
        match p.by.get_mut(r.user) {
            Some(u) => u.add(r.group, point),
            None => {
                let mut u = UserPoints::default();
                u.add(r.group, point);
                p.by.insert(r.user.to_string(), u);
            }
        }
    };
    let mut by: std::collections::HashMap<String, UserPoints> = Default::default();
    let mut malformed = 0;
    for file in files_for(path, f.since, first_stats_ts) {
        for part in par_fold(&file, &Part::default, &step)? {
            malformed += part.malformed;
            for (user, mut up) in part.by {
                let e = by.entry(user).or_default();
                let latest = up.group_ts;
                if e.points.is_empty() || latest >= e.group_ts {
                    e.group = std::mem::take(&mut up.group);
                    e.group_ts = latest;
                }
                e.points.append(&mut up.points);
            }
        }
    }
    Ok((summarize_points(by), malformed))
}

fn summarize_points(by: std::collections::HashMap<String, UserPoints>) -> Vec<Summary> {
    let mut out = Vec::new();
    for (user, up) in by {
        let mut v = up.points;
        v.sort_by_key(|p| p.ts);
        let mut gaps: Vec<i64> = v.windows(2).map(|w| w[1].ts - w[0].ts).collect();
        gaps.sort_unstable();
        let median = gaps.get(gaps.len() / 2).copied().unwrap_or(60).max(1);
        let cap = 2 * median;
        let mut above = 0;
        let mut gpu_secs = 0.0;
        for (i, p) in v.iter().enumerate() {
            let next = v.get(i + 1).map_or(median, |n| n.ts - p.ts).min(cap);
            if p.pct >= 90.0 {
                above += next;
            }
            gpu_secs += f64::from(p.gpus.unwrap_or(0)) * next as f64;
        }
        let any_gpu = v.iter().any(|p| p.gpus.is_some());
        let held_utils: Vec<f64> = v
            .iter()
            .filter(|p| p.gpus.unwrap_or(0) > 0)
            .filter_map(|p| p.gpu_util)
            .collect();
        let mut kills = 0;
        for w in v.windows(2) {
            let (a, b) = (w[0].oom, w[1].oom);
            kills += if b >= a { b - a } else { b };
        }
        let peak = |f: fn(&Point) -> Option<f64>| {
            v.iter()
                .filter_map(f)
                .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
        };
        out.push(Summary {
            user,
            group: up.group,
            samples: v.len(),
            peak_pct: v.iter().map(|p| p.pct).fold(0.0, f64::max),
            mean_pct: v.iter().map(|p| p.pct).sum::<f64>() / v.len().max(1) as f64,
            secs_above_90: above,
            peak_psi_some: peak(|p| p.psi_some),
            peak_psi_full: peak(|p| p.psi_full),
            oom_kills: kills,
            gpu_hours: any_gpu.then_some(gpu_secs / 3600.0),
            peak_gpus: v.iter().filter_map(|p| p.gpus).max(),
            mean_gpu_util: (!held_utils.is_empty())
                .then(|| held_utils.iter().sum::<f64>() / held_utils.len() as f64),
            peak_gpu_memory: v.iter().filter_map(|p| p.gpu_mem).max(),
        });
    }
    out.sort_by(|a, b| b.peak_pct.total_cmp(&a.peak_pct).then(a.user.cmp(&b.user)));
    out
}
