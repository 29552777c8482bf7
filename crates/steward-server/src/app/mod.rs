//! Application logic that is more than a store call: inventory ingest, group membership, hosts and the sagas that provision on them.
//!
//! **Architecture invariant:** no SQL here (that is `steward-store`), no HTTP (that is `api`).

pub mod complexes;
pub mod files;
pub mod groups;
pub mod hosts;
pub mod inventory;
pub mod monitors;
pub mod packages;
pub mod sagas;
pub mod scheduler;
pub mod zvm;
