//! The wrapper's docker argv (NUL-separated arguments): the argument model and the
//! placement decision. Never a panic; an allowed non-admin run is placed in the
//! user's slice.
#![no_main]

use ds01::docker::{Decider, Decision, gpu};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let argv: Vec<String> = s.split('\0').map(str::to_string).collect();
    let ds01::docker::args::Command::Run(run) = ds01::docker::args::parse(&argv) else {
        return;
    };
    let cfg = config();
    let user = cfg.resolve("alice");
    let inv = gpu::Inventory::default();
    let d = Decider { user: &user, admin: false, inventory: &inv };
    if let Decision::Allow { changes, .. } = d.decide(&run, None) {
        let _ = format!("{changes:?}");
    }
});

fn config() -> &'static ds01::config::Config {
    static C: std::sync::OnceLock<ds01::config::Config> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("ds01-fuzz-argv-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("mkdir");
        let p = ds01::demo::write_demo(&d).expect("write demo");
        ds01::config::load(&p).config.expect("demo config loads")
    })
}
