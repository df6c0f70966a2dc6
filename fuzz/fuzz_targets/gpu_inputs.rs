//! GPU inputs: a snapshot file (DS01_GPU_SNAPSHOT, `ds01 gpu --snapshot`) joined
//! into a report with containers' device ids, and `/proc/<pid>/cgroup` text.
//! Never a panic; totals consistent with the rows.
#![no_main]

use ds01::gpu::report::{self, ContainerInfo, IdleState, Inputs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // /proc/<pid>/cgroup text.
    if let Some((id, _, _)) = ds01::gpu::attribute::parse_cgroup(&text) {
        assert_eq!(id.len(), 64);
    }
    // A snapshot, with containers asking for devices named by the text's words.
    let Ok(s) = ds01::gpu::parse_snapshot(&text) else {
        return;
    };
    let ids: Vec<String> = text
        .split(|c: char| !c.is_ascii_alphanumeric() && c != ':' && c != '-')
        .filter(|w| !w.is_empty())
        .take(8)
        .map(str::to_string)
        .collect();
    let containers = vec![ContainerInfo {
        id: "c".repeat(64),
        name: "c".into(),
        user: "alice".into(),
        gpus: ids,
    }];
    let r = report::build(
        &s,
        "fuzz",
        &Inputs {
            containers: Some(&containers),
            proc_root: std::path::Path::new("/nonexistent"),
            exempt_users: &[],
            busy_pct: 5.0,
            idle: &IdleState::default(),
            now: jiff::Timestamp::UNIX_EPOCH,
        },
    );
    let held: u32 = r.users.values().map(|u| u.allocated).sum();
    let rows: usize = r.devices.iter().map(|d| d.holders.len()).sum();
    assert!(held as usize <= rows);
    let _ = report::render(&r);
    let _ = report::render(&r.for_viewer("bob"));
    let _ = report::greeting(&r, "alice");
    let _ = ds01::gpu::utilisation_map(&s);
    let _ = ds01::gpu::layout_diff(&s, &s.inventory());
    let _ = serde_json::to_string(&r);
});
