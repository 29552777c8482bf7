//! The recorded z/VM 7.1 exchanges (pysmapi's test vectors, Apache-2.0), loaded for the tests.
//!
//! The file lives in `shared/reference/smapi-vectors/`, beside the repository: from this crate that is
//! `../../../shared/...`.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::{Map, Value};
use smapi::Credentials;

/// One recorded exchange.
#[derive(Debug, Clone)]
pub struct Vector {
    pub function: String,
    pub case: String,
    pub kwargs: Map<String, Value>,
    pub request: Vec<u8>,
    pub response: Vec<u8>,
    pub decoded: Map<String, Value>,
}

impl Vector {
    pub fn name(&self) -> String {
        format!("{} #{}", self.function, self.case)
    }
}

pub fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/smapi-vectors/recorded-zvm71.json")
}

/// The vectors, loaded once per test binary.
pub fn cached_vectors() -> &'static [Vector] {
    static VECTORS: OnceLock<Vec<Vector>> = OnceLock::new();
    VECTORS.get_or_init(vectors)
}

pub fn vectors() -> Vec<Vector> {
    let path = vectors_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read the recorded vectors at {}: {error}", path.display()));
    let json: Value = serde_json::from_str(&text).expect("the vectors file is JSON");
    json.as_array()
        .expect("the vectors file is an array")
        .iter()
        .map(|entry| {
            let text =
                |key: &str| entry[key].as_str().unwrap_or_else(|| panic!("vector field {key} is text")).to_owned();
            Vector {
                function: text("function"),
                case: text("case"),
                kwargs: entry["kwargs"].as_object().expect("kwargs is an object").clone(),
                request: hex_decode(&text("request_hex")),
                response: hex_decode(&text("response_hex")),
                decoded: entry["decoded"].as_object().expect("decoded is an object").clone(),
            }
        })
        .collect()
}

pub fn hex_decode(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "hex text has an even length");
    (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(&text[index..index + 2], 16).expect("hex digits"))
        .collect()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The credentials the recordings were made with.
pub fn recorded_credentials() -> Credentials {
    Credentials::new("maint", "maint").expect("valid credentials")
}
