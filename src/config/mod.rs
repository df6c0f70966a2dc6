//! `resource-limits.yaml` and the files beside it: model, loading with diagnostics,
//! validation and per-user resolution.

mod dec;
pub mod diag;
pub mod last_good;
pub mod lifecycle;
pub mod load;
pub mod model;
pub mod resolve;
pub mod security;
pub mod validate;
pub mod yaml;

pub use diag::{Diagnostic, Diagnostics, Severity};
pub use load::{Loaded, load};
pub use model::{Aggregate, Config, ContainerLimits, Group, Member, Override, PressureConfig};
pub use resolve::{Membership, Resolved};
