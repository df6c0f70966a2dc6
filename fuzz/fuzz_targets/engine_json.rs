//! What the Docker daemon answers, read by ds01: an inspect document into a
//! lifecycle container, and GPU use from device requests. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Some(c) = ds01::lifecycle::source::from_inspect(&v) {
        assert!(!c.user.is_empty() || v.pointer("/Config/Labels/ds01.user").is_some());
    }
    let inv = ds01::docker::gpu::Inventory::default();
    let g = ds01::docker::gpu::container_gpus(&v, &inv);
    assert!(g.equivalents >= 0.0);
});
