//! The lifecycle settings: `policies` (idle thresholds, window, grace, high demand,
//! the default stop grace) and `container_types.<type>` (per-type idle timeout, max
//! runtime, stop grace). Decoded strictly with file:line diagnostics; the values
//! the old scripts used are the defaults.

use super::dec::Dec;
use super::diag::Diagnostics;
use super::yaml::{Node, Scalar};
use crate::units::Limit;
use std::collections::BTreeMap;
use std::path::Path;

/// `container_types.<type>`: what a container of this type may do, whoever owns it
/// (a user override still wins; see [`crate::lifecycle::limits_for`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypeRule {
    pub idle_timeout_h: Option<Limit<f64>>,
    pub max_runtime_h: Option<Limit<f64>>,
    pub sigterm_grace_s: Option<u64>,
    pub line: usize,
}

/// The host-wide lifecycle settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LifecyclePolicy {
    /// `policies.lifecycle_enforcement`: `false` = report (warnings, dry-run) but
    /// never stop or remove.
    pub enforce: bool,
    /// `cpu_idle_threshold`: % of one core, averaged since the last look.
    pub cpu_idle_pct: f64,
    /// `gpu_idle_threshold`: % utilisation of the busiest GPU the container holds.
    pub gpu_idle_pct: f64,
    /// `network_idle_threshold`: bytes in + out since the last look.
    pub network_idle_bytes: u64,
    /// `idle_detection_window`: consecutive idle looks before a container is idle.
    pub window: u32,
    /// `grace_period_m`: no idle detection this long after a start.
    pub grace_s: u64,
    /// `high_demand_threshold`: share of the host's GPUs allocated above which
    /// idle timeouts shrink.
    pub high_demand_threshold: f64,
    /// `high_demand_idle_reduction`: by how much (0.5 = halved).
    pub high_demand_reduction: f64,
    /// `sigterm_grace_s`: the stop grace for types that set none.
    pub sigterm_grace_s: u64,
    /// `created_container_timeout_m`: a container created but never started is
    /// removed after this long (`None` = never).
    pub created_timeout_s: Option<u64>,
    pub types: BTreeMap<String, TypeRule>,
}

impl Default for LifecyclePolicy {
    fn default() -> Self {
        LifecyclePolicy {
            enforce: true,
            cpu_idle_pct: 2.0,
            gpu_idle_pct: 5.0,
            network_idle_bytes: 1 << 20,
            window: 3,
            grace_s: 30 * 60,
            high_demand_threshold: 0.8,
            high_demand_reduction: 0.5,
            sigterm_grace_s: 60,
            created_timeout_s: Some(30 * 60),
            types: BTreeMap::new(),
        }
    }
}

/// Keys of `policies` ds01 reads.
pub const POLICY_KEYS: &[&str] = &[
    "lifecycle_enforcement",
    "high_demand_threshold",
    "high_demand_idle_reduction",
    "gpu_idle_threshold",
    "cpu_idle_threshold",
    "network_idle_threshold",
    "idle_detection_window",
    "grace_period_m",
    "sigterm_grace_s",
    "created_container_timeout_m",
    // Accepted and kept for the old scripts; ds01 does not act on them.
    "keepalive_max_duration_h",
    "gpu_hold_after_manual_stop_m",
];
const TYPE_KEYS: &[&str] = &["idle_timeout_h", "max_runtime_h", "sigterm_grace_s"];

impl Dec<'_> {
    /// A number in `range`; `null` only when `nullable` (→ `Limit::Max`).
    fn number(
        &mut self,
        v: &Node,
        key: &str,
        range: std::ops::RangeInclusive<f64>,
        what: &str,
        nullable: bool,
    ) -> Option<Limit<f64>> {
        let n = match v.scalar() {
            Some(Scalar::Null) if nullable => return Some(Limit::Max),
            Some(Scalar::Int(i)) => i as f64,
            Some(Scalar::Float(f)) if f.is_finite() => f,
            _ => {
                self.error(
                    v.line,
                    key,
                    format!("expected {what}, found {}", v.describe()),
                );
                return None;
            }
        };
        if !range.contains(&n) {
            self.error(v.line, key, format!("{}: expected {what}", v.describe()));
            return None;
        }
        Some(Limit::Value(n))
    }
}

/// `policies:` (the top-level one).
pub fn decode_policies(file: &Path, diags: &mut Diagnostics, v: &Node, p: &mut LifecyclePolicy) {
    let mut d = Dec { file, diags };
    let Some(m) = d.map(v, "policies") else {
        return;
    };
    let big = 0.0..=f64::MAX;
    for (k, v) in m {
        let Some(name) = k.text() else {
            d.error(k.line, "policies", "keys must be plain names");
            continue;
        };
        let key = format!("policies.{name}");
        let num = |d: &mut Dec, r, what| d.number(v, &key, r, what, false).and_then(Limit::value);
        match name {
            "lifecycle_enforcement" => {
                if let Some(b) = d.bool(v, &key) {
                    p.enforce = b;
                }
            }
            "high_demand_threshold" => {
                if let Some(x) = num(&mut d, 0.0..=1.0, "a share of the GPUs from 0 to 1") {
                    p.high_demand_threshold = x;
                }
            }
            "high_demand_idle_reduction" => {
                if let Some(x) = num(&mut d, 0.0..=0.99, "a reduction from 0 to 0.99") {
                    p.high_demand_reduction = x;
                }
            }
            "gpu_idle_threshold" => {
                if let Some(x) = num(&mut d, 0.0..=100.0, "a GPU utilisation in % (0-100)") {
                    p.gpu_idle_pct = x;
                }
            }
            "cpu_idle_threshold" => {
                if let Some(x) = num(&mut d, big.clone(), "a share of one core in % (0 or more)") {
                    p.cpu_idle_pct = x;
                }
            }
            "network_idle_threshold" => {
                if let Some(x) = num(&mut d, big.clone(), "a number of bytes") {
                    p.network_idle_bytes = x.round() as u64;
                }
            }
            "idle_detection_window" => {
                if let Some(x) = num(&mut d, 1.0..=10_000.0, "a number of looks, 1 or more") {
                    if x.fract() != 0.0 {
                        d.error(v.line, &key, "expected a whole number of looks");
                    } else {
                        p.window = x as u32;
                    }
                }
            }
            "grace_period_m" => {
                if let Some(x) = num(&mut d, big.clone(), "minutes") {
                    p.grace_s = (x * 60.0).round() as u64;
                }
            }
            "sigterm_grace_s" => {
                if let Some(x) = num(&mut d, 0.0..=3600.0, "seconds (0-3600)") {
                    p.sigterm_grace_s = x.round() as u64;
                }
            }
            "created_container_timeout_m" => {
                match d.number(v, &key, big.clone(), "minutes or null", true) {
                    Some(Limit::Value(x)) => p.created_timeout_s = Some((x * 60.0).round() as u64),
                    Some(Limit::Max) => p.created_timeout_s = None,
                    None => {}
                }
            }
            "keepalive_max_duration_h" | "gpu_hold_after_manual_stop_m" => {
                let _ = d.number(v, &key, big.clone(), "a number", true);
            }
            other => d.unknown(k.line, &key, other, POLICY_KEYS),
        }
    }
}

/// `container_types:`.
pub fn decode_types(file: &Path, diags: &mut Diagnostics, v: &Node, p: &mut LifecyclePolicy) {
    let mut d = Dec { file, diags };
    let Some(m) = d.map(v, "container_types") else {
        return;
    };
    for (tk, tv) in m {
        let Some(ty) = tk.text() else {
            d.error(tk.line, "container_types", "keys must be plain names");
            continue;
        };
        let prefix = format!("container_types.{ty}");
        let Some(body) = d.map(tv, &prefix) else {
            continue;
        };
        let mut rule = TypeRule {
            line: tk.line,
            ..TypeRule::default()
        };
        for (k, v) in body {
            let Some(name) = k.text() else {
                d.error(k.line, &prefix, "keys must be plain names");
                continue;
            };
            let key = format!("{prefix}.{name}");
            match name {
                "idle_timeout_h" | "max_runtime_h" => {
                    let h = d.number(v, &key, 0.0..=f64::MAX, "hours or null (no limit)", true);
                    if h == Some(Limit::Value(0.0)) {
                        d.error(
                            v.line,
                            &key,
                            "0 hours would stop every container at once; use null for no limit",
                        );
                        continue;
                    }
                    if name == "idle_timeout_h" {
                        rule.idle_timeout_h = h;
                    } else {
                        rule.max_runtime_h = h;
                    }
                }
                "sigterm_grace_s" => {
                    rule.sigterm_grace_s = d
                        .number(v, &key, 0.0..=3600.0, "seconds (0-3600)", false)
                        .and_then(Limit::value)
                        .map(|x| x.round() as u64);
                }
                other => d.unknown(k.line, &key, other, TYPE_KEYS),
            }
        }
        p.types.insert(ty.to_string(), rule);
    }
}
