//! The append-only event log (`/var/log/ds01/events.jsonl`): the v1 envelope, one
//! writer for every component, and the reader/query used by `ds01 events`.

pub mod query;
pub mod read;

use crate::timespec::format_event_time;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

pub const DEFAULT_LOG: &str = "/var/log/ds01/events.jsonl";
/// Every line, newline included, stays under this size, so that concurrent
/// O_APPEND writes of whole lines never interleave.
pub const MAX_LINE: usize = 4096;
pub const SCHEMA_VERSION: &str = "1";

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error(
        "invalid event type {0:?}: expected lowercase words joined by dots, e.g. resource.oom_kill"
    )]
    BadType(String),
    #[error("cannot write to the event log {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `word.word[.word…]`: lowercase letters, digits and `_`.
pub fn validate_type(t: &str) -> Result<(), EventError> {
    let parts: Vec<&str> = t.split('.').collect();
    let ok = parts.len() >= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(EventError::BadType(t.to_string()))
    }
}

/// One event to log.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event_type: String,
    pub user: Option<String>,
    pub source: Option<String>,
    pub details: Map<String, Value>,
}

impl Event {
    pub fn new(event_type: &str) -> Event {
        Event {
            event_type: event_type.to_string(),
            user: None,
            source: None,
            details: Map::new(),
        }
    }

    pub fn user(mut self, u: &str) -> Self {
        self.user = Some(u.to_string());
        self
    }

    pub fn source(mut self, s: &str) -> Self {
        self.source = Some(s.to_string());
        self
    }

    pub fn detail(mut self, k: &str, v: impl Into<Value>) -> Self {
        self.details.insert(k.to_string(), v.into());
        self
    }

    /// The v1 line (with its newline) at time `ts`. Details that would make the
    /// line reach 4 KiB are replaced by `{"truncated": true, "original_size": N}`.
    pub fn to_line(&self, ts: jiff::Timestamp) -> Result<String, EventError> {
        validate_type(&self.event_type)?;
        let mut obj = Map::new();
        obj.insert("timestamp".into(), Value::String(format_event_time(ts)));
        obj.insert("event_type".into(), Value::String(self.event_type.clone()));
        obj.insert(
            "schema_version".into(),
            Value::String(SCHEMA_VERSION.into()),
        );
        if let Some(u) = &self.user {
            obj.insert("user".into(), Value::String(u.clone()));
        }
        if let Some(s) = &self.source {
            obj.insert("source".into(), Value::String(s.clone()));
        }
        if !self.details.is_empty() {
            obj.insert("details".into(), Value::Object(self.details.clone()));
        }
        let mut line = Value::Object(obj.clone()).to_string();
        if line.len() + 1 >= MAX_LINE {
            let original = Value::Object(self.details.clone()).to_string().len();
            obj.insert(
                "details".into(),
                json!({"truncated": true, "original_size": original}),
            );
            // Oversized user/source values are cut too, so the line always fits.
            for k in ["user", "source"] {
                if let Some(Value::String(s)) = obj.get_mut(k)
                    && s.len() > 256
                {
                    let mut cut = 256;
                    while !s.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    s.truncate(cut);
                }
            }
            line = Value::Object(obj).to_string();
        }
        line.push('\n');
        Ok(line)
    }
}

/// Where events go.
#[derive(Debug, Clone)]
pub struct EventLog {
    pub path: PathBuf,
}

impl EventLog {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        EventLog { path: path.into() }
    }

    /// `--events-log` / `DS01_EVENTS_LOG`, else the default path.
    pub fn from_env_or(explicit: Option<&Path>) -> Self {
        match explicit {
            Some(p) => EventLog::new(p),
            None => EventLog::new(
                std::env::var_os("DS01_EVENTS_LOG")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_LOG)),
            ),
        }
    }

    /// Append one event with a single `write(2)` on an O_APPEND descriptor. The
    /// file (0644) and its directory are created if missing. Errors come back as a
    /// value: logging never makes the caller fail.
    pub fn append(&self, ev: &Event) -> Result<(), EventError> {
        self.append_at(ev, jiff::Timestamp::now())
    }

    pub fn append_at(&self, ev: &Event, ts: jiff::Timestamp) -> Result<(), EventError> {
        let line = ev.to_line(ts)?;
        self.append_raw(line.as_bytes())
    }

    /// Append whole lines (each under 4 KiB) in one `write(2)`.
    pub fn append_raw(&self, bytes: &[u8]) -> Result<(), EventError> {
        crate::fsutil::append_once(&self.path, bytes, 0o644).map_err(|e| EventError::Write {
            path: self.path.clone(),
            source: e,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts() -> jiff::Timestamp {
        "2026-01-30T14:30:00.123456Z".parse().expect("ts")
    }

    #[test]
    fn envelope() {
        let line = Event::new("container.create")
            .user("alice")
            .source("docker-wrapper")
            .detail("container", "alice-proj")
            .to_line(ts())
            .expect("line");
        assert_eq!(
            line,
            "{\"timestamp\":\"2026-01-30T14:30:00.123456Z\",\"event_type\":\"container.create\",\"schema_version\":\"1\",\"user\":\"alice\",\"source\":\"docker-wrapper\",\"details\":{\"container\":\"alice-proj\"}}\n"
        );
    }

    #[test]
    fn types() {
        for ok in [
            "resource.oom_kill",
            "quota.memory_exceeded",
            "a.b.c",
            "gpu2.x",
        ] {
            assert!(validate_type(ok).is_ok(), "{ok}");
        }
        for bad in [
            "resource",
            "Resource.oom",
            "a..b",
            ".a",
            "a.",
            "a b.c",
            "a-b.c",
            "",
        ] {
            assert!(validate_type(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn oversized_details_are_replaced() {
        let big = "x".repeat(10_000);
        let line = Event::new("test.big")
            .user(&"u".repeat(5000))
            .detail("blob", big)
            .to_line(ts())
            .expect("line");
        assert!(line.len() < MAX_LINE, "{}", line.len());
        let v: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["details"]["truncated"], true);
        assert_eq!(v["details"]["original_size"], 10_011);
    }
}
