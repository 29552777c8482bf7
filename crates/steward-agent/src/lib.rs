//! The Steward agent: keeps one channel to the server (a TLS connection after enrolling, or a QEMU guest's
//! virtio-serial port), reports the system's inventory and then only its changes, and carries out the server's
//! requests.
//!
//! **Architecture invariant:** the agent depends on `steward-protocol` only, never on the server crates, and it
//! never wakes up on a timer unless a monitor needs a sample: changes are noticed through inotify and netlink.
//! It runs on a single-threaded runtime.

pub mod admin;
pub mod backoff;
pub mod command;
pub mod enroll;
pub mod files;
pub mod inventory;
pub mod requests;
pub mod sampler;
pub mod serial;
pub mod session;
pub mod shell;
pub mod software;
pub mod state;
pub mod tls;
pub mod watch;
