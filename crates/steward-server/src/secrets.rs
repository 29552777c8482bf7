//! Bearer secrets (API tokens, enrollment tokens): generation and the hash under which they are stored.
//!
//! A secret is a prefix naming its kind plus 32 random bytes in URL-safe base64 (`stw_…` for API tokens,
//! `ste_…` for enrollment tokens), so a leaked secret is recognizable in logs and by secret scanners.

use base64::Engine;
use sha2::{Digest, Sha256};

pub const API_TOKEN_PREFIX: &str = "stw_";
pub const ENROLLMENT_TOKEN_PREFIX: &str = "ste_";

/// A fresh secret with the given kind prefix.
pub fn generate(kind_prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{kind_prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The SHA-256 of a secret in hex: what the store keeps. The secrets carry 256 bits of entropy, so no slow
/// password hash is needed.
pub fn hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The part of a secret shown in lists to recognize it: the kind prefix and six characters.
pub fn display_prefix(secret: &str) -> String {
    secret.chars().take(10).collect()
}
