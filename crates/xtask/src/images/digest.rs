//! SHA-256 digests: of output files (for `template.json`) and of everything an image is built from (so that a
//! second run with the same inputs can tell there is nothing to do).

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use sha2::{Digest, Sha256};

/// Lower-case hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The SHA-256 of a file's contents, in hexadecimal.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).with_context(|| format!("cannot read {}", path.display()))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Accumulates named inputs into one digest; each input is framed by its name and length so that different
/// inputs cannot produce the same byte stream.
#[derive(Default)]
pub struct InputDigest {
    hasher: Sha256,
}

impl InputDigest {
    pub fn add(&mut self, name: &str, value: &[u8]) {
        self.hasher.update((name.len() as u64).to_le_bytes());
        self.hasher.update(name.as_bytes());
        self.hasher.update((value.len() as u64).to_le_bytes());
        self.hasher.update(value);
    }

    pub fn finish(self) -> String {
        hex(&self.hasher.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_separates_inputs() {
        let mut first = InputDigest::default();
        first.add("a", b"bc");
        let mut second = InputDigest::default();
        second.add("ab", b"c");
        assert_ne!(first.finish(), second.finish());
        assert_eq!(hex(&[0, 15, 255]), "000fff");
    }
}
