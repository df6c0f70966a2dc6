//! Config load on arbitrary text: resource-limits.yaml, a members file and
//! user-overrides.yaml (split at NUL bytes). Never a panic; a config that loads
//! without errors resolves every user and renders every slice.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn dir() -> &'static PathBuf {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("ds01-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(d.join("groups")).expect("mkdir");
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\0');
    let d = dir();
    let main = d.join("resource-limits.yaml");
    let _ = std::fs::write(&main, parts.next().unwrap_or(""));
    let _ = std::fs::write(d.join("groups/student.members"), parts.next().unwrap_or(""));
    match parts.next() {
        Some(o) => {
            let _ = std::fs::write(d.join("user-overrides.yaml"), o);
        }
        None => {
            let _ = std::fs::remove_file(d.join("user-overrides.yaml"));
        }
    }
    let loaded = ds01::config::load(&main);
    for diag in &loaded.diagnostics.items {
        // Every diagnostic renders; a line, when given, is within the file.
        let _ = diag.to_string();
    }
    if let (Some(cfg), false) = (&loaded.config, loaded.diagnostics.has_errors()) {
        for u in cfg.all_users() {
            let r = cfg.resolve(&u.user);
            assert_eq!(r.slice(), u.slice());
            let _ = r.to_json();
            let _ = ds01::lifecycle::limits_for(cfg, &r, "docker", true);
        }
        let _ = ds01::slices::desired_all(cfg);
    }
});
