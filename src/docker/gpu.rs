//! GPUs in GPU-equivalents: a full GPU is 1.0, a MIG instance its compute fraction
//! (`3g.20gb` on a 7-slice GPU is 3/7). The inventory comes from `nvidia-smi -L`
//! (`DS01_NVIDIA_SMI` overrides the command, for tests and hosts without GPUs).

use serde_json::Value;

/// Compute slices of a MIG-capable GPU (A100, H100, A30 use 7 or 4; 7 is the common
/// case and the config's documented default).
pub const SLICES_PER_GPU: f64 = 7.0;

#[derive(Debug, Clone, PartialEq)]
pub struct Mig {
    pub index: u32,
    pub uuid: String,
    /// Compute slices (the `3` of `3g.20gb`).
    pub slices: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Gpu {
    pub index: u32,
    pub uuid: String,
    pub migs: Vec<Mig>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Inventory {
    pub gpus: Vec<Gpu>,
}

/// Parse `nvidia-smi -L`:
/// `GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-…)` and indented
/// `  MIG 3g.20gb     Device  0: (UUID: MIG-…)` lines.
pub fn parse_nvidia_smi_list(text: &str) -> Inventory {
    let uuid = |l: &str| {
        l.split("UUID: ")
            .nth(1)
            .map(|r| r.trim_end_matches(')').trim().to_string())
            .unwrap_or_default()
    };
    let mut inv = Inventory::default();
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("GPU ") {
            if let Some(idx) = rest.split(':').next().and_then(|n| n.trim().parse().ok()) {
                inv.gpus.push(Gpu {
                    index: idx,
                    uuid: uuid(t),
                    migs: Vec::new(),
                });
            }
        } else if let Some(rest) = t.strip_prefix("MIG ") {
            let mut words = rest.split_whitespace();
            let profile = words.next().unwrap_or("");
            let slices = profile
                .split('g')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            let index = rest
                .split("Device")
                .nth(1)
                .and_then(|r| r.split(':').next())
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            if let Some(g) = inv.gpus.last_mut() {
                g.migs.push(Mig {
                    index,
                    uuid: uuid(t),
                    slices,
                });
            }
        }
    }
    inv
}

/// The host's GPUs (none when nvidia-smi is missing or fails).
pub fn inventory() -> Inventory {
    let cmd = std::env::var("DS01_NVIDIA_SMI").unwrap_or_else(|_| "nvidia-smi".into());
    let mut parts = cmd.split_whitespace();
    let Some(prog) = parts.next() else {
        return Inventory::default();
    };
    match std::process::Command::new(prog)
        .args(parts)
        .arg("-L")
        .output()
    {
        Ok(o) if o.status.success() => parse_nvidia_smi_list(&String::from_utf8_lossy(&o.stdout)),
        _ => Inventory::default(),
    }
}

impl Inventory {
    /// GPU-equivalents of one device id as Docker takes them: an index (`0`), a
    /// MIG index (`0:1`), a GPU UUID or a MIG UUID. Unknown ids count as a full GPU.
    pub fn weight(&self, id: &str) -> f64 {
        let mig_weight = |m: &Mig| f64::from(m.slices) / SLICES_PER_GPU;
        if let Some((g, m)) = id.split_once(':') {
            let found = self
                .gpus
                .iter()
                .find(|x| x.index.to_string() == g)
                .and_then(|x| x.migs.iter().find(|y| y.index.to_string() == m));
            return found.map_or(1.0, mig_weight);
        }
        for g in &self.gpus {
            if let Some(m) = g.migs.iter().find(|m| m.uuid == id) {
                return mig_weight(m);
            }
        }
        1.0
    }

    /// What `--gpus all` gives: every MIG instance of MIG-enabled GPUs and every
    /// other GPU whole. `(devices, GPU-equivalents)`.
    pub fn all(&self) -> (usize, f64) {
        let mut n = 0;
        let mut w = 0.0;
        for g in &self.gpus {
            if g.migs.is_empty() {
                n += 1;
                w += 1.0;
            } else {
                n += g.migs.len();
                w += g
                    .migs
                    .iter()
                    .map(|m| f64::from(m.slices) / SLICES_PER_GPU)
                    .sum::<f64>();
            }
        }
        (n, w)
    }
}

/// A GPU request: devices and their GPU-equivalents.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuUse {
    pub devices: usize,
    pub equivalents: f64,
    /// Whether any requested device is a whole GPU.
    pub full_gpu: bool,
}

impl GpuUse {
    pub const NONE: GpuUse = GpuUse {
        devices: 0,
        equivalents: 0.0,
        full_gpu: false,
    };

    fn from_parts(count: Option<i64>, ids: &[String], inv: &Inventory) -> GpuUse {
        if !ids.is_empty() {
            let weights: Vec<f64> = ids.iter().map(|i| inv.weight(i)).collect();
            return GpuUse {
                devices: ids.len(),
                equivalents: weights.iter().sum(),
                full_gpu: weights.iter().any(|w| *w >= 1.0),
            };
        }
        match count {
            Some(-1) => {
                let (n, w) = inv.all();
                GpuUse {
                    devices: n,
                    equivalents: w,
                    full_gpu: inv.gpus.iter().any(|g| g.migs.is_empty()),
                }
            }
            Some(n) if n > 0 => GpuUse {
                devices: n as usize,
                equivalents: n as f64,
                full_gpu: true,
            },
            _ => GpuUse::NONE,
        }
    }
}

/// A `--gpus` value, as the docker CLI turns it into a `DeviceRequest`.
#[derive(Debug, Clone, PartialEq)]
pub struct GpusRequest {
    /// `-1` = all.
    pub count: Option<i64>,
    pub ids: Vec<String>,
}

impl GpusRequest {
    /// The `HostConfig.DeviceRequests` entry the docker CLI sends for it.
    pub fn to_device_request(&self) -> Value {
        serde_json::json!({
            "Driver": "",
            "Count": if self.ids.is_empty() { self.count.unwrap_or(0) } else { 0 },
            "DeviceIDs": if self.ids.is_empty() { Value::Null } else { serde_json::json!(self.ids) },
            "Capabilities": [["gpu"]],
            "Options": {}
        })
    }
}

/// Parse Docker's `--gpus` value: `all`, `2`, `device=0,2`, `"device=0,2"`,
/// `count=2`, `capabilities=compute,utility,device=1`, `driver=nvidia,count=all`.
pub fn parse_gpus_request(v: &str) -> Result<GpusRequest, String> {
    let v = v.trim().trim_matches('"').trim_matches('\'');
    let bad = || {
        format!("--gpus {v:?} is not a GPU request (e.g. --gpus 1, --gpus all, --gpus device=0,1)")
    };
    if v == "all" {
        return Ok(GpusRequest {
            count: Some(-1),
            ids: Vec::new(),
        });
    }
    if let Ok(n) = v.parse::<i64>() {
        return if n >= 0 {
            Ok(GpusRequest {
                count: Some(n),
                ids: Vec::new(),
            })
        } else {
            Err(bad())
        };
    }
    let mut count = None;
    let mut ids: Vec<String> = Vec::new();
    let mut current: Option<&str> = None;
    for part in v.split(',') {
        let part = part.trim().trim_matches('"');
        match part.split_once('=') {
            Some((k, val)) => {
                current = Some(k);
                match k {
                    "count" => {
                        count = Some(if val == "all" {
                            -1
                        } else {
                            val.parse().map_err(|_| bad())?
                        })
                    }
                    "device" => ids.push(val.to_string()),
                    "driver" | "capabilities" | "options" => {}
                    _ => return Err(bad()),
                }
            }
            // A continuation of the previous key's comma-separated list.
            None if current == Some("device") => ids.push(part.to_string()),
            None if current.is_some() => {}
            None => return Err(bad()),
        }
    }
    if count.is_none() && ids.is_empty() {
        count = Some(-1);
    }
    Ok(GpusRequest { count, ids })
}

/// The GPU use of a `--gpus` value.
pub fn parse_gpus_flag(v: &str, inv: &Inventory) -> Result<GpuUse, String> {
    let r = parse_gpus_request(v)?;
    Ok(GpuUse::from_parts(r.count, &r.ids, inv))
}

/// GPU use of an existing container from `HostConfig.DeviceRequests`.
pub fn container_gpus(inspect: &Value, inv: &Inventory) -> GpuUse {
    let mut total = GpuUse::NONE;
    let reqs = inspect
        .pointer("/HostConfig/DeviceRequests")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for r in reqs {
        let is_gpu = r
            .get("Capabilities")
            .and_then(Value::as_array)
            .is_some_and(|caps| {
                caps.iter()
                    .filter_map(Value::as_array)
                    .flatten()
                    .any(|c| c.as_str() == Some("gpu"))
            })
            || r.get("Driver").and_then(Value::as_str) == Some("nvidia");
        if !is_gpu {
            continue;
        }
        let ids: Vec<String> = r
            .get("DeviceIDs")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let count = r.get("Count").and_then(Value::as_i64);
        let u = GpuUse::from_parts(count, &ids, inv);
        total.devices += u.devices;
        total.equivalents += u.equivalents;
        total.full_gpu |= u.full_gpu;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMI: &str = "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-aaaa)
  MIG 3g.20gb     Device  0: (UUID: MIG-m0)
  MIG 2g.10gb     Device  1: (UUID: MIG-m1)
  MIG 1g.5gb      Device  2: (UUID: MIG-m2)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-bbbb)
GPU 2: NVIDIA A100-SXM4-40GB (UUID: GPU-cccc)
";

    #[test]
    fn inventory_and_weights() {
        let inv = parse_nvidia_smi_list(SMI);
        assert_eq!(inv.gpus.len(), 3);
        assert_eq!(inv.gpus[0].migs.len(), 3);
        assert_eq!(inv.weight("1"), 1.0);
        assert_eq!(inv.weight("GPU-bbbb"), 1.0);
        assert!((inv.weight("MIG-m0") - 3.0 / 7.0).abs() < 1e-9);
        assert!((inv.weight("0:1") - 2.0 / 7.0).abs() < 1e-9);
        let (n, w) = inv.all();
        assert_eq!(n, 5);
        assert!((w - (6.0 / 7.0 + 2.0)).abs() < 1e-9);
    }

    #[test]
    fn gpus_flag_forms() {
        let inv = parse_nvidia_smi_list(SMI);
        assert_eq!(parse_gpus_flag("2", &inv).map(|u| u.devices), Ok(2));
        assert_eq!(
            parse_gpus_flag("device=1,2", &inv).map(|u| u.equivalents),
            Ok(2.0)
        );
        assert_eq!(
            parse_gpus_flag("\"device=1,2\"", &inv).map(|u| u.devices),
            Ok(2)
        );
        assert_eq!(parse_gpus_flag("count=1", &inv).map(|u| u.devices), Ok(1));
        assert_eq!(parse_gpus_flag("all", &inv).map(|u| u.devices), Ok(5));
        let mig = parse_gpus_flag("device=MIG-m2", &inv).expect("mig");
        assert!(!mig.full_gpu);
        assert!((mig.equivalents - 1.0 / 7.0).abs() < 1e-9);
        assert_eq!(
            parse_gpus_flag("capabilities=compute,utility,device=1", &inv).map(|u| u.devices),
            Ok(1)
        );
        assert!(parse_gpus_flag("-1", &inv).is_err());
        assert!(parse_gpus_flag("lots", &inv).is_err());
        assert_eq!(parse_gpus_flag("0", &inv), Ok(GpuUse::NONE));
    }

    #[test]
    fn device_requests_of_a_container() {
        let inv = parse_nvidia_smi_list(SMI);
        let c: Value = serde_json::json!({"HostConfig": {"DeviceRequests": [
            {"Driver": "", "Count": 0, "DeviceIDs": ["1", "MIG-m0"], "Capabilities": [["gpu"]]}
        ]}});
        let u = container_gpus(&c, &inv);
        assert_eq!(u.devices, 2);
        assert!((u.equivalents - (1.0 + 3.0 / 7.0)).abs() < 1e-9);
        let all: Value = serde_json::json!({"HostConfig": {"DeviceRequests": [{"Count": -1, "Capabilities": [["gpu"]]}]}});
        assert_eq!(container_gpus(&all, &inv).devices, 5);
        let none: Value = serde_json::json!({"HostConfig": {"DeviceRequests": null}});
        assert_eq!(container_gpus(&none, &inv), GpuUse::NONE);
    }
}
