//! The `steward-agent` binary for the x86_64 image: built statically, because the image has no C library.
//!
//! `cargo build -p steward-agent --profile agent --target x86_64-unknown-linux-gnu` with
//! `RUSTFLAGS=-C target-feature=+crt-static`: the explicit `--target` keeps those flags away from build
//! scripts, and the separate target directory (`target/image-agent`) keeps normal builds from being
//! invalidated by the different flags. `file` must then call the result statically linked.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use super::packages::{run_capture, run_checked};

const AGENT_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Builds the static agent and returns the path of the binary.
pub fn build_static_agent(workspace_root: &Path, target_root: &Path) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_directory = target_root.join("image-agent");
    eprintln!(
        "images: building the static steward-agent (cargo build -p steward-agent --profile agent --target {AGENT_TARGET})"
    );
    run_checked(
        Command::new(&cargo)
            .args(["build", "--quiet", "-p", "steward-agent", "--profile", "agent", "--target", AGENT_TARGET])
            .arg("--target-dir")
            .arg(&target_directory)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .current_dir(workspace_root),
    )
    .context("cannot build the static steward-agent (pass --without-agent to build the x86_64 image without it)")?;
    let binary = target_directory.join(AGENT_TARGET).join("agent").join("steward-agent");
    if !binary.is_file() {
        bail!("cargo did not produce {}", binary.display());
    }
    let description = run_capture(Command::new("file").arg("--brief").arg(&binary))?;
    if !is_static_description(&description) {
        bail!("{} is not statically linked: file says {}", binary.display(), description.trim());
    }
    Ok(binary)
}

/// Whether `file`'s description is of a statically linked executable (`static-pie linked` or
/// `statically linked`).
fn is_static_description(description: &str) -> bool {
    description.contains("statically linked") || description.contains("static-pie linked")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_static_and_dynamic_descriptions() {
        assert!(is_static_description("ELF 64-bit LSB pie executable, x86-64, static-pie linked, stripped"));
        assert!(is_static_description("ELF 64-bit LSB executable, x86-64, statically linked, stripped"));
        assert!(!is_static_description(
            "ELF 64-bit LSB pie executable, x86-64, dynamically linked, interpreter /lib64/ld-linux-x86-64.so.2"
        ));
    }
}
