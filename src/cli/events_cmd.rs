//! `ds01 events` (query) and `ds01 events log` (append, for shell scripts).

use super::{CliError, CliResult};
use crate::events::query::{self, Filter};
use crate::events::{Event, EventLog};
use clap::{Args, Subcommand};
use serde_json::Value;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EventsArgs {
    #[command(subcommand)]
    pub cmd: Option<EventsCmd>,
    #[command(flatten)]
    pub query: QueryArgs,
}

#[derive(Debug, Subcommand)]
pub enum EventsCmd {
    /// Append one event: `ds01 events log TYPE [user=U] [source=S] [key=value ...]`.
    /// Values that parse as JSON are stored as JSON. Exits 0 even if logging failed.
    Log {
        /// Event type, lowercase words joined by dots (e.g. maintenance.reboot).
        event_type: String,
        /// `user=…`, `source=…`, and detail `key=value` pairs.
        fields: Vec<String>,
        /// Event log [default: $DS01_EVENTS_LOG, else /var/log/ds01/events.jsonl]
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Event log [default: $DS01_EVENTS_LOG, else /var/log/ds01/events.jsonl]
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Only this user's events.
    #[arg(long)]
    pub user: Option<String>,
    /// Only events whose type starts with this (e.g. `resource`, `quota.memory`).
    #[arg(long = "type", value_name = "PREFIX")]
    pub event_type: Option<String>,
    /// Only events of this container (top-level or in details).
    #[arg(long)]
    pub container: Option<String>,
    /// From this time: RFC 3339, a date, now, today, yesterday, '2 hours ago', 1h, 30m, 7d.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Up to this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Show the newest N matches (oldest first).
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub limit: usize,
    /// Show every match (no limit).
    #[arg(long)]
    pub all: bool,
    /// Print the original lines, byte for byte.
    #[arg(long)]
    pub json: bool,
    /// Keep printing new matching events as they are appended (across logrotate).
    #[arg(long)]
    pub follow: bool,
    /// Stop following after this many seconds (for tests and scripts).
    #[arg(long, hide = true, value_name = "SECS")]
    pub follow_for: Option<f64>,
    /// Counts by type, by user and by day instead of events.
    #[arg(long, conflicts_with_all = ["json", "follow"])]
    pub summary: bool,
}

pub fn run(args: EventsArgs) -> CliResult {
    match args.cmd {
        Some(EventsCmd::Log {
            event_type,
            fields,
            file,
        }) => log(&event_type, &fields, file),
        None => query_cmd(args.query),
    }
}

fn log(event_type: &str, fields: &[String], file: Option<PathBuf>) -> CliResult {
    let mut ev = Event::new(event_type).source("cli");
    for f in fields {
        let Some((k, v)) = f.split_once('=') else {
            return Err(CliError::Usage(format!(
                "{f:?} is not key=value (e.g. user=alice container=alice-proj gpus=2)"
            )));
        };
        match k {
            "user" => ev.user = Some(v.to_string()),
            "source" => ev.source = Some(v.to_string()),
            _ => {
                let val =
                    serde_json::from_str::<Value>(v).unwrap_or_else(|_| Value::String(v.into()));
                ev.details.insert(k.to_string(), val);
            }
        }
    }
    if let Err(e) = crate::events::validate_type(event_type) {
        return Err(CliError::Usage(e.to_string()));
    }
    if let Err(e) = EventLog::from_env_or(file.as_deref()).append(&ev) {
        eprintln!("warning: event not logged: {e}");
    }
    Ok(())
}

fn filter(q: &QueryArgs) -> Result<Filter, CliError> {
    let (since, until) = super::time_range(q.since.as_deref(), q.until.as_deref())?;
    Ok(Filter {
        user: q.user.clone(),
        type_prefix: q.event_type.clone(),
        container: q.container.clone(),
        since,
        until,
    })
}

pub fn warn_malformed(n: usize) {
    if n > 0 {
        eprintln!(
            "warning: {n} malformed line{} skipped",
            if n == 1 { "" } else { "s" }
        );
    }
}

fn query_cmd(q: QueryArgs) -> CliResult {
    let f = filter(&q)?;
    let log = EventLog::from_env_or(q.file.as_deref());
    let io_err =
        |e: std::io::Error| CliError::Runtime(format!("cannot read {}: {e}", log.path.display()));
    if q.summary {
        let s = query::summary(&log.path, &f).map_err(io_err)?;
        print_summary(&s)?;
        warn_malformed(s.malformed);
        return Ok(());
    }
    let found = query::query(&log.path, &f, (!q.all).then_some(q.limit)).map_err(io_err)?;
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut printer = Printer {
        json: q.json,
        color,
        header: false,
    };
    for line in &found.lines {
        printer.print(line);
    }
    if found.lines.is_empty() && !q.json && !q.follow {
        outln!("no events");
    }
    warn_malformed(found.malformed);
    if q.follow {
        let deadline = q
            .follow_for
            .map(|s| std::time::Instant::now() + Duration::from_secs_f64(s.max(0.0)));
        let stop = || deadline.is_some_and(|d| std::time::Instant::now() >= d);
        let mut emit = |line: &str| {
            if let Some(r) = crate::events::read::parse_line(line)
                && f.matches(&r)
            {
                printer.print(line);
            }
        };
        query::follow(&log.path, Duration::from_millis(200), &stop, &mut emit).map_err(io_err)?;
    }
    Ok(())
}

struct Printer {
    json: bool,
    color: bool,
    header: bool,
}

impl Printer {
    fn print(&mut self, line: &str) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        if self.json {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
            return;
        }
        let Some(r) = crate::events::read::parse_line(line) else {
            return;
        };
        if !self.header {
            let _ = writeln!(
                out,
                "{:<19}  {:<26} {:<12} {:<20} DETAILS",
                "TIME (UTC)", "TYPE", "USER", "CONTAINER"
            );
            self.header = true;
        }
        let time =
            r.ts.map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_else(|| "-".into());
        let details = details_text(line);
        let ty = format!("{:<26}", r.event_type);
        let ty = if self.color {
            colorize(&r.event_type, &ty)
        } else {
            ty
        };
        let _ = writeln!(
            out,
            "{time:<19}  {ty} {:<12} {:<20} {details}",
            r.user.as_deref().unwrap_or("-"),
            r.container.as_deref().unwrap_or("-"),
        );
        let _ = out.flush();
    }
}

/// `key=value` pairs of `details` (v1) or of the extra legacy fields.
fn details_text(line: &str) -> String {
    let Ok(Value::Object(v)) = serde_json::from_str::<Value>(line) else {
        return String::new();
    };
    let skip = [
        "timestamp",
        "ts",
        "event_type",
        "event",
        "schema_version",
        "user",
        "container",
        "source",
    ];
    let pairs: Vec<(String, Value)> = match v.get("details") {
        Some(Value::Object(d)) => d
            .iter()
            .filter(|(k, _)| *k != "container")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        _ => v
            .iter()
            .filter(|(k, _)| !skip.contains(&k.as_str()) && *k != "details")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    pairs
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn colorize(event_type: &str, text: &str) -> String {
    let code = match event_type.split('.').next().unwrap_or("") {
        "resource" => "31",
        "quota" => "33",
        "container" => "32",
        "docker" => "36",
        "gpu" => "35",
        "health" | "maintenance" => "34",
        _ => return text.to_string(),
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

fn print_summary(s: &query::Summary) -> CliResult {
    outln!("{} events", s.total);
    for (title, map) in [
        ("By type", &s.by_type),
        ("By user", &s.by_user),
        ("By day (UTC)", &s.by_day),
    ] {
        outln!("\n{title}");
        let mut rows: Vec<(&String, &usize)> = map.iter().collect();
        if title != "By day (UTC)" {
            rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        }
        for (k, n) in rows {
            outln!("  {k:<32} {n:>8}");
        }
    }
    Ok(())
}
