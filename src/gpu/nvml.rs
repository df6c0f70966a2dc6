//! NVML through `nvml-wrapper`. The library (`libnvidia-ml.so.1`) is opened at run
//! time: a host without it gets [`Opened::NoGpus`]. One GPU that fails (fell off
//! the bus, …) is reported with its error and the others as usual.

use super::{Device, MigDevice, Opened, Process, Snapshot, Source};
use nvml_wrapper::Nvml;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use std::collections::HashMap;

pub struct NvmlSource {
    nvml: Nvml,
    /// Per GPU index, the newest process-utilisation sample seen (µs), so each
    /// look reads only the samples since the last.
    last_seen: HashMap<u32, u64>,
}

/// Where the library is: the usual soname first, then the unversioned name.
const LIBS: &[&str] = &["libnvidia-ml.so.1", "libnvidia-ml.so"];

/// Open NVML.
pub fn open() -> Opened {
    let mut last = None;
    for lib in LIBS {
        match Nvml::builder().lib_path(std::ffi::OsStr::new(lib)).init() {
            Ok(nvml) => {
                return Opened::Source(Box::new(NvmlSource {
                    nvml,
                    last_seen: HashMap::new(),
                }));
            }
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(NvmlError::LibloadingError(_)) | Some(NvmlError::LibraryNotFound) | None => {
            Opened::NoGpus("no NVIDIA driver (libnvidia-ml.so.1 not found)".into())
        }
        Some(NvmlError::DriverNotLoaded) => {
            Opened::NoGpus("the NVIDIA kernel driver is not loaded".into())
        }
        Some(e) => Opened::Failed(format!("NVML: {}", describe(&e))),
    }
}

/// An NVML error in words.
pub fn describe(e: &NvmlError) -> String {
    match e {
        NvmlError::GpuLost => "the GPU has fallen off the bus or is otherwise inaccessible".into(),
        NvmlError::NoPermission => "no permission (NVML refused the query)".into(),
        NvmlError::NotSupported => "not supported by this GPU or driver".into(),
        other => other.to_string(),
    }
}

fn used(m: &UsedGpuMemory) -> Option<u64> {
    match m {
        UsedGpuMemory::Used(b) => Some(*b),
        UsedGpuMemory::Unavailable => None,
    }
}

impl NvmlSource {
    fn device(&mut self, index: u32, procs: &mut Vec<Process>) -> Device {
        let mut d = Device {
            index,
            ..Device::default()
        };
        let dev = match self.nvml.device_by_index(index) {
            Ok(dev) => dev,
            Err(e) => {
                d.error = Some(describe(&e));
                return d;
            }
        };
        match dev.uuid() {
            Ok(u) => d.uuid = u,
            Err(e) => {
                d.error = Some(describe(&e));
                return d;
            }
        }
        d.name = dev.name().unwrap_or_default();
        if let Ok(m) = dev.memory_info() {
            d.memory_used_bytes = Some(m.used);
            d.memory_total_bytes = Some(m.total);
        }
        d.mig_enabled = dev.mig_mode().is_ok_and(|m| m.current == 1);
        if d.mig_enabled {
            let slots = dev.mig_device_count().unwrap_or(0);
            for j in 0..slots {
                let Ok(mig) = dev.mig_device_by_index(j) else {
                    continue; // an empty slot
                };
                let Ok(uuid) = mig.uuid() else { continue };
                let mut m = MigDevice {
                    index: j,
                    uuid: uuid.clone(),
                    name: mig.name().unwrap_or_default(),
                    ..MigDevice::default()
                };
                if let Ok(mem) = mig.memory_info() {
                    m.memory_used_bytes = Some(mem.used);
                    m.memory_total_bytes = Some(mem.total);
                }
                for p in mig.running_compute_processes().unwrap_or_default() {
                    push_process(procs, p.pid, &uuid, used(&p.used_gpu_memory), None);
                }
                d.migs.push(m);
            }
            return d;
        }
        d.utilization_pct = dev.utilization_rates().ok().map(|u| u.gpu);
        // Per-process SM utilisation since the last look (the driver buffers a few
        // seconds of samples); the highest sample per pid.
        let mut sm: HashMap<u32, u32> = HashMap::new();
        let since = self.last_seen.get(&index).copied();
        let sm_ok = match dev.process_utilization_stats(since) {
            Ok(samples) => {
                let mut newest = since.unwrap_or(0);
                for s in samples {
                    newest = newest.max(s.timestamp);
                    let e = sm.entry(s.pid).or_insert(0);
                    *e = (*e).max(s.sm_util);
                }
                self.last_seen.insert(index, newest);
                true
            }
            // No samples since the last look is "nobody computed", not unknown.
            Err(NvmlError::NotFound) => true,
            Err(_) => false,
        };
        let compute = dev.running_compute_processes().unwrap_or_default();
        let graphics = dev.running_graphics_processes().unwrap_or_default();
        for p in compute.iter().chain(&graphics) {
            push_process(
                procs,
                p.pid,
                &d.uuid,
                used(&p.used_gpu_memory),
                sm_ok.then(|| sm.get(&p.pid).copied().unwrap_or(0)),
            );
        }
        d
    }
}

/// Add a process once per device (compute and graphics lists overlap).
fn push_process(
    procs: &mut Vec<Process>,
    pid: u32,
    device: &str,
    mem: Option<u64>,
    sm: Option<u32>,
) {
    if procs.iter().any(|p| p.pid == pid && p.device == device) {
        return;
    }
    procs.push(Process {
        pid,
        device: device.to_string(),
        used_memory_bytes: mem,
        sm_util_pct: sm,
        ..Process::default()
    });
}

impl Source for NvmlSource {
    fn sample(&mut self) -> Result<Snapshot, String> {
        let count = self
            .nvml
            .device_count()
            .map_err(|e| format!("NVML: cannot count the GPUs: {}", describe(&e)))?;
        let mut s = Snapshot {
            version: super::SNAPSHOT_VERSION,
            taken_at: jiff::Timestamp::now().to_string(),
            driver_version: self.nvml.sys_driver_version().ok(),
            nvml_version: self.nvml.sys_nvml_version().ok(),
            ..Snapshot::default()
        };
        let mut procs = Vec::new();
        for i in 0..count {
            let d = self.device(i, &mut procs);
            s.gpus.push(d);
        }
        s.processes = procs;
        Ok(s)
    }

    fn describe(&self) -> String {
        format!(
            "NVML {} (driver {})",
            self.nvml.sys_nvml_version().unwrap_or_default(),
            self.nvml.sys_driver_version().unwrap_or_default()
        )
    }
}
