//! qcow2 disk images through `qemu-img`: create, overlay (copy-on-write clone, O(1) whatever the template's
//! size), full copy (the fallback, timed), capture (flatten the overlay chain and compress), info, delete.
//!
//! Every producing verb writes to a temporary name beside the final one (`.partial-<name>`) and renames it, so
//! the final name only ever holds a finished disk. That makes retries simple: when the final name exists, the
//! verb checks it is what was asked for (same size, same backing) and succeeds without doing anything; when it
//! differs, the verb fails with `DiskConflict` rather than destroying data.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::error::{HypervisorError, Result};
use crate::fsutil;
use crate::qemu::command;
use crate::types::{DiskCopyReport, DiskFormat, DiskInfo};

/// Time limit for copies and captures (large images on slow disks).
const LONG_OPERATION_TIMEOUT: Duration = Duration::from_secs(3600);

/// The fields of `qemu-img info --output=json` the driver reads.
#[derive(Deserialize)]
struct QemuImgInfo {
    format: String,
    #[serde(rename = "virtual-size")]
    virtual_size: u64,
    #[serde(rename = "actual-size", default)]
    actual_size: u64,
    #[serde(rename = "full-backing-filename")]
    full_backing_filename: Option<String>,
    #[serde(rename = "backing-filename")]
    backing_filename: Option<String>,
}

/// `qemu-img` operations with one binary.
#[derive(Debug, Clone)]
pub struct DiskTool {
    qemu_img: PathBuf,
}

fn path_argument(what: &str, path: &Path) -> Result<String> {
    let absolute = fsutil::absolute(path)?;
    absolute
        .to_str()
        .map(str::to_owned)
        .ok_or_else(|| HypervisorError::invalid(what, format!("{} is not valid UTF-8", path.display())))
}

fn check_size(size_bytes: u64) -> Result<()> {
    if size_bytes == 0 || !size_bytes.is_multiple_of(512) {
        return Err(HypervisorError::invalid(
            "disk size",
            format!("{size_bytes} bytes is not a positive multiple of 512"),
        ));
    }
    Ok(())
}

fn ensure_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => fsutil::create_directory(parent),
        _ => Ok(()),
    }
}

impl DiskTool {
    pub fn new(qemu_img: PathBuf) -> Self {
        DiskTool { qemu_img }
    }

    /// Facts about an image (works while a guest uses it).
    pub async fn info(&self, path: &Path) -> Result<DiskInfo> {
        if !path.exists() {
            return Err(HypervisorError::DiskMissing { path: path.to_path_buf() });
        }
        let argument = path_argument("disk path", path)?;
        let finished =
            command::run(&self.qemu_img, &["info", "--output=json", "-U", argument.as_str()], command::DEFAULT_TIMEOUT)
                .await?;
        let info: QemuImgInfo = serde_json::from_str(&finished.stdout)
            .map_err(|source| HypervisorError::Json { path: path.to_path_buf(), source })?;
        Ok(DiskInfo {
            format: info.format,
            virtual_size_bytes: info.virtual_size,
            actual_size_bytes: info.actual_size,
            backing_file: info.full_backing_filename.or(info.backing_filename).map(PathBuf::from),
        })
    }

    /// Creates an empty qcow2 image of `size_bytes`.
    pub async fn create(&self, path: &Path, size_bytes: u64) -> Result<()> {
        check_size(size_bytes)?;
        if path.exists() {
            let info = self.info(path).await?;
            return expect_matching(path, &info, size_bytes, None);
        }
        ensure_parent(path)?;
        let temporary = fsutil::temporary_sibling(path)?;
        let temporary_argument = path_argument("disk path", &temporary)?;
        let size = size_bytes.to_string();
        command::run(
            &self.qemu_img,
            &["create", "-q", "-f", "qcow2", temporary_argument.as_str(), size.as_str()],
            command::DEFAULT_TIMEOUT,
        )
        .await?;
        fsutil::rename_into_place(&temporary, path)
    }

    /// Creates a copy-on-write overlay of `backing`; `size_bytes` (default: the backing's size) must not be
    /// smaller than the backing's size.
    pub async fn overlay(
        &self,
        path: &Path,
        backing: &Path,
        backing_format: DiskFormat,
        size_bytes: Option<u64>,
    ) -> Result<()> {
        // Reading the size from the image header saves a `qemu-img info` run (about half the overlay's cost).
        let backing_size = match header_virtual_size(backing, backing_format) {
            Some(size) => size,
            None => self.info(backing).await?.virtual_size_bytes,
        };
        let size_bytes = size_bytes.unwrap_or(backing_size);
        check_size(size_bytes)?;
        if size_bytes < backing_size {
            return Err(HypervisorError::invalid(
                "overlay size",
                format!(
                    "{size_bytes} bytes is smaller than the backing image {} ({} bytes)",
                    backing.display(),
                    backing_size
                ),
            ));
        }
        let backing_argument = path_argument("backing path", backing)?;
        if path.exists() {
            let info = self.info(path).await?;
            return expect_matching(path, &info, size_bytes, Some(Path::new(&backing_argument)));
        }
        ensure_parent(path)?;
        let temporary = fsutil::temporary_sibling(path)?;
        let temporary_argument = path_argument("disk path", &temporary)?;
        let size = size_bytes.to_string();
        command::run(
            &self.qemu_img,
            &[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-b",
                backing_argument.as_str(),
                "-F",
                backing_format.as_str(),
                temporary_argument.as_str(),
                size.as_str(),
            ],
            command::DEFAULT_TIMEOUT,
        )
        .await?;
        fsutil::rename_into_place(&temporary, path)
    }

    /// Copies `source` into a new standalone qcow2 image, grown to `size_bytes` when that is larger.
    pub async fn copy(&self, source: &Path, destination: &Path, size_bytes: Option<u64>) -> Result<DiskCopyReport> {
        let source_info = self.info(source).await?;
        let size_bytes = size_bytes.unwrap_or(source_info.virtual_size_bytes);
        check_size(size_bytes)?;
        if size_bytes < source_info.virtual_size_bytes {
            return Err(HypervisorError::invalid(
                "copy size",
                format!("{size_bytes} bytes is smaller than the source ({} bytes)", source_info.virtual_size_bytes),
            ));
        }
        if destination.exists() {
            let info = self.info(destination).await?;
            expect_matching(destination, &info, size_bytes, None)?;
            return Ok(DiskCopyReport {
                bytes: info.virtual_size_bytes,
                seconds: 0.0,
                bytes_per_second: 0.0,
                already_present: true,
            });
        }
        ensure_parent(destination)?;
        let started = Instant::now();
        let temporary = fsutil::temporary_sibling(destination)?;
        let temporary_argument = path_argument("disk path", &temporary)?;
        let source_argument = path_argument("source disk path", source)?;
        command::run(
            &self.qemu_img,
            &["convert", "-q", "-O", "qcow2", source_argument.as_str(), temporary_argument.as_str()],
            LONG_OPERATION_TIMEOUT,
        )
        .await?;
        if size_bytes > source_info.virtual_size_bytes {
            let size = size_bytes.to_string();
            command::run(
                &self.qemu_img,
                &["resize", "-q", "-f", "qcow2", temporary_argument.as_str(), size.as_str()],
                command::DEFAULT_TIMEOUT,
            )
            .await?;
        }
        fsutil::rename_into_place(&temporary, destination)?;
        let seconds = started.elapsed().as_secs_f64();
        let bytes_per_second = if seconds > 0.0 { source_info.virtual_size_bytes as f64 / seconds } else { 0.0 };
        tracing::info!(source = %source.display(), destination = %destination.display(), seconds, bytes_per_second, "copied disk");
        Ok(DiskCopyReport { bytes: size_bytes, seconds, bytes_per_second, already_present: false })
    }

    /// Flattens `source` (with its whole backing chain) into a compressed standalone qcow2 image.
    pub async fn capture(&self, source: &Path, destination: &Path) -> Result<()> {
        let source_info = self.info(source).await?;
        if destination.exists() {
            let info = self.info(destination).await?;
            return expect_matching(destination, &info, source_info.virtual_size_bytes, None);
        }
        ensure_parent(destination)?;
        let temporary = fsutil::temporary_sibling(destination)?;
        self.convert_compressed(source, &temporary, &source_info.format).await?;
        fsutil::rename_into_place(&temporary, destination)
    }

    /// `qemu-img convert -c -O qcow2` from `source` (of `source_format`) to `destination`.
    pub async fn convert_compressed(&self, source: &Path, destination: &Path, source_format: &str) -> Result<()> {
        let source_argument = path_argument("source disk path", source)?;
        let destination_argument = path_argument("disk path", destination)?;
        command::run(
            &self.qemu_img,
            &[
                "convert",
                "-q",
                "-c",
                "-f",
                source_format,
                "-O",
                "qcow2",
                source_argument.as_str(),
                destination_argument.as_str(),
            ],
            LONG_OPERATION_TIMEOUT,
        )
        .await
        .map(drop)
    }

    /// `qemu-img convert -O raw` from `source` to `destination`.
    pub async fn convert_to_raw(&self, source: &Path, destination: &Path) -> Result<()> {
        let source_argument = path_argument("source disk path", source)?;
        let destination_argument = path_argument("disk path", destination)?;
        command::run(
            &self.qemu_img,
            &["convert", "-q", "-O", "raw", source_argument.as_str(), destination_argument.as_str()],
            LONG_OPERATION_TIMEOUT,
        )
        .await
        .map(drop)
    }

    /// Removes an image and any leftover temporary file of it; a missing image is not an error.
    pub fn delete(&self, path: &Path) -> Result<()> {
        fsutil::remove_file_if_present(&fsutil::temporary_sibling(path)?)?;
        fsutil::remove_file_if_present(path)
    }
}

/// The virtual size of an image read from its header (qcow2) or its length (raw); `None` when the file is
/// missing or not of that format (the caller then asks `qemu-img`, which reports the precise error).
fn header_virtual_size(path: &Path, format: DiskFormat) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).ok()?;
    match format {
        DiskFormat::Raw => Some(file.metadata().ok()?.len()),
        DiskFormat::Qcow2 => {
            let mut header = [0u8; 32];
            file.read_exact_at(&mut header, 0).ok()?;
            if &header[0..4] != b"QFI\xfb" {
                return None;
            }
            Some(u64::from_be_bytes(header[24..32].try_into().ok()?))
        }
    }
}

/// Accepts an existing image as the result of a retried request when it has the requested size and backing.
fn expect_matching(path: &Path, info: &DiskInfo, size_bytes: u64, backing: Option<&Path>) -> Result<()> {
    if info.format != "qcow2" {
        return Err(HypervisorError::DiskConflict {
            path: path.to_path_buf(),
            reason: format!("it is {}", info.format),
        });
    }
    if info.virtual_size_bytes != size_bytes {
        return Err(HypervisorError::DiskConflict {
            path: path.to_path_buf(),
            reason: format!("its size is {} bytes, not {size_bytes}", info.virtual_size_bytes),
        });
    }
    if info.backing_file.as_deref() != backing {
        return Err(HypervisorError::DiskConflict {
            path: path.to_path_buf(),
            reason: format!(
                "its backing file is {}, not {}",
                info.backing_file.as_deref().map_or("none".to_owned(), |file| file.display().to_string()),
                backing.map_or("none".to_owned(), |file| file.display().to_string())
            ),
        });
    }
    Ok(())
}
