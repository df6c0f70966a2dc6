//! What the kernel and tools write, read by ds01: cgroup single values, flat keyed
//! files, PSI, /proc/<pid>/net/dev, nvidia-smi output, members files. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = ds01::cgroup::parse::single(s);
    if let Ok(kv) = ds01::cgroup::parse::flat(s) {
        let _ = ds01::cgroup::parse::flat_get(&kv, "usage_usec");
    }
    if let Ok(p) = ds01::cgroup::parse::psi(s) {
        let _ = format!("{p:?}");
    }
    let _ = ds01::lifecycle::source::parse_net_dev(s);
    let inv = ds01::docker::gpu::parse_nvidia_smi_list(s);
    let _ = inv.all();
    for g in &inv.gpus {
        let _ = inv.weight(&g.uuid);
    }
    let _ = ds01::config::load::parse_members(s, std::path::Path::new("x.members"));
});
