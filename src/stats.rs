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
        let Some(r) = parse_raw(line) else {
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
        let point = Point::from_raw(ts.as_second(), &r);
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
            gpu_secs += f64::from(p.gpus().unwrap_or(0)) * next as f64;
        }
        let any_gpu = v.iter().any(|p| p.gpus().is_some());
        let held_utils: Vec<f64> = v
            .iter()
            .filter(|p| p.gpus().unwrap_or(0) > 0)
            .filter_map(|p| p.gpu_util())
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
            peak_psi_some: peak(Point::psi_some),
            peak_psi_full: peak(Point::psi_full),
            oom_kills: kills,
            gpu_hours: any_gpu.then_some(gpu_secs / 3600.0),
            peak_gpus: v.iter().filter_map(|p| p.gpus()).max(),
            mean_gpu_util: (!held_utils.is_empty())
                .then(|| held_utils.iter().sum::<f64>() / held_utils.len() as f64),
            peak_gpu_memory: v.iter().filter_map(|p| p.gpu_mem()).max(),
        });
    }
    out.sort_by(|a, b| b.peak_pct.total_cmp(&a.peak_pct).then(a.user.cmp(&b.user)));
    out
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
