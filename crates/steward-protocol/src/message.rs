//! The messages agent and server exchange once the TLS channel is up.
//!
//! ```text
//!  agent                                   server
//!    |-- Hello {version, inventory digest} -->|   checks the certificate is not revoked
//!    |<-- Welcome {send full inventory?} -----|
//!    |-- Inventory (full) or InventoryPatch ->|   only when the server asked, or something changed
//!    |            ... idle: nothing is sent, nobody wakes up ...
//!    |<-- RefreshInventory {full} ------------|   an operator asked for fresh facts
//!    |-- InventoryPatch (if anything changed)->|
//!    |<-- Request {id, request} --------------|   run a command, collect the inventory now (`request.rs`)
//!    |            ... other messages both ways while it runs ...
//!    |-- Response {id, response} ------------>|   exactly one per request, in the order they finish
//!    |<-- Goodbye {reason, retry} ------------|   before the server closes (revoked, shutdown, bad message)
//! ```
//!
//! Both sides reject a peer whose `protocol_version` they do not speak with a `Goodbye`.
//!
//! Requests run concurrently with everything else: the agent answers each in a task of its own and keeps
//! reporting meanwhile, and the server keeps a deadline per request (an agent never needs one).
//!
//! The same messages run over a guest's virtio-serial port (the agent's `--channel virtio-serial`), where the
//! port itself says which guest is speaking: no certificate, no TLS. That channel has no connection boundaries
//! (either end may restart while the other keeps the port open), so each side may start the conversation over:
//!
//! ```text
//!  agent (in the guest)                    server (on the hypervisor host)
//!    |<-- HelloRequest ----------------------|   the server (re)connected to the guest's socket
//!    |-- Hello ----------------------------->|   on start, on every HelloRequest, and again while unanswered
//!    |<-- Welcome ---------------------------|   answers every Hello, also one in the middle of a conversation
//!    |          ... as over TLS ...          |
//! ```
//!
//! An agent may thus see more than one `Welcome` in a conversation (its Hello crossed a HelloRequest); each
//! one is answered as the first was. Frames there carry a marker for resynchronisation (`crate::synced`).

use serde::{Deserialize, Serialize};

use crate::inventory::{Inventory, InventoryPatch};
use crate::request::{AgentRequest, AgentResponse};

/// The version of this protocol; bumped on any incompatible change, which makes every agent of the other version
/// unusable until it is upgraded, so additions are made compatible instead:
/// - `HelloRequest` was added without a bump: it is only ever sent over virtio-serial, which only agents that know
///   it speak.
/// - `Request`/`Response` were added without a bump: the server sends a `Request` only when an operator or a
///   complex asks for one. An older agent cannot read it (it does not know the message) and reconnects, so the
///   request fails as "disconnected" and the agent comes back at once; if it stayed connected and answered
///   nothing, the server's deadline for the request would end it the same way. A request *kind* added later is
///   read by this agent as [`AgentRequest::Unsupported`] and answered with an error, without reconnecting.
/// - `Inventory::personalization` was added without a bump: it is left out of the JSON when empty, which it is
///   on every system but a personalized Steward guest; an older server refuses an inventory that has it (unknown
///   field), so servers are upgraded before the agents of their guests, as always.
/// - `ConfigureMonitors`/`MonitorsConfigured`/`Samples` were added without a bump: an older agent answers the
///   request kind as unsupported and samples nothing; only an agent that accepted a plan sends `Samples`.
/// - The process, service and network requests of `system_admin.rs` were added without a bump, as request kinds
///   (an older agent answers them with an error), and their answers are only sent to a server that asked.
/// - The package and account requests of `software.rs` were added without a bump, the same way.
pub const PROTOCOL_VERSION: u32 = 1;

/// The name of the virtio-serial port the agent talks over (QEMU: `virtserialport,name=...`; the guest finds it
/// in `/sys/class/virtio-ports/*/name`).
pub const SERIAL_PORT_NAME: &str = "org.steward.agent.0";

/// Messages from the agent to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentMessage {
    /// First message on every connection.
    Hello {
        protocol_version: u32,
        agent_version: String,
        /// Digest of the inventory the agent last reported, if it has reported one.
        inventory_digest: Option<String>,
    },
    /// The whole inventory; sent only when the server asks for it in `Welcome`.
    Inventory { inventory: Box<Inventory> },
    /// What changed since the last inventory or patch the agent sent.
    InventoryPatch { patch: Box<InventoryPatch> },
    /// The answer to the server's `Request` with the same `id`.
    Response { id: u64, response: AgentResponse },
    /// Metrics sampled at `at_ms` (milliseconds since the Unix epoch), as the monitor plan asked.
    Samples { at_ms: i64, samples: Vec<crate::monitor::Sample> },
}

/// Messages from the server to the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerMessage {
    Welcome {
        protocol_version: u32,
        /// The system ID the server knows this agent by.
        system_id: String,
        /// True when the server's copy of the inventory does not match the agent's digest.
        send_full_inventory: bool,
    },
    /// Only over virtio-serial: the server has just connected to the guest's port (or started over after an
    /// error) and waits for a `Hello`.
    HelloRequest,
    /// Collect the inventory now and send it: whole when `full`, else a patch if anything changed.
    RefreshInventory { full: bool },
    /// Carry out `request` and answer with a `Response` with the same `id` (unique per server, never reused).
    Request { id: u64, request: AgentRequest },
    /// The server is about to close the connection, and why. With `retry` false the agent must not reconnect
    /// with its current identity (its certificate was revoked, or it speaks an unsupported protocol).
    Goodbye { reason: String, retry: bool },
}
