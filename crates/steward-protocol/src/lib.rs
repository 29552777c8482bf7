//! The channel between `steward-agent` and the Steward server: inventory types, messages, and framing.
//!
//! **API boundary:** the agent depends on this crate alone; anything both sides must agree on lives here.
//! The channel runs over TLS with the agent's certificate (signed by the server's CA at enrollment).

pub mod frame;
pub mod inventory;
pub mod message;

pub use frame::{FrameError, MAX_FRAME_BYTES, read_frame, write_frame};
pub use inventory::*;
pub use message::{AgentMessage, PROTOCOL_VERSION, ServerMessage};

/// The DNS name the server's agent-gateway certificate carries and agents verify, whatever address they dial:
/// the CA is private to one Steward server, so the name only needs to be unique within it.
pub const GATEWAY_TLS_NAME: &str = "steward-gateway";
