//! Steward's hypervisor layer: the `Hypervisor` trait (the verbs sagas and reconcilers call on a host) and its
//! drivers: QEMU (`qemu::QemuHost`, guests as local processes) and z/VM (`zvm::ZvmHost`, guests as directory
//! entries of a z/VM system driven through SMAPI).
//!
//! **Architecture invariant:** drivers never touch the store; every verb is idempotent, so a saga can retry
//! any step (or undo) after a crash.
//!
//! # Using the QEMU driver
//!
//! ```no_run
//! # async fn example() -> steward_hypervisor::Result<()> {
//! use std::time::Duration;
//! use steward_hypervisor::qemu::{QemuHost, QemuHostConfig};
//! use steward_hypervisor::{Arch, Boot, DiskAttachment, DiskFormat, GuestSpec, Hypervisor};
//!
//! let host = QemuHost::new(QemuHostConfig {
//!     root: "/var/lib/steward/hosts/local".into(),
//!     namespace: "steward-1a2b".to_owned(),
//!     search_path: None,
//! })?;
//! let facts = host.probe().await?;
//! host.disk_overlay("/var/lib/steward/hosts/local/web01.qcow2".as_ref(), "/images/debian.qcow2".as_ref(), DiskFormat::Qcow2, None).await?;
//! let spec = GuestSpec {
//!     name: "web01".to_owned(),
//!     arch: Arch::X86_64,
//!     cpus: 1,
//!     memory_mib: 256,
//!     cpu_share: 100,
//!     disks: vec![DiskAttachment { path: "/var/lib/steward/hosts/local/web01.qcow2".into(), format: DiskFormat::Qcow2, serial: None }],
//!     config_drive: None,
//!     nics: vec![],
//!     boot: Boot::Firmware { firmware: None },
//!     agent_channel: true,
//! };
//! host.define_guest(&spec).await?;
//! host.start("web01").await?;
//! host.stop("web01", Duration::from_secs(30)).await?;
//! # let _ = facts;
//! # Ok(())
//! # }
//! ```
//!
//! # CPU share
//!
//! `GuestSpec::cpu_share` is a relative weight (100 normal, 200 twice as much CPU under contention). The QEMU
//! driver maps it to the Linux scheduler weight through the nice value of every QEMU thread
//! (`nice = round(-log_1.25(share / 100))`, clamped to -20..=19), because this machine has no delegated cgroup
//! v2 subtree (it runs cgroup v1) where `cpu.weight` could express it exactly. See `qemu::cpu_share`.

pub mod config_drive;
pub mod error;
pub mod fsutil;
pub mod hypervisor;
pub mod qemu;
pub mod types;
pub mod validate;
pub mod zvm;

pub use config_drive::config_drive_write;
pub use error::{HypervisorError, Result};
pub use hypervisor::{Hypervisor, HypervisorFuture};
pub use types::*;
