//! Steward's domain types: typed IDs, API request and response types with their OpenAPI schemas, error codes,
//! validation rules, and the group query language.
//!
//! **Architecture invariant:** this crate does no IO. The server, the CLI and the tests share these types, so a
//! change here is a change of the external contract.

pub mod api;
pub mod error;
pub mod ids;
pub mod query;
pub mod validate;

pub use error::{ErrorBody, ErrorCode, ErrorResponse};
pub use ids::*;
