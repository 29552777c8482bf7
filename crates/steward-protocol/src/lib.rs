//! The channel between `steward-agent` and the Steward server: inventory types, messages, requests and their
//! answers, and framing.
//!
//! **API boundary:** the agent depends on this crate alone; anything both sides must agree on lives here.
//! The channel runs either over TLS with the agent's certificate (signed by the server's CA at enrollment), with
//! the framing of [`frame`], or over a guest's virtio-serial port, with the self-synchronising framing of
//! [`synced`].

pub mod files;
pub mod frame;
pub mod inventory;
pub mod message;
pub mod monitor;
pub mod request;
pub mod session;
pub mod software;
pub mod synced;
pub mod system_admin;
pub mod tar;

pub use frame::{FrameError, MAX_FRAME_BYTES, read_frame, write_frame};
pub use inventory::*;
pub use message::{AgentMessage, PROTOCOL_VERSION, SERIAL_PORT_NAME, ServerMessage};
pub use request::{AgentRequest, AgentResponse, CommandOutcome, CommandRequest, MAX_COMMAND_OUTPUT_BYTES};
pub use synced::{SYNC_MARKER, SyncedFrameReader, encode_synced_frame, write_synced_frame};

/// The DNS name the server's agent-gateway certificate carries and agents verify, whatever address they dial:
/// the CA is private to one Steward server, so the name only needs to be unique within it.
pub const GATEWAY_TLS_NAME: &str = "steward-gateway";
