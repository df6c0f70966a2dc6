//! `ds01 events`: the writer, every filter alone and combined, legacy and malformed
//! lines, rotated files, follow across logrotate, and concurrent appends.

mod common;
use common::ds01;
use ds01::events::{Event, EventLog};
use predicates::prelude::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn v1(ts: &str, ty: &str, user: &str, container: Option<&str>) -> String {
    let details = container.map_or(String::new(), |c| {
        format!(",\"details\":{{\"container\":\"{c}\",\"n\":1}}")
    });
    format!(
        "{{\"timestamp\":\"{ts}\",\"event_type\":\"{ty}\",\"schema_version\":\"1\",\"user\":\"{user}\"{details}}}\n"
    )
}

fn legacy(ts: &str, ty: &str, user: &str, container: &str) -> String {
    format!(
        "{{\"ts\":\"{ts}\",\"event\":\"{ty}\",\"user\":\"{user}\",\"container\":\"{container}\"}}\n"
    )
}

struct Log {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Log {
    fn new(lines: &[String]) -> Log {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, lines.concat()).expect("write");
        Log { _dir: dir, path }
    }

    fn query(&self, args: &[&str]) -> assert_cmd::assert::Assert {
        let mut c = ds01();
        c.arg("events")
            .args(args)
            .env("DS01_EVENTS_LOG", &self.path);
        c.assert()
    }

    /// The `--json` lines a query prints.
    fn json(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.query(&all).success().get_output().stdout.clone();
        String::from_utf8_lossy(&out)
            .lines()
            .map(|l| serde_json::from_str(l).expect("each printed line is JSON"))
            .collect()
    }
}

fn sample() -> Log {
    Log::new(&[
        v1(
            "2026-01-28T10:00:00.000000Z",
            "container.create",
            "alice",
            Some("alice-a"),
        ),
        v1(
            "2026-01-29T10:00:00.000000Z",
            "resource.oom_kill",
            "alice",
            Some("alice-train"),
        ),
        v1(
            "2026-01-29T11:00:00.000000Z",
            "resource.pressure",
            "bob",
            None,
        ),
        legacy("2026-01-29T12:00:00", "gpu.allocated", "bob", "bob-gpu"),
        v1(
            "2026-01-30T09:00:00.000000Z",
            "quota.memory_exceeded",
            "alice",
            Some("alice-b"),
        ),
        legacy(
            "2026-01-30T10:00:00",
            "resource.oom_kill",
            "carol",
            "carol-x",
        ),
    ])
}

fn types(v: &[serde_json::Value]) -> Vec<String> {
    v.iter()
        .map(|e| {
            e.get("event_type")
                .or(e.get("event"))
                .and_then(|t| t.as_str())
                .unwrap_or("?")
                .to_string()
        })
        .collect()
}

#[test]
fn each_filter_alone() {
    let l = sample();
    assert_eq!(l.json(&["--user", "alice"]).len(), 3);
    assert_eq!(
        types(&l.json(&["--type", "resource"])),
        [
            "resource.oom_kill",
            "resource.pressure",
            "resource.oom_kill"
        ]
    );
    assert_eq!(l.json(&["--type", "resource.oom"]).len(), 2);
    // Container: in details (v1) and top level (legacy).
    assert_eq!(
        types(&l.json(&["--container", "alice-train"])),
        ["resource.oom_kill"]
    );
    assert_eq!(
        types(&l.json(&["--container", "bob-gpu"])),
        ["gpu.allocated"]
    );
    assert_eq!(l.json(&["--since", "2026-01-29T11:00:00Z"]).len(), 4);
    assert_eq!(l.json(&["--until", "2026-01-29T10:30:00Z"]).len(), 2);
}

#[test]
fn filters_combine_with_and() {
    let l = sample();
    assert_eq!(
        types(&l.json(&["--user", "alice", "--type", "resource"])),
        ["resource.oom_kill"]
    );
    assert_eq!(
        l.json(&["--user", "bob", "--type", "gpu", "--container", "bob-gpu"])
            .len(),
        1
    );
    assert_eq!(
        l.json(&[
            "--user",
            "carol",
            "--type",
            "resource",
            "--since",
            "2026-01-30"
        ])
        .len(),
        1
    );
    assert_eq!(
        l.json(&["--user", "alice", "--container", "bob-gpu"]).len(),
        0
    );
    assert_eq!(
        l.json(&[
            "--since",
            "2026-01-29T00:00:00Z",
            "--until",
            "2026-01-29T23:59:59Z",
            "--user",
            "bob"
        ])
        .len(),
        2
    );
}

#[test]
fn legacy_lines_match_the_same_filters() {
    let l = sample();
    let carol = l.json(&[
        "--user",
        "carol",
        "--type",
        "resource.oom_kill",
        "--since",
        "2026-01-30T09:30:00Z",
    ]);
    assert_eq!(carol.len(), 1);
    assert_eq!(carol[0]["event"], "resource.oom_kill");
}

#[test]
fn json_is_byte_for_byte() {
    let line = "{\"timestamp\":\"2026-01-30T09:00:00.000000Z\",  \"event_type\":\"a.b\",\"user\":\"x\",\"extra\":[1,2,{\"k\":null}]}";
    let l = Log::new(&[format!("{line}\n")]);
    l.query(&["--json"]).success().stdout(format!("{line}\n"));
}

#[test]
fn malformed_lines_are_skipped_counted_and_hide_nothing() {
    let mut lines = vec![v1("2026-01-29T10:00:00.000000Z", "a.first", "alice", None)];
    lines.push("{\"timestamp\":\"2026-01-29T10:00:01Z\",\"event_type\":\"a.tor\n".into());
    lines.push("garbage\n".into());
    lines.push("{\"user\":\"alice\"}\n".into());
    lines.push(v1("2026-01-29T10:00:02.000000Z", "a.after", "alice", None));
    let l = Log::new(&lines);
    l.query(&["--json"])
        .success()
        .stderr(predicate::str::contains(
            "warning: 3 malformed lines skipped",
        ));
    assert_eq!(types(&l.json(&[])), ["a.first", "a.after"]);
    // With a filter the count is the same, and the later event still shows.
    l.query(&["--user", "alice", "--json"])
        .success()
        .stdout(predicate::str::contains("a.after"))
        .stderr(predicate::str::contains("malformed"));
}

#[test]
fn a_one_mib_line_and_invalid_utf8_are_skipped_not_fatal() {
    let l = Log::new(&[v1("2026-01-29T10:00:00.000000Z", "a.first", "alice", None)]);
    let mut bytes = std::fs::read(&l.path).expect("read");
    bytes.extend_from_slice(format!("{{\"event_type\":\"{}\"}}\n", "x".repeat(1 << 20)).as_bytes());
    bytes
        .extend_from_slice(b"{\"timestamp\":\"2026-01-29T10:00:01Z\",\"event_type\":\"a.\xff\"}\n");
    bytes.extend_from_slice(v1("2026-01-29T10:00:02.000000Z", "a.after", "alice", None).as_bytes());
    std::fs::write(&l.path, bytes).expect("write");
    // Nothing fatal: every printed line is JSON, the events around them show (the
    // invalid bytes are shown replaced, as the old tool did).
    let got = types(&l.json(&[]));
    assert_eq!(got.first().map(String::as_str), Some("a.first"));
    assert_eq!(got.last().map(String::as_str), Some("a.after"));
    l.query(&["--summary"]).success();
}

#[test]
fn a_log_rotated_mid_query_never_yields_a_torn_line() {
    // logrotate's copytruncate: the file is copied to .1, then truncated, while a
    // query streams it. Every line printed is whole JSON; the query exits cleanly.
    let lines: Vec<String> = (0..40_000)
        .map(|i| {
            v1(
                &format!("2026-01-29T10:{:02}:{:02}.000000Z", (i / 60) % 60, i % 60),
                "a.rot",
                "alice",
                None,
            )
        })
        .collect();
    let l = Log::new(&lines);
    let full = std::fs::read(&l.path).expect("read");
    for round in 0..6 {
        std::fs::write(&l.path, &full).expect("restore");
        let path = l.path.clone();
        let rotate = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(5 * round));
            let _ = std::fs::copy(&path, path.with_extension("jsonl.1"));
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(0));
        });
        let out = ds01()
            .args(["events", "--all", "--json"])
            .env("DS01_EVENTS_LOG", &l.path)
            .output()
            .expect("run");
        rotate.join().expect("rotate");
        assert!(out.status.success(), "round {round}: {out:?}");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("round {round}: torn line {line:?}: {e}"));
        }
    }
}

#[test]
fn limit_keeps_the_newest_oldest_first() {
    let lines: Vec<String> = (0..120)
        .map(|i| {
            v1(
                &format!("2026-01-29T10:{:02}:{:02}.000000Z", i / 60, i % 60),
                &format!("n.e{i}"),
                "u",
                None,
            )
        })
        .collect();
    let l = Log::new(&lines);
    let got = types(&l.json(&[]));
    assert_eq!(got.len(), 50, "default limit");
    assert_eq!(got.first().map(String::as_str), Some("n.e70"));
    assert_eq!(got.last().map(String::as_str), Some("n.e119"));
    assert_eq!(types(&l.json(&["--limit", "2"])), ["n.e118", "n.e119"]);
    assert_eq!(l.json(&["--all"]).len(), 120);
}

#[test]
fn table_output() {
    let l = sample();
    l.query(&["--user", "alice", "--type", "resource"])
        .success()
        .stdout(predicate::str::contains("TIME (UTC)"))
        .stdout(
            predicate::str::is_match(
                "2026-01-29 10:00:00 +resource.oom_kill +alice +alice-train +n=1",
            )
            .expect("regex"),
        )
        .stdout(predicate::str::contains("\x1b[").not());
}

#[test]
fn summary_counts() {
    let l = sample();
    let out = l
        .query(&["--summary"])
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("6 events\n"), "{text}");
    assert!(
        text.contains("resource.oom_kill                       2"),
        "{text}"
    );
    assert!(
        text.contains("alice                                   3"),
        "{text}"
    );
    assert!(
        text.contains("2026-01-29                              3"),
        "{text}"
    );
    l.query(&["--summary", "--user", "bob"])
        .success()
        .stdout(predicate::str::starts_with("2 events\n"));
}

#[test]
fn missing_log_is_no_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    ds01()
        .args(["events", "--file"])
        .arg(dir.path().join("nope.jsonl"))
        .assert()
        .success()
        .stdout("no events\n");
}

#[test]
fn bad_time_phrase_is_a_usage_error_with_an_example() {
    sample()
        .query(&["--since", "last tuesday"])
        .code(2)
        .stderr(predicate::str::contains(
            "--since \"last tuesday\": not a time (e.g. 2026-01-30T14:30:00Z",
        ));
    sample().query(&["--bogus"]).code(2);
}

#[test]
fn relative_times_work_against_now() {
    let now = jiff::Timestamp::now();
    let recent = ds01::timespec::format_event_time(now - jiff::SignedDuration::from_mins(10));
    let old = ds01::timespec::format_event_time(now - jiff::SignedDuration::from_hours(30));
    let l = Log::new(&[
        v1(&old, "a.old", "u", None),
        v1(&recent, "a.new", "u", None),
    ]);
    assert_eq!(types(&l.json(&["--since", "1h"])), ["a.new"]);
    assert_eq!(types(&l.json(&["--since", "2 hours ago"])), ["a.new"]);
    assert_eq!(
        types(&l.json(&["--since", "2d", "--until", "1 day ago"])),
        ["a.old"]
    );
}

fn gzip(path: &Path, text: &str) {
    let f = std::fs::File::create(path).expect("create gz");
    let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    gz.write_all(text.as_bytes()).expect("gz write");
    gz.finish().expect("gz finish");
}

#[test]
fn rotated_files_are_read_in_time_order_when_since_reaches_back() {
    let l = Log::new(&[v1("2026-01-30T10:00:00.000000Z", "r.current", "u", None)]);
    let dir = l.path.parent().expect("dir");
    std::fs::write(
        dir.join("events.jsonl.1"),
        v1("2026-01-29T10:00:00.000000Z", "r.one", "u", None),
    )
    .expect("write .1");
    gzip(
        &dir.join("events.jsonl.2.gz"),
        &v1("2026-01-28T10:00:00.000000Z", "r.two", "u", None),
    );
    gzip(
        &dir.join("events.jsonl.3.gz"),
        &v1("2026-01-27T10:00:00.000000Z", "r.three", "u", None),
    );
    assert_eq!(
        types(&l.json(&[])),
        ["r.current"],
        "no --since: the live file only"
    );
    assert_eq!(
        types(&l.json(&["--since", "2026-01-29T00:00:00Z"])),
        ["r.one", "r.current"]
    );
    assert_eq!(
        types(&l.json(&["--since", "2026-01-28T00:00:00Z"])),
        ["r.two", "r.one", "r.current"]
    );
    assert_eq!(
        types(&l.json(&["--since", "2026-01-01"])),
        ["r.three", "r.two", "r.one", "r.current"]
    );
    l.query(&["--summary", "--since", "2026-01-01"])
        .success()
        .stdout(predicate::str::starts_with("4 events\n"));
}

/// Run `ds01 events --follow` for a while, doing `act` meanwhile; returns stdout.
fn follow_while(path: &Path, act: impl FnOnce()) -> String {
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("ds01"))
        .args([
            "events",
            "--json",
            "--follow",
            "--follow-for",
            "4",
            "--limit",
            "0",
            "--file",
        ])
        .arg(path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn follow");
    std::thread::sleep(Duration::from_millis(700));
    act();
    let out = child.wait_with_output().expect("follow exits");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .expect("open");
    f.write_all(text.as_bytes()).expect("append");
}

#[test]
fn follow_across_copytruncate() {
    let l = Log::new(&[v1("2026-01-30T10:00:00.000000Z", "f.old", "u", None)]);
    let out = follow_while(&l.path, || {
        append(
            &l.path,
            &v1("2026-01-30T10:00:01.000000Z", "f.before", "u", None),
        );
        std::thread::sleep(Duration::from_millis(600));
        // logrotate copytruncate: copy, then truncate in place.
        std::fs::copy(&l.path, l.path.with_extension("jsonl.1")).expect("copy");
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&l.path)
            .expect("truncate");
        std::thread::sleep(Duration::from_millis(600));
        append(
            &l.path,
            &v1("2026-01-30T10:00:02.000000Z", "f.after", "u", None),
        );
    });
    assert!(!out.contains("f.old"), "starts at the end: {out}");
    assert!(out.contains("f.before") && out.contains("f.after"), "{out}");
}

#[test]
fn follow_across_rename() {
    let l = Log::new(&[]);
    let out = follow_while(&l.path, || {
        append(
            &l.path,
            &v1("2026-01-30T10:00:01.000000Z", "f.before", "u", None),
        );
        std::thread::sleep(Duration::from_millis(600));
        std::fs::rename(&l.path, l.path.with_extension("jsonl.1")).expect("rename");
        append(
            &l.path,
            &v1("2026-01-30T10:00:02.000000Z", "f.after", "u", None),
        );
    });
    assert!(out.contains("f.before") && out.contains("f.after"), "{out}");
}

#[test]
fn events_log_stores_json_values_and_never_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sub/dir/events.jsonl");
    ds01()
        .args([
            "events",
            "log",
            "maintenance.reboot",
            "user=alice",
            "source=cron",
            "gpus=2",
            "ok=true",
            "name=x y",
            "list=[1,2]",
        ])
        .env("DS01_EVENTS_LOG", &path)
        .assert()
        .success();
    let text = std::fs::read_to_string(&path).expect("log created with its directory");
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("json");
    assert_eq!(v["event_type"], "maintenance.reboot");
    assert_eq!(v["schema_version"], "1");
    assert_eq!(v["user"], "alice");
    assert_eq!(v["source"], "cron");
    assert_eq!(v["details"]["gpus"], 2);
    assert_eq!(v["details"]["ok"], true);
    assert_eq!(v["details"]["name"], "x y");
    assert_eq!(v["details"]["list"], serde_json::json!([1, 2]));
    assert!(
        v["timestamp"]
            .as_str()
            .is_some_and(|t| t.len() == 27 && t.ends_with('Z'))
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
        0o644
    );
    // An unwritable log: a warning, exit 0.
    ds01()
        .args(["events", "log", "a.b", "x=1"])
        .env("DS01_EVENTS_LOG", "/proc/version/events.jsonl")
        .assert()
        .success()
        .stderr(predicate::str::contains("warning: event not logged"));
    ds01()
        .args(["events", "log", "NotAType"])
        .env("DS01_EVENTS_LOG", &path)
        .assert()
        .code(2);
    ds01()
        .args(["events", "log", "a.b", "novalue"])
        .env("DS01_EVENTS_LOG", &path)
        .assert()
        .code(2);
}

#[test]
fn oversized_event_is_truncated_not_torn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.jsonl");
    let big = format!("blob={}", "x".repeat(20_000));
    ds01()
        .args(["events", "log", "a.big", &big])
        .env("DS01_EVENTS_LOG", &path)
        .assert()
        .success();
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.len() < 4096);
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("json");
    assert_eq!(v["details"]["truncated"], true);
    assert_eq!(v["details"]["original_size"], 20_011);
}

const WRITER_ENV: &str = "DS01_TEST_CONCURRENT_WRITER";
const PER_PROCESS: usize = 10_000;

/// Not a test on its own: the child process body of the concurrency test.
#[test]
fn concurrent_writer_child() {
    let Ok(spec) = std::env::var(WRITER_ENV) else {
        return;
    };
    let (path, id) = spec.split_once('|').expect("path|id");
    let log = EventLog::new(path);
    let pad = "p".repeat(300);
    for i in 0..PER_PROCESS {
        let ev = Event::new("test.concurrent")
            .user(id)
            .detail("seq", i)
            .detail("pad", pad.as_str());
        log.append(&ev).expect("append");
    }
}

#[test]
fn eight_processes_append_without_torn_or_lost_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.jsonl");
    let exe = std::env::current_exe().expect("test binary");
    let children: Vec<_> = (0..8)
        .map(|id| {
            std::process::Command::new(&exe)
                .args(["--exact", "concurrent_writer_child", "--test-threads", "1"])
                .env(WRITER_ENV, format!("{}|w{id}", path.display()))
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("spawn writer")
        })
        .collect();
    for mut c in children {
        assert!(c.wait().expect("wait").success());
    }
    let text = std::fs::read_to_string(&path).expect("read");
    let mut seen = vec![vec![false; PER_PROCESS]; 8];
    let mut lines = 0;
    for line in text.lines() {
        lines += 1;
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("torn line {line:?}: {e}"));
        let w: usize = v["user"]
            .as_str()
            .and_then(|u| u[1..].parse().ok())
            .expect("writer id");
        let seq = v["details"]["seq"].as_u64().expect("seq") as usize;
        assert!(!seen[w][seq], "duplicate {w}/{seq}");
        seen[w][seq] = true;
    }
    assert_eq!(lines, 8 * PER_PROCESS);
    assert!(seen.iter().flatten().all(|s| *s), "lost lines");
}

#[test]
fn ds01_events_link_is_the_query_tool() {
    let l = sample();
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("ds01-events");
    std::os::unix::fs::symlink(assert_cmd::cargo::cargo_bin("ds01"), &link).expect("symlink");
    let out = std::process::Command::new(&link)
        .args(["--user", "carol", "--json"])
        .env("DS01_EVENTS_LOG", &l.path)
        .output()
        .expect("run link");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("carol-x"));
}
