//! `ds01 stats`: filters, the latest-sample table, summary arithmetic on a
//! hand-made log (peak, mean, time above 90 %, OOM deltas across a counter reset),
//! rotated files, malformed lines, and the plot's structure.

mod common;
use common::ds01;
use predicates::prelude::*;
use std::path::PathBuf;

/// A stats line at `min` minutes past 10:00 on 2026-01-30.
fn line(min: u32, user: &str, group: &str, pct: f64, ooms: u64) -> String {
    let max: u64 = 100 << 30;
    let cur = (max as f64 * pct / 100.0) as u64;
    format!(
        "{{\"timestamp\":\"2026-01-30T{:02}:{:02}:00Z\",\"user\":\"{user}\",\"group\":\"{group}\",\"memory_current_bytes\":{cur},\"memory_max_bytes\":{max},\"memory_pct\":{pct},\"pids_current\":10,\"pids_max\":100,\"psi_memory_some_avg10\":{:.2},\"psi_memory_full_avg10\":{:.2},\"psi_cpu_some_avg10\":0.5,\"psi_cpu_full_avg10\":0.0,\"oom_count\":{ooms},\"oom_kill_count\":{ooms}}}\n",
        10 + min / 60,
        min % 60,
        pct / 10.0,
        pct / 20.0
    )
}

struct Log {
    _d: tempfile::TempDir,
    path: PathBuf,
}

fn log(lines: &[String]) -> Log {
    let d = tempfile::tempdir().expect("tempdir");
    let path = d.path().join("resource-stats.log");
    std::fs::write(&path, lines.concat()).expect("write");
    Log { _d: d, path }
}

fn stats(l: &Log, args: &[&str]) -> assert_cmd::assert::Assert {
    let mut c = ds01();
    c.arg("stats").args(args).env("DS01_STATS_LOG", &l.path);
    c.assert()
}

fn hand_made() -> Log {
    // alice: 5 samples a minute apart: 50, 95, 92, 60, 91 % — above 90 % for the
    // minute after 95 and after 92 and (last sample) one median interval after 91.
    // OOM counter 0, 2, 2, 1 (reset: the slice was re-created, 1 new), 3 (+2): 5 kills.
    let mut v = vec![
        line(0, "alice", "student", 50.0, 0),
        line(1, "alice", "student", 95.0, 2),
        line(2, "alice", "student", 92.0, 2),
        line(3, "alice", "student", 60.0, 1),
        line(4, "alice", "student", 91.0, 3),
    ];
    v.push(line(0, "bob", "researcher", 10.0, 0));
    v.push(line(4, "bob", "researcher", 30.0, 0));
    log(&v)
}

#[test]
fn summary_arithmetic() {
    let l = hand_made();
    let out = stats(&l, &["--summary"])
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8_lossy(&out);
    let alice = text
        .lines()
        .find(|l| l.starts_with("alice"))
        .expect("alice row");
    let cols: Vec<&str> = alice.split_whitespace().collect();
    assert_eq!(cols[2], "5", "samples: {alice}");
    assert_eq!(cols[3], "95.00", "peak: {alice}");
    assert_eq!(cols[4], "77.60", "mean of 50,95,92,60,91: {alice}");
    assert_eq!(cols[5], "3m", "time above 90%: {alice}");
    assert_eq!(cols[6], "9.50", "peak PSI some: {alice}");
    assert_eq!(cols[7], "4.75", "peak PSI full: {alice}");
    assert_eq!(cols[8], "5", "OOM kills across the reset: {alice}");
    let bob = text
        .lines()
        .find(|l| l.starts_with("bob"))
        .expect("bob row");
    assert!(bob.split_whitespace().nth(5) == Some("0"), "{bob}");
    // Highest peak first.
    assert!(text.find("alice").unwrap_or(0) < text.find("bob").unwrap_or(0));
}

#[test]
fn latest_sample_table_sorted_by_memory() {
    let l = hand_made();
    let out = stats(&l, &[]).success().get_output().stdout.clone();
    let text = String::from_utf8_lossy(&out);
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 2);
    assert!(
        rows[0].starts_with("alice")
            && rows[0].contains("91.0%")
            && rows[0].contains("2026-01-30 10:04"),
        "{text}"
    );
    assert!(
        rows[1].starts_with("bob") && rows[1].contains("30.0%"),
        "{text}"
    );
    assert!(!text.contains("\x1b["), "no colour off a terminal");
}

#[test]
fn filters() {
    let l = hand_made();
    stats(&l, &["--user", "bob", "--json"]).success().stdout(
        predicate::str::contains("\"user\":\"bob\"").and(predicate::str::contains("alice").not()),
    );
    stats(&l, &["--group", "student", "--json"])
        .success()
        .stdout(predicate::str::contains("bob").not());
    let out = stats(
        &l,
        &[
            "--json",
            "--since",
            "2026-01-30T10:02:00Z",
            "--until",
            "2026-01-30T10:03:00Z",
        ],
    )
    .success()
    .get_output()
    .stdout
    .clone();
    assert_eq!(
        String::from_utf8_lossy(&out).lines().count(),
        2,
        "alice at :02 and :03"
    );
    stats(&l, &["--user", "nobody"])
        .success()
        .stdout("no samples\n");
    stats(&l, &["--since", "the other day"])
        .code(2)
        .stderr(predicate::str::contains("not a time"));
}

#[test]
fn malformed_lines_are_counted_and_hide_nothing() {
    let mut v = vec![line(0, "alice", "student", 50.0, 0)];
    v.push("{\"timestamp\":\"2026-01-30T10:01:00Z\",\"user\":\"al\n".into());
    v.push("not json at all\n".into());
    v.push(line(2, "alice", "student", 70.0, 0));
    let l = log(&v);
    stats(&l, &[])
        .success()
        .stdout(predicate::str::contains("70.0%"))
        .stderr(predicate::str::contains(
            "warning: 2 malformed lines skipped",
        ));
}

#[test]
fn a_one_mib_line_and_invalid_utf8_are_skipped_not_fatal() {
    let l = log(&[line(0, "alice", "student", 50.0, 0)]);
    let mut bytes = std::fs::read(&l.path).expect("read");
    bytes.extend_from_slice(format!("{{\"user\":\"{}\"}}\n", "x".repeat(1 << 20)).as_bytes());
    bytes.extend_from_slice(b"{\"timestamp\":\"2026-01-30T10:01:00Z\",\"user\":\"\xff\xfe\"}\n");
    bytes.extend_from_slice(line(2, "alice", "student", 70.0, 0).as_bytes());
    std::fs::write(&l.path, bytes).expect("write");
    stats(&l, &[])
        .success()
        .stdout(predicate::str::contains("70.0%"))
        .stderr(predicate::str::contains("malformed line"));
    stats(&l, &["--summary", "--since", "2026-01-30T00:00:00Z"])
        .success()
        .stdout(predicate::str::contains("alice"));
}

#[test]
fn rotated_files_when_since_reaches_back() {
    let l = log(&[line(120, "alice", "student", 40.0, 0)]);
    let dir = l.path.parent().expect("dir");
    std::fs::write(
        dir.join("resource-stats.log.1"),
        line(60, "alice", "student", 99.0, 0),
    )
    .expect("w");
    let gz = std::fs::File::create(dir.join("resource-stats.log.2.gz")).expect("gz");
    let mut enc = flate2::write::GzEncoder::new(gz, flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, line(0, "alice", "student", 98.0, 0).as_bytes())
        .expect("w");
    enc.finish().expect("finish");
    let peak = |args: &[&str]| {
        let out = stats(&l, args).success().get_output().stdout.clone();
        String::from_utf8_lossy(&out)
            .lines()
            .nth(1)
            .and_then(|r| r.split_whitespace().nth(2).map(str::to_string))
            .unwrap_or_default()
    };
    assert_eq!(peak(&["--summary"]), "1", "the live file only: one sample");
    assert_eq!(
        peak(&["--summary", "--since", "2026-01-30T10:30:00Z"]),
        "2",
        ".1 too"
    );
    assert_eq!(
        peak(&["--summary", "--since", "2026-01-30"]),
        "3",
        ".1 and .2.gz"
    );
}

#[test]
fn plot_is_well_formed_svg_with_one_panel_per_user() {
    let l = hand_made();
    let out = stats(&l, &["--plot", "-"])
        .success()
        .get_output()
        .stdout
        .clone();
    let svg = String::from_utf8(out).expect("utf8");
    let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let captions: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(|t| t.trim().to_string()))
        .filter(|t| t.contains(" — memory vs "))
        .collect();
    assert_eq!(
        captions,
        [
            "alice (student) — memory vs limit 100 GiB; PSI memory",
            "bob (researcher) — memory vs limit 100 GiB; PSI memory"
        ]
    );
    let lines = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .count();
    assert!(
        lines >= 6,
        "memory, limit and PSI lines in both panels: {lines}"
    );
    assert!(
        svg.contains("memory (GiB)") && svg.contains("10:0"),
        "axis titles and real times"
    );
    // Files too, SVG and PNG.
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("p.svg");
    stats(&l, &["--plot", p.to_str().expect("utf8 path")]).success();
    assert!(
        std::fs::read_to_string(&p)
            .expect("svg")
            .starts_with("<svg")
    );
    let png = dir.path().join("p.png");
    stats(&l, &["--plot", png.to_str().expect("utf8 path")]).success();
    assert_eq!(&std::fs::read(&png).expect("png")[1..4], b"PNG");
    stats(&l, &["--plot", "-", "--user", "nobody"])
        .code(1)
        .stderr(predicate::str::contains("nothing to plot"));
}

#[test]
fn the_streaming_summary_equals_the_summary_of_the_loaded_samples() {
    // Several users, out-of-order lines, a counter reset, a group change, and a
    // filter: the one-pass reducer and load + summarize agree exactly.
    let mut v = Vec::new();
    for i in 0..3000u32 {
        let user = ["alice", "bob", "carol", "dave"][(i % 4) as usize];
        let group = if user == "dave" && i > 2000 {
            "researcher"
        } else {
            "student"
        };
        let pct = f64::from((i * 37) % 100);
        let ooms = u64::from((i / 400) % 3);
        v.push(line(i % 600, user, group, pct, ooms));
    }
    let l = log(&v);
    for f in [
        ds01::stats::Filter::default(),
        ds01::stats::Filter {
            users: vec!["bob".into(), "dave".into()],
            ..Default::default()
        },
        ds01::stats::Filter {
            group: Some("researcher".into()),
            ..Default::default()
        },
    ] {
        let loaded = ds01::stats::load(&l.path, &f, false).expect("load");
        let want = ds01::stats::summarize(&loaded.samples);
        let (got, malformed) = ds01::stats::load_summary(&l.path, &f).expect("summary");
        assert_eq!(malformed, loaded.malformed);
        assert_eq!(got, want, "{f:?}");
        assert!(!got.is_empty());
    }
}

#[test]
fn a_log_read_on_several_cores_and_a_clock_stepped_back_summarise_as_sorted() {
    // 10 MB (over par_fold's 8 MiB: cut into a piece per core), 10 users 5 s
    // apart; eve's clock steps back 10 minutes two thirds of the way, so her lines
    // are out of time order and she is read again with her points sorted.
    let mut v = Vec::new();
    for k in 0..3000u32 {
        for (n, user) in [
            "alice", "bob", "carol", "dave", "eve", "frank", "grace", "heidi", "ivan", "judy",
        ]
        .iter()
        .enumerate()
        {
            let mut secs = 36_000 + k * 5;
            if *user == "eve" && k >= 2000 {
                secs -= 600;
            }
            let pct = f64::from((k * 7 + n as u32 * 13) % 100) + 0.25;
            let ooms = u64::from((k / 700 + n as u32) % 3);
            let one = line(0, user, "student", pct, ooms);
            let at = format!(
                "2026-01-30T{:02}:{:02}:{:02}Z",
                secs / 3600,
                secs / 60 % 60,
                secs % 60
            );
            v.push(one.replace("2026-01-30T10:00:00Z", &at));
        }
    }
    let l = log(&v);
    assert!(std::fs::metadata(&l.path).expect("log").len() > 8 << 20);
    let f = ds01::stats::Filter::default();
    let loaded = ds01::stats::load(&l.path, &f, false).expect("load");
    let want = ds01::stats::summarize(&loaded.samples);
    let (got, malformed) = ds01::stats::load_summary(&l.path, &f).expect("summary");
    assert_eq!(malformed, 0);
    assert_eq!(got.len(), 10);
    for (g, w) in got.iter().zip(&want) {
        // The mean is summed piece by piece: equal up to rounding.
        assert!((g.mean_pct - w.mean_pct).abs() < 1e-9, "{g:?} vs {w:?}");
        let mean = w.mean_pct;
        assert_eq!(
            &ds01::stats::Summary {
                mean_pct: mean,
                ..g.clone()
            },
            w
        );
    }
    let eve = got.iter().find(|s| s.user == "eve").expect("eve");
    assert_eq!(eve.samples, 3000);
}

/// A line with the GPU fields the collector adds on a GPU host.
fn gpu_line(min: u32, user: &str, gpus: u32, util: Option<f64>, mem_gib: u64) -> String {
    let base = line(min, user, "student", 40.0, 0);
    let util = util.map_or(String::new(), |u| format!(",\"gpu_util_pct\":{u}"));
    format!(
        "{},\"gpus_allocated\":{gpus},\"gpus_in_use\":0,\"gpu_memory_bytes\":{}{util}}}\n",
        base.trim_end().trim_end_matches('}'),
        mem_gib << 30
    )
}

#[test]
fn gpu_fields_are_summarised_and_plotted() {
    // carol holds 2 GPUs for 3 minutes (then none); utilisation 80 and 40 while held.
    let l = log(&[
        gpu_line(0, "carol", 2, Some(80.0), 30),
        gpu_line(1, "carol", 2, Some(40.0), 38),
        gpu_line(2, "carol", 2, None, 38),
        gpu_line(3, "carol", 0, None, 0),
        line(0, "bob", "researcher", 10.0, 0),
        line(3, "bob", "researcher", 10.0, 0),
    ]);
    let out = stats(&l, &["--summary"])
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.lines()
            .next()
            .is_some_and(|h| h.contains("GPU-H") && h.contains("PEAK GMEM")),
        "{text}"
    );
    let carol: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("carol"))
        .expect("carol")
        .split_whitespace()
        .collect();
    // 2 GPUs × 3 one-minute intervals = 0.1 GPU-hours; mean 60 %; peak 38 GiB.
    assert_eq!(&carol[9..], ["0.1", "60%", "38", "GiB"], "{text}");
    let bob: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("bob"))
        .expect("bob")
        .split_whitespace()
        .collect();
    assert_eq!(
        &bob[9..],
        ["-", "-", "-"],
        "old lines: no GPU figures, {text}"
    );
    let svg = String::from_utf8(
        stats(&l, &["--plot", "-", "--user", "carol"])
            .success()
            .get_output()
            .stdout
            .clone(),
    )
    .expect("utf8");
    assert!(
        svg.contains("GPU memory") && svg.contains("GPU utilisation (%)"),
        "legend"
    );
    assert!(svg.contains("; PSI memory; GPU"), "caption");
}

/// `ds01 stats --json | head -1`: the reader goes away after one line; ds01 stops
/// quietly with status 0 (the print macros used to panic on the broken pipe).
#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    use std::io::BufRead;
    let lines: Vec<String> = (0..20_000)
        .map(|i| line(i % 600, &format!("u{}", i / 600), "student", 50.0, 0))
        .collect();
    let l = log(&lines);
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("ds01"))
        .args(["stats", "--json"])
        .env("DS01_STATS_LOG", &l.path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    out.read_line(&mut first).expect("one line");
    assert!(first.starts_with("{\"timestamp\""), "{first}");
    drop(out);
    let o = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.code(), Some(0), "{err}");
}
