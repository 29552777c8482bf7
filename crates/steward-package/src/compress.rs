//! Decompression of a package's members, each bounded: the decompressed size is counted and stopped at a
//! limit, and the decoders' own memory is capped (xz by its memory limit, zstd by its largest window).
//!
//! Choices: gzip through `flate2` on its pure-Rust backend (`miniz_oxide`); xz through `lzma-rust2` (pure
//! Rust, a streaming reader with a memory limit; `lzma-rs` was not used because its xz decoder keeps the
//! whole decompressed stream in memory); zstd through `ruzstd` (pure Rust, no default features: no
//! dependencies). None needs a C library.

use std::io::{self, Read, Write};

/// The compression of a tar member of a Debian package, from its file name's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
}

/// The largest memory the xz decoder may use (its dictionary): `xz -9` needs 65 MiB.
const XZ_MEMORY_LIMIT_KIB: u32 = 128 * 1024;
/// The largest zstd window accepted: level 19 uses 8 MiB, `--long` 128 MiB.
const ZSTD_MAX_WINDOW: u64 = 128 * 1024 * 1024;

impl Compression {
    /// The compression of member `name` if it is `<stem>`, `<stem>.gz`, `<stem>.xz` or `<stem>.zst`.
    pub(crate) fn of_member(name: &str, stem: &str) -> Option<Self> {
        match name.strip_prefix(stem)? {
            "" => Some(Self::None),
            ".gz" => Some(Self::Gzip),
            ".xz" => Some(Self::Xz),
            ".zst" => Some(Self::Zstd),
            _ => None,
        }
    }
}

/// Why decompressing stopped.
#[derive(Debug)]
pub(crate) enum DecompressError {
    /// The compressed data is damaged, or reading it failed.
    Input(io::Error),
    /// The consumer refused the data (it found the content malformed).
    Output(io::Error),
    /// More than the limit came out.
    TooLarge { limit: u64 },
}

/// Decompresses `input` into `output`, failing once more than `limit` bytes have come out.
pub(crate) fn decompress(
    compression: Compression,
    input: impl Read,
    output: &mut dyn Write,
    limit: u64,
) -> Result<u64, DecompressError> {
    match compression {
        Compression::None => copy_limited(input, output, limit),
        Compression::Gzip => copy_limited(flate2::read::GzDecoder::new(input), output, limit),
        Compression::Xz => {
            copy_limited(lzma_rust2::XzReader::new_mem_limit(input, true, XZ_MEMORY_LIMIT_KIB), output, limit)
        }
        Compression::Zstd => {
            let decoder = ruzstd::decoding::StreamingDecoder::new_with_max_window_size(input, ZSTD_MAX_WINDOW)
                .map_err(|error| DecompressError::Input(io::Error::new(io::ErrorKind::InvalidData, error)))?;
            copy_limited(decoder, output, limit)
        }
    }
}

fn copy_limited(mut input: impl Read, output: &mut dyn Write, limit: u64) -> Result<u64, DecompressError> {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut total: u64 = 0;
    loop {
        let read = match input.read(&mut buffer) {
            Ok(0) => return Ok(total),
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(DecompressError::Input(error)),
        };
        total += read as u64;
        if total > limit {
            return Err(DecompressError::TooLarge { limit });
        }
        output.write_all(&buffer[..read]).map_err(DecompressError::Output)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> io::Result<Vec<u8>> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data)?;
        encoder.finish()
    }

    #[test]
    fn member_names_give_the_compression() {
        assert_eq!(Compression::of_member("data.tar.xz", "data.tar"), Some(Compression::Xz));
        assert_eq!(Compression::of_member("control.tar", "control.tar"), Some(Compression::None));
        assert_eq!(Compression::of_member("data.tar.zst", "data.tar"), Some(Compression::Zstd));
        assert_eq!(Compression::of_member("data.tar.bz2", "data.tar"), None);
        assert_eq!(Compression::of_member("control.tar.gz", "data.tar"), None);
    }

    #[test]
    fn a_bomb_stops_at_the_limit() -> io::Result<()> {
        let compressed = gzip(&vec![0u8; 4 * 1024 * 1024])?;
        let mut sink = io::sink();
        let result = decompress(Compression::Gzip, &compressed[..], &mut sink, 1024 * 1024);
        assert!(matches!(result, Err(DecompressError::TooLarge { limit: 1_048_576 })), "{result:?}");
        let result = decompress(Compression::Gzip, &compressed[..], &mut sink, 8 * 1024 * 1024);
        assert!(matches!(result, Ok(4_194_304)), "{result:?}");
        Ok(())
    }
}
