//! Application logic that is more than a store call: inventory ingest, group membership, hosts and the sagas that provision on them.
//!
//! **Architecture invariant:** no SQL here (that is `steward-store`), no HTTP handlers (that is `api`; the webhook
//! action is an HTTP client).

pub mod actions;
pub mod complexes;
pub mod events;
pub mod files;
pub mod groups;
pub mod hosts;
pub mod inventory;
pub mod monitors;
pub mod packages;
pub mod sagas;
pub mod scheduler;
pub mod sessions;
pub mod zvm;
