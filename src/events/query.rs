//! Queries over the event log and its rotated files: filters (AND), newest-N,
//! summaries, and following the live file across logrotate.
//!
//! The line-file helpers here (rotated files, reading whole files, malformed-line
//! counting) are shared with `ds01 stats`.

use super::read::{Record, parse_line};
use flate2::read::GzDecoder;
use jiff::Timestamp;
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub user: Option<String>,
    /// Prefix of the event type.
    pub type_prefix: Option<String>,
    /// Top-level `container` or `details.container`.
    pub container: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

/// Byte patterns that every matching raw line must contain, built once per query.
struct Prefilter {
    needles: Vec<memchr::memmem::Finder<'static>>,
    timed: bool,
}

impl Prefilter {
    fn new(f: &Filter) -> Prefilter {
        // A JSON string holds its value verbatim unless it needs escaping.
        let verbatim = |v: &Option<String>| {
            v.as_ref()
                .filter(|s| {
                    !s.is_empty()
                        && s.bytes().all(|b| {
                            (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' && b != b'/'
                        })
                })
                .map(|s| memchr::memmem::Finder::new(s.as_bytes()).into_owned())
        };
        Prefilter {
            needles: [
                verbatim(&f.user),
                verbatim(&f.container),
                verbatim(&f.type_prefix),
            ]
            .into_iter()
            .flatten()
            .collect(),
            timed: f.since.is_some() || f.until.is_some(),
        }
    }

    /// `true` when the line certainly does not match the filter, decided without
    /// parsing it: a needle is missing, or a v1 line's leading timestamp is out of
    /// range.
    fn rejects(&self, f: &Filter, line: &str) -> bool {
        if self
            .needles
            .iter()
            .any(|n| n.find(line.as_bytes()).is_none())
        {
            return true;
        }
        if self.timed
            && let Some(ts) = super::read::leading_timestamp(line)
        {
            return f.since.is_some_and(|s| ts < s) || f.until.is_some_and(|u| ts > u);
        }
        false
    }
}

impl Prefilter {
    /// The parsed line if it matches `f`; malformed lines are counted in `malformed`.
    fn admit<'l>(&self, f: &Filter, line: &'l str, malformed: &mut usize) -> Option<Record<'l>> {
        if line.trim().is_empty() {
            return None;
        }
        if self.rejects(f, line) {
            *malformed += usize::from(looks_incomplete(line));
            return None;
        }
        match parse_line(line) {
            Some(r) if f.matches(&r) => Some(r),
            Some(_) => None,
            None => {
                *malformed += 1;
                None
            }
        }
    }
}

/// Whether a line skipped by the prefilter would have been malformed: a complete
/// JSON object line starts with `{` and ends with `}`; torn and truncated writes do
/// not. (Lines that are parsed are judged by the parser itself.)
pub fn looks_incomplete(line: &str) -> bool {
    let t = line.trim();
    !(t.starts_with('{') && t.ends_with('}'))
}

impl Filter {
    pub fn matches(&self, r: &Record) -> bool {
        if let Some(u) = &self.user
            && r.user.as_deref() != Some(u.as_str())
        {
            return false;
        }
        if let Some(t) = &self.type_prefix
            && !r.event_type.starts_with(t.as_str())
        {
            return false;
        }
        if let Some(c) = &self.container
            && r.container.as_deref() != Some(c.as_str())
        {
            return false;
        }
        if self.since.is_some() || self.until.is_some() {
            let Some(ts) = r.ts else {
                return false;
            };
            if self.since.is_some_and(|s| ts < s) || self.until.is_some_and(|u| ts > u) {
                return false;
            }
        }
        true
    }
}

/// Call `f` with every line of a log file (newline stripped), streaming through a
/// 1 MiB buffer so that a 200 MB log is never held in memory; `.gz` files are
/// decompressed on the fly. Invalid UTF-8 is replaced, never fatal. A missing file
/// has no lines.
pub fn for_each_line(path: &Path, f: &mut dyn FnMut(&str)) -> io::Result<()> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if path.extension().is_some_and(|x| x == "gz") {
        lines_of(GzDecoder::new(io::BufReader::new(file)), f)
    } else {
        lines_of(file, f)
    }
}

/// The lines of any reader, as [`for_each_line`].
pub fn lines_of(mut reader: impl Read, f: &mut dyn FnMut(&str)) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            // A line longer than the buffer: grow it.
            buf.resize(buf.len() * 2, 0);
        }
        let n = reader.read(&mut buf[filled..])?;
        let eof = n == 0;
        filled += n;
        let mut start = 0;
        while let Some(i) = memchr::memchr(b'\n', &buf[start..filled]) {
            emit_line(&buf[start..start + i], f);
            start += i + 1;
        }
        if eof {
            if start < filled {
                emit_line(&buf[start..filled], f);
            }
            return Ok(());
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
    }
}

/// Fold the lines of a file on every core: a plain file is cut into one piece per
/// core at line boundaries, each piece folded into its own state (`init`, `step`);
/// the states come back in file order. A `.gz` file is one piece.
pub fn par_fold<S: Send>(
    path: &Path,
    init: &(dyn Fn() -> S + Sync),
    step: &(dyn Fn(&mut S, &str) + Sync),
) -> io::Result<Vec<S>> {
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let gz = path.extension().is_some_and(|x| x == "gz");
    if gz || cores < 2 || len < (8 << 20) {
        let mut st = init();
        for_each_line(path, &mut |l| step(&mut st, l))?;
        return Ok(vec![st]);
    }
    // Cut points: just after the first newline at or past each even split.
    let mut file = std::fs::File::open(path)?;
    let mut cuts = vec![0u64];
    for i in 1..cores {
        let at = len * i / cores;
        file.seek(SeekFrom::Start(at))?;
        let mut probe = [0u8; 64 * 1024];
        let mut off = at;
        let cut = loop {
            let n = file.read(&mut probe)?;
            if n == 0 {
                break len;
            }
            if let Some(p) = memchr::memchr(b'\n', &probe[..n]) {
                break off + p as u64 + 1;
            }
            off += n as u64;
        };
        if cut > *cuts.last().unwrap_or(&0) {
            cuts.push(cut);
        }
    }
    cuts.push(len);
    cuts.dedup();
    std::thread::scope(|scope| {
        let handles: Vec<_> = cuts
            .windows(2)
            .map(|w| {
                let (a, b) = (w[0], w[1]);
                scope.spawn(move || -> io::Result<S> {
                    let mut f = std::fs::File::open(path)?;
                    f.seek(SeekFrom::Start(a))?;
                    let mut st = init();
                    lines_of(f.take(b - a), &mut |l| step(&mut st, l))?;
                    Ok(st)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("a reader thread panicked")))
            })
            .collect()
    })
}

fn emit_line(bytes: &[u8], f: &mut dyn FnMut(&str)) {
    match std::str::from_utf8(bytes) {
        Ok(s) => f(s),
        Err(_) => f(&String::from_utf8_lossy(bytes)),
    }
}

/// The rotated files of `path`, newest first: `path.1`, `path.1.gz`, `path.2.gz`, …
pub fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let f = e.file_name().to_string_lossy().into_owned();
            let rest = f.strip_prefix(&name)?.strip_prefix('.')?;
            let num = rest.strip_suffix(".gz").unwrap_or(rest);
            num.parse::<u32>().ok().map(|n| (n, e.path()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// The files to search, oldest first: the rotated files that can hold events at or
/// after `since` (none without `since`), then the live file. `first_ts` reads the
/// first timestamp of a file.
pub fn files_for(
    path: &Path,
    since: Option<Timestamp>,
    first_ts: fn(&Path) -> Option<Timestamp>,
) -> Vec<PathBuf> {
    let mut files = vec![path.to_path_buf()];
    if let Some(since) = since {
        for rotated in rotated_files(path) {
            // Stop once the newest file taken already starts at or before `since`.
            if files
                .last()
                .and_then(|p| first_ts(p))
                .is_some_and(|t| t <= since)
            {
                break;
            }
            files.push(rotated);
        }
    }
    files.reverse();
    files
}

/// The first event timestamp in a file (reads only as far as it must).
pub fn first_event_ts(path: &Path) -> Option<Timestamp> {
    first_line_ts(path, |l| parse_line(l).and_then(|r| r.ts))
}

/// The first timestamp `ts_of` finds in the first 1,000 lines of a log file (plain
/// or `.gz`).
pub fn first_line_ts(path: &Path, ts_of: impl Fn(&str) -> Option<Timestamp>) -> Option<Timestamp> {
    let file = std::fs::File::open(path).ok()?;
    let mut reader: Box<dyn io::BufRead> = if path.extension().is_some_and(|x| x == "gz") {
        Box::new(io::BufReader::new(GzDecoder::new(file)))
    } else {
        Box::new(io::BufReader::new(file))
    };
    let mut line = String::new();
    for _ in 0..1000 {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if let Some(ts) = ts_of(line.trim_end()) {
            return Some(ts);
        }
    }
    None
}

/// What a query found.
#[derive(Debug, Default)]
pub struct Found {
    /// Matching lines, oldest first (at most `limit`, the newest ones).
    pub lines: Vec<String>,
    pub matched: usize,
    pub malformed: usize,
}

/// Run a query. `limit = None` keeps every match.
pub fn query(path: &Path, filter: &Filter, limit: Option<usize>) -> io::Result<Found> {
    #[derive(Default)]
    struct Part {
        keep: VecDeque<String>,
        matched: usize,
        malformed: usize,
    }
    let pre = Prefilter::new(filter);
    let step = |p: &mut Part, line: &str| {
        if let Some(r) = pre.admit(filter, line, &mut p.malformed) {
            p.matched += 1;
            if limit.is_some_and(|n| p.keep.len() == n) {
                p.keep.pop_front();
            }
            if limit != Some(0) {
                p.keep.push_back(r.line.to_string());
            }
        }
    };
    let mut found = Found::default();
    let mut keep: VecDeque<String> = VecDeque::new();
    for file in files_for(path, filter.since, first_event_ts) {
        for part in par_fold(&file, &Part::default, &step)? {
            found.matched += part.matched;
            found.malformed += part.malformed;
            keep.extend(part.keep);
            if let Some(n) = limit {
                while keep.len() > n {
                    keep.pop_front();
                }
            }
        }
    }
    found.lines = keep.into();
    Ok(found)
}

/// Counts by type, by user and by day (UTC).
#[derive(Debug, Default, PartialEq)]
pub struct Summary {
    pub total: usize,
    pub by_type: BTreeMap<String, usize>,
    pub by_user: BTreeMap<String, usize>,
    pub by_day: BTreeMap<String, usize>,
    pub malformed: usize,
}

pub fn summary(path: &Path, filter: &Filter) -> io::Result<Summary> {
    use std::collections::HashMap;
    type Counts = HashMap<String, usize, foldhash::fast::RandomState>;
    // Counted without per-line allocation; days as day numbers.
    #[derive(Default)]
    struct Part {
        total: usize,
        malformed: usize,
        by_type: Counts,
        by_user: Counts,
        by_day: HashMap<Option<i64>, usize, foldhash::fast::RandomState>,
    }
    fn bump(m: &mut Counts, k: &str, n: usize) {
        match m.get_mut(k) {
            Some(c) => *c += n,
            None => {
                m.insert(k.to_string(), n);
            }
        }
    }
    let pre = Prefilter::new(filter);
    let step = |p: &mut Part, line: &str| {
        let Some(r) = pre.admit(filter, line, &mut p.malformed) else {
            return;
        };
        p.total += 1;
        bump(&mut p.by_type, &r.event_type, 1);
        bump(&mut p.by_user, r.user.as_deref().unwrap_or("-"), 1);
        *p.by_day
            .entry(r.ts.map(|t| t.as_second().div_euclid(86_400)))
            .or_default() += 1;
    };
    let mut all = Part::default();
    for file in files_for(path, filter.since, first_event_ts) {
        for part in par_fold(&file, &Part::default, &step)? {
            all.total += part.total;
            all.malformed += part.malformed;
            for (k, n) in part.by_type {
                bump(&mut all.by_type, &k, n);
            }
            for (k, n) in part.by_user {
                bump(&mut all.by_user, &k, n);
            }
            for (k, n) in part.by_day {
                *all.by_day.entry(k).or_default() += n;
            }
        }
    }
    let mut s = Summary {
        total: all.total,
        malformed: all.malformed,
        by_type: all.by_type.into_iter().collect(),
        by_user: all.by_user.into_iter().collect(),
        ..Summary::default()
    };
    for (d, n) in all.by_day {
        let day = d
            .and_then(|d| Timestamp::from_second(d * 86_400).ok())
            .map(|t| t.strftime("%Y-%m-%d").to_string())
            .unwrap_or_else(|| "unknown".into());
        *s.by_day.entry(day).or_default() += n;
    }
    Ok(s)
}

/// Follow `path` from its current end, calling `emit` with each new complete line.
/// Survives logrotate's copytruncate (the file shrinks: read again from the start)
/// and rename (a new file appears at the path: finish the old one, then switch).
/// Returns when `stop()` is true.
pub fn follow(
    path: &Path,
    poll: Duration,
    stop: &dyn Fn() -> bool,
    emit: &mut dyn FnMut(&str),
) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let open = |p: &Path| -> io::Result<Option<(std::fs::File, u64)>> {
        match std::fs::File::open(p) {
            Ok(f) => {
                let ino = f.metadata()?.ino();
                Ok(Some((f, ino)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    };
    let mut cur = open(path)?;
    let mut pos = match &mut cur {
        Some((f, _)) => f.seek(SeekFrom::End(0))?,
        None => 0,
    };
    let mut partial = String::new();
    let mut drain =
        |f: &mut std::fs::File, pos: &mut u64, partial: &mut String| -> io::Result<()> {
            let len = f.metadata()?.len();
            // copytruncate: the file was emptied under us. If writers already
            // refilled it past our offset, the byte before the offset is no longer
            // the newline that ended the last line we read.
            let mut truncated = len < *pos;
            if !truncated && *pos > 0 && partial.is_empty() {
                let mut last = [0u8; 1];
                f.seek(SeekFrom::Start(*pos - 1))?;
                truncated = f.read(&mut last)? == 1 && last[0] != b'\n';
            }
            if truncated {
                *pos = 0;
                partial.clear();
            }
            f.seek(SeekFrom::Start(*pos))?;
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)?;
            *pos += buf.len() as u64;
            partial.push_str(&String::from_utf8_lossy(&buf));
            while let Some(i) = partial.find('\n') {
                let line: String = partial.drain(..=i).collect();
                emit(line.trim_end_matches('\n'));
            }
            Ok(())
        };
    loop {
        if let Some((f, _)) = &mut cur {
            drain(f, &mut pos, &mut partial)?;
        }
        // Rotated by rename (or created): switch to the new file at the path.
        let now_ino = std::fs::metadata(path).ok().map(|m| m.ino());
        let cur_ino = cur.as_ref().map(|(_, i)| *i);
        if now_ino.is_some() && now_ino != cur_ino {
            if let Some((f, _)) = &mut cur {
                drain(f, &mut pos, &mut partial)?;
            }
            cur = open(path)?;
            pos = 0;
            partial.clear();
            continue;
        }
        if stop() {
            return Ok(());
        }
        std::thread::sleep(poll);
    }
}
