//! ds01: fair per-user resource limits on a shared Linux server.
//!
//! The binary (`src/main.rs`) is a thin clap front end over this library; see
//! `docs/architecture.md` for the map of the modules.

pub mod cgroup;
pub mod check;
pub mod cli;
pub mod collect;
pub mod config;
pub mod demo;
pub mod docker;
pub mod events;
pub mod fault;
pub mod flatjson;
pub mod fsutil;
pub mod gpu;
pub mod greet;
pub mod lifecycle;
pub mod monitor;
pub mod naming;
pub mod paths;
pub mod proxy;
pub mod slices;
pub mod stats;
pub mod stats_plot;
pub mod timespec;
pub mod top;
pub mod units;
