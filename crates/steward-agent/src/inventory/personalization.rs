//! Results of a Steward guest's first-boot personalization, from `/var/lib/steward/personalization`.
//!
//! The guest's first-boot wrapper runs each personalization step once and records how it ended in a file named
//! after the step, holding the exit code as decimal text with an optional trailing newline (`0\n`). Files that
//! do not hold that are left out, as are hidden files (a wrapper writing `.<name>.tmp` and renaming it into place
//! leaves no half-written result behind) and anything that is not a regular file (a FIFO would block the read).
//! Each read is bounded, and so is the number of results, so an odd directory cannot grow the report.

use std::io::Read;
use std::path::Path;

use steward_protocol::PersonalizationResult;

use super::rooted;

/// Where the first-boot wrapper records its results, below the inventory root.
pub(super) const RESULTS_DIR: &str = "var/lib/steward/personalization";

/// The longest result file read: an `i32` in decimal with a sign and a line end fits many times over.
const MAX_RESULT_BYTES: u64 = 64;

/// The most results reported; a guest has a handful of steps.
const MAX_RESULTS: usize = 256;

pub(super) fn collect(root: &Path) -> Vec<PersonalizationResult> {
    let dir = rooted(root, RESULTS_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) => {
            tracing::debug!(path = %dir.display(), %error, "no personalization results");
            return Vec::new();
        }
    };
    let mut results = Vec::new();
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else { continue };
        if name.starts_with('.') || !entry.file_type().is_ok_and(|kind| kind.is_file()) {
            continue;
        }
        match read_exit_code(&entry.path()) {
            Some(exit_code) => results.push(PersonalizationResult { name, exit_code }),
            None => tracing::debug!(path = %entry.path().display(), "not a personalization result; skipped"),
        }
    }
    results.sort_by(|a, b| a.name.cmp(&b.name));
    if results.len() > MAX_RESULTS {
        tracing::debug!(count = results.len(), kept = MAX_RESULTS, "too many personalization results");
        results.truncate(MAX_RESULTS);
    }
    results
}

/// The exit code a result file holds, or `None` when it holds anything else.
fn read_exit_code(path: &Path) -> Option<i32> {
    let mut text = String::new();
    std::fs::File::open(path).ok()?.take(MAX_RESULT_BYTES + 1).read_to_string(&mut text).ok()?;
    if text.len() as u64 > MAX_RESULT_BYTES {
        return None;
    }
    parse_exit_code(&text)
}

/// `"0"`, `"3\n"`, `"-1\r\n"`: a decimal number with an optional line end and nothing else.
fn parse_exit_code(text: &str) -> Option<i32> {
    let number = text.strip_suffix('\n').map_or(text, |rest| rest.strip_suffix('\r').unwrap_or(rest));
    if number.is_empty() || number.starts_with('+') {
        return None;
    }
    number.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exit_codes_and_nothing_else() {
        assert_eq!(parse_exit_code("0"), Some(0));
        assert_eq!(parse_exit_code("3\n"), Some(3));
        assert_eq!(parse_exit_code("-1\r\n"), Some(-1));
        assert_eq!(parse_exit_code("255"), Some(255));
        for odd in ["", "\n", "+1", " 1", "1 ", "1\n\n", "one", "1.0", "99999999999", "0x1"] {
            assert_eq!(parse_exit_code(odd), None, "{odd:?}");
        }
    }

    #[test]
    fn reads_the_results_under_the_root() {
        let root = tempfile::tempdir().expect("tempdir");
        assert!(collect(root.path()).is_empty(), "no directory, no results");
        let dir = root.path().join(RESULTS_DIR);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("50-users"), "3\n").expect("write");
        std::fs::write(dir.join("10-network"), "0").expect("write");
        std::fs::write(dir.join("20-garbage"), "it failed\n").expect("write");
        std::fs::write(dir.join("30-huge"), format!("{}\n", "0".repeat(100))).expect("write");
        std::fs::write(dir.join(".40-hostname.tmp"), "0\n").expect("write");
        std::fs::create_dir(dir.join("60-a-directory")).expect("mkdir");
        std::os::unix::fs::symlink("/dev/zero", dir.join("70-link")).expect("symlink");
        let fifo = std::ffi::CString::new(dir.join("80-fifo").into_os_string().into_encoded_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0, "mkfifo");
        assert_eq!(
            collect(root.path()),
            [
                PersonalizationResult { name: "10-network".into(), exit_code: 0 },
                PersonalizationResult { name: "50-users".into(), exit_code: 3 },
            ]
        );
    }
}
