//! Application logic that is more than a store call: inventory ingest and group membership.
//!
//! **Architecture invariant:** no SQL here (that is `steward-store`), no HTTP (that is `api`).

pub mod groups;
pub mod inventory;
