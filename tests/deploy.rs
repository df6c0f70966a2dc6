//! The deployment files in deploy/: systemd units verify, the cron line is valid.

mod common;
use std::path::Path;

fn repo(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn systemd_units_pass_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = assert_cmd::cargo::cargo_bin("ds01");
    let mut units = Vec::new();
    for name in ["ds01-collect.service", "ds01-collect.timer"] {
        let text = std::fs::read_to_string(repo("deploy/systemd").join(name)).expect("read unit");
        // Point ExecStart at the binary under test (not installed at /usr/bin here).
        let text = text.replace("/usr/bin/ds01", &bin.display().to_string());
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        units.push(p);
    }
    let Some((ok, said)) = common::systemd_verify(dir.path(), &units) else {
        return;
    };
    assert!(
        ok && said.trim().is_empty(),
        "systemd-analyze verify said:\n{said}"
    );
}

#[test]
fn cron_file_runs_collect_every_minute_as_root() {
    let text = std::fs::read_to_string(repo("deploy/cron.d/ds01-resource-monitor")).expect("read");
    let jobs: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.contains('='))
        .collect();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let fields: Vec<&str> = jobs[0].split_whitespace().collect();
    assert_eq!(&fields[..6], ["*", "*", "*", "*", "*", "root"]);
    assert_eq!(&fields[6..8], ["ds01", "collect"]);
    assert!(
        text.ends_with('\n'),
        "cron ignores a last line without a newline"
    );
}
