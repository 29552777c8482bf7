//! NoCloud config drives: a small VFAT image labelled `cidata` holding `meta-data`, `network-config` (version 1)
//! and `user-data` (a shell script running the personalization scripts, with the drive's environment exported
//! to each, and recording each script's exit code in `/var/lib/steward/personalization/<name>`). Steward's test images and cloud-init
//! read this shape; the guest image parses exactly these files, so the formats here are a contract (see the
//! unit tests, which pin them).
//!
//! The image is written in Rust (the `fatfs` crate), with no mkfs or mtools at run time, to a temporary name
//! first and then renamed, so a crash never leaves a half-written drive under the final name.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::{HypervisorError, Result};
use crate::fsutil::{self, temporary_sibling};
use crate::types::{ConfigDrive, NicAddressing};
use crate::validate;

/// The volume label NoCloud looks for.
pub const VOLUME_LABEL: &str = "cidata";
/// The smallest image written (FAT12 needs some room; the files are tiny).
const MINIMUM_IMAGE_BYTES: u64 = 2 * 1024 * 1024;
/// Where the guest records each personalization script's exit code (decimal, newline), one file per script
/// named after it; the agent reports them in its inventory.
pub const PERSONALIZATION_RESULTS_DIRECTORY: &str = "/var/lib/steward/personalization";

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
fn validate_environment_name(name: &str) -> Result<()> {
    let well_formed = name.starts_with(|first: char| first.is_ascii_alphabetic() || first == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !well_formed {
        return Err(HypervisorError::invalid(
            "config-drive environment variable name",
            format!("{name:?} is not a shell variable name (a letter or '_', then letters, digits and '_')"),
        ));
    }
    Ok(())
}

/// `value` as one single-quoted shell word: every `'` becomes `'\''` (end the quote, an escaped quote, start
/// again); nothing else is special inside single quotes, newlines included.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// Checks every field of a config drive.
pub fn validate_config_drive(drive: &ConfigDrive) -> Result<()> {
    validate::simple_name("instance id", &drive.instance_id, 128)?;
    validate_hostname(&drive.hostname)?;
    for (index, nic) in drive.nics.iter().enumerate() {
        validate::mac_address(&format!("MAC of config-drive NIC {index}"), &nic.mac)?;
        if let NicAddressing::Static { address, prefix, gateway, .. } = &nic.config {
            let max_prefix = if address.is_ipv4() { 32 } else { 128 };
            if *prefix > max_prefix {
                return Err(HypervisorError::invalid(
                    format!("prefix of config-drive NIC {index}"),
                    format!("/{prefix} is longer than /{max_prefix}"),
                ));
            }
            if let Some(gateway) = gateway
                && gateway.is_ipv4() != address.is_ipv4()
            {
                return Err(HypervisorError::invalid(
                    format!("gateway of config-drive NIC {index}"),
                    format!("{gateway} is not of the same IP version as {address}"),
                ));
            }
        }
    }
    for (name, value) in &drive.environment {
        validate_environment_name(name)?;
        if value.contains('\0') {
            return Err(HypervisorError::invalid(
                format!("config-drive environment variable {name}"),
                "its value contains NUL",
            ));
        }
    }
    let mut script_names = std::collections::HashSet::new();
    for (index, script) in drive.scripts.iter().enumerate() {
        validate::simple_name(&format!("name of personalization script {index}"), &script.name, 64)?;
        if !script_names.insert(script.name.as_str()) {
            return Err(HypervisorError::invalid(
                format!("name of personalization script {index}"),
                format!("{:?} is used twice (each script records its result under its name)", script.name),
            ));
        }
        if script.body.lines().any(|line| line == script_delimiter(index + 1)) {
            return Err(HypervisorError::invalid(
                format!("personalization script {:?}", script.name),
                format!("must not contain the line {}", script_delimiter(index + 1)),
            ));
        }
        if script.body.contains('\0') {
            return Err(HypervisorError::invalid(format!("personalization script {:?}", script.name), "contains NUL"));
        }
    }
    Ok(())
}

/// A host name: dot-separated labels of letters, digits and inner hyphens, at most 253 characters.
fn validate_hostname(hostname: &str) -> Result<()> {
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if hostname.is_empty() || hostname.len() > 253 || !hostname.split('.').all(valid_label) {
        return Err(HypervisorError::invalid(
            "hostname",
            format!("{hostname:?} is not a host name (labels of letters, digits and inner '-', separated by '.')"),
        ));
    }
    Ok(())
}

/// The `meta-data` file.
pub fn render_meta_data(drive: &ConfigDrive) -> String {
    format!("instance-id: {}\nlocal-hostname: {}\n", drive.instance_id, drive.hostname)
}

/// The `network-config` file (NoCloud network configuration version 1).
pub fn render_network_config(drive: &ConfigDrive) -> String {
    let mut text = String::from("version: 1\nconfig:\n");
    for (index, nic) in drive.nics.iter().enumerate() {
        let _ = write!(
            text,
            "  - type: physical\n    name: eth{index}\n    mac_address: \"{}\"\n",
            nic.mac.to_ascii_lowercase()
        );
        match &nic.config {
            NicAddressing::Static { address, prefix, gateway, dns } => {
                let _ = write!(text, "    subnets:\n      - type: static\n        address: {address}/{prefix}\n");
                if let Some(gateway) = gateway {
                    let _ = writeln!(text, "        gateway: {gateway}");
                }
                if !dns.is_empty() {
                    text.push_str("        dns_nameservers:\n");
                    for server in dns {
                        let _ = writeln!(text, "          - {server}");
                    }
                }
            }
            NicAddressing::Dhcp => text.push_str("    subnets:\n      - type: dhcp\n"),
            NicAddressing::None => {}
        }
    }
    text
}

/// The heredoc delimiter of the `number`th script (1-based).
fn script_delimiter(number: usize) -> String {
    format!("STEWARD_SCRIPT_{number}_END")
}

/// The `user-data` file: one `#!/bin/sh` script that runs each personalization script in order with `sh`
/// (with the drive's environment exported to it), echoes `steward-personalize: <name> exit <code>` after each,
/// records the code in `/var/lib/steward/personalization/<name>` (written under a temporary name, then
/// renamed), and stops at the first failure.
pub fn render_user_data(drive: &ConfigDrive) -> String {
    render_user_data_recording_into(drive, PERSONALIZATION_RESULTS_DIRECTORY)
}

/// `render_user_data` with the results recorded in `results_directory` (tests run the script on the host).
fn render_user_data_recording_into(drive: &ConfigDrive, results_directory: &str) -> String {
    if drive.scripts.is_empty() {
        return "#!/bin/sh\n# Steward personalization: there are no scripts to run.\nexit 0\n".to_owned();
    }
    let mut text = String::from(
        "#!/bin/sh\n\
         # Steward personalization: runs each script in order and stops at the first failure.\n\
         steward_dir=$(mktemp -d) || exit 1\n\
         trap 'rm -rf \"$steward_dir\"' EXIT\n",
    );
    let results = shell_quote(results_directory);
    let _ = writeln!(text, "steward_results={results}");
    text.push_str("mkdir -p \"$steward_results\" || echo \"steward-personalize: cannot create $steward_results\"\n");
    // The environment is set in a subshell per script, so that no value (a PATH or IFS, say) changes how this
    // wrapper itself runs.
    let run = if drive.environment.is_empty() {
        "sh"
    } else {
        text.push_str("steward_environment() {\n");
        for (name, value) in &drive.environment {
            let _ = writeln!(text, "  export {name}={}", shell_quote(value));
        }
        text.push_str("}\n");
        "steward_environment; exec /bin/sh"
    };
    for (index, script) in drive.scripts.iter().enumerate() {
        let number = index + 1;
        let delimiter = script_delimiter(number);
        let mut body = script.body.clone();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        let invocation = if drive.environment.is_empty() {
            format!("{run} \"$steward_dir/{number}\"")
        } else {
            format!("({run} \"$steward_dir/{number}\")")
        };
        let _ = write!(
            text,
            "cat > \"$steward_dir/{number}\" <<'{delimiter}'\n{body}{delimiter}\n\
             {invocation}\n\
             steward_code=$?\n\
             echo \"steward-personalize: {name} exit $steward_code\"\n\
             echo \"$steward_code\" > \"$steward_results/.{name}.tmp\" && mv -f \"$steward_results/.{name}.tmp\" \"$steward_results/{name}\" \\\n\
             \x20 || echo \"steward-personalize: cannot record the result of {name}\"\n\
             if [ \"$steward_code\" -ne 0 ]; then exit \"$steward_code\"; fi\n",
            name = script.name,
        );
    }
    text.push_str("exit 0\n");
    text
}

/// Writes the config drive image to `path` (replacing any previous one).
pub fn config_drive_write(path: &Path, drive: &ConfigDrive) -> Result<()> {
    validate_config_drive(drive)?;
    let files = [
        ("meta-data", render_meta_data(drive)),
        ("network-config", render_network_config(drive)),
        ("user-data", render_user_data(drive)),
    ];
    let content_bytes: u64 = files.iter().map(|(_, text)| text.len() as u64).sum();
    let image_bytes = (content_bytes * 2 + 1024 * 1024).max(MINIMUM_IMAGE_BYTES).next_multiple_of(1024 * 1024);
    if image_bytes > 16 * 1024 * 1024 {
        return Err(HypervisorError::invalid("config drive", "its files exceed 8 MiB"));
    }
    let temporary = temporary_sibling(path)?;
    let result = write_image(&temporary, image_bytes, &files, volume_serial(&drive.instance_id));
    if let Err(error) = result {
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    fsutil::rename_into_place(&temporary, path)
}

/// A volume serial number derived from the instance id (FNV-1a), so every drive gets a distinct, stable one.
fn volume_serial(instance_id: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in instance_id.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

fn write_image(path: &Path, image_bytes: u64, files: &[(&str, String)], serial: u32) -> Result<()> {
    let io_error = |source| HypervisorError::io(path, source);
    let mut image =
        OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path).map_err(io_error)?;
    image.set_len(image_bytes).map_err(io_error)?;
    let mut label = [b' '; 11];
    label[..VOLUME_LABEL.len()].copy_from_slice(VOLUME_LABEL.as_bytes());
    fatfs::format_volume(&mut image, fatfs::FormatVolumeOptions::new().volume_label(label).volume_id(serial))
        .map_err(io_error)?;
    write_root_volume_label_entry(&mut image, &label).map_err(io_error)?;
    image.seek(SeekFrom::Start(0)).map_err(io_error)?;
    {
        let filesystem = fatfs::FileSystem::new(&mut image, fatfs::FsOptions::new()).map_err(io_error)?;
        {
            let root = filesystem.root_dir();
            for (name, text) in files {
                let mut file = root.create_file(name).map_err(io_error)?;
                file.truncate().map_err(io_error)?;
                file.write_all(text.as_bytes()).map_err(io_error)?;
                file.flush().map_err(io_error)?;
            }
        }
        filesystem.unmount().map_err(io_error)?;
    }
    image.sync_all().map_err(io_error)
}

/// Writes the volume label as the first root directory entry too (FAT12/16 only, which is what the small
/// images here are): blkid takes the label from the boot sector, but other readers (fatlabel, Windows) take it
/// from this entry.
fn write_root_volume_label_entry(image: &mut File, label: &[u8; 11]) -> std::io::Result<()> {
    let mut boot_sector = [0u8; 512];
    image.seek(SeekFrom::Start(0))?;
    std::io::Read::read_exact(image, &mut boot_sector)?;
    let bytes_per_sector = u64::from(u16::from_le_bytes([boot_sector[11], boot_sector[12]]));
    let reserved_sectors = u64::from(u16::from_le_bytes([boot_sector[14], boot_sector[15]]));
    let fat_count = u64::from(boot_sector[16]);
    let root_entries = u16::from_le_bytes([boot_sector[17], boot_sector[18]]);
    let sectors_per_fat = u64::from(u16::from_le_bytes([boot_sector[22], boot_sector[23]]));
    if root_entries == 0 || sectors_per_fat == 0 {
        // FAT32: the root directory is a cluster chain; the boot-sector label is enough.
        return Ok(());
    }
    let root_directory_offset = (reserved_sectors + fat_count * sectors_per_fat) * bytes_per_sector;
    let mut entry = [0u8; 32];
    entry[..11].copy_from_slice(label);
    entry[11] = 0x08;
    image.seek(SeekFrom::Start(root_directory_offset))?;
    image.write_all(&entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{NicConfig, PersonalizationScript};
    use std::collections::BTreeMap;
    use std::io::Read;

    fn sample_drive() -> ConfigDrive {
        ConfigDrive {
            instance_id: "vs-0001".to_owned(),
            hostname: "web01".to_owned(),
            nics: vec![
                NicConfig {
                    mac: "52:54:00:12:34:56".to_owned(),
                    config: NicAddressing::Static {
                        address: "10.77.0.2".parse().unwrap(),
                        prefix: 24,
                        gateway: Some("10.77.0.1".parse().unwrap()),
                        dns: vec!["10.77.0.1".parse().unwrap()],
                    },
                },
                NicConfig { mac: "52:54:00:12:34:57".to_owned(), config: NicAddressing::Dhcp },
                NicConfig {
                    mac: "52:54:00:12:34:58".to_owned(),
                    config: NicAddressing::Static {
                        address: "10.78.0.5".parse().unwrap(),
                        prefix: 16,
                        gateway: None,
                        dns: vec![],
                    },
                },
            ],
            scripts: vec![
                PersonalizationScript { name: "motd".to_owned(), body: "echo hello > /etc/motd\n".to_owned() },
                PersonalizationScript { name: "fail.sh".to_owned(), body: "exit 3".to_owned() },
            ],
            environment: BTreeMap::new(),
        }
    }

    #[test]
    fn meta_data_has_the_contract_shape() {
        assert_eq!(render_meta_data(&sample_drive()), "instance-id: vs-0001\nlocal-hostname: web01\n");
    }

    #[test]
    fn network_config_has_the_contract_shape() {
        let expected = r#"version: 1
config:
  - type: physical
    name: eth0
    mac_address: "52:54:00:12:34:56"
    subnets:
      - type: static
        address: 10.77.0.2/24
        gateway: 10.77.0.1
        dns_nameservers:
          - 10.77.0.1
  - type: physical
    name: eth1
    mac_address: "52:54:00:12:34:57"
    subnets:
      - type: dhcp
  - type: physical
    name: eth2
    mac_address: "52:54:00:12:34:58"
    subnets:
      - type: static
        address: 10.78.0.5/16
"#;
        assert_eq!(render_network_config(&sample_drive()), expected);
    }

    #[test]
    fn user_data_runs_scripts_in_order_and_stops_at_the_first_failure() {
        let expected = r#"#!/bin/sh
# Steward personalization: runs each script in order and stops at the first failure.
steward_dir=$(mktemp -d) || exit 1
trap 'rm -rf "$steward_dir"' EXIT
steward_results='/var/lib/steward/personalization'
mkdir -p "$steward_results" || echo "steward-personalize: cannot create $steward_results"
cat > "$steward_dir/1" <<'STEWARD_SCRIPT_1_END'
echo hello > /etc/motd
STEWARD_SCRIPT_1_END
sh "$steward_dir/1"
steward_code=$?
echo "steward-personalize: motd exit $steward_code"
echo "$steward_code" > "$steward_results/.motd.tmp" && mv -f "$steward_results/.motd.tmp" "$steward_results/motd" \
  || echo "steward-personalize: cannot record the result of motd"
if [ "$steward_code" -ne 0 ]; then exit "$steward_code"; fi
cat > "$steward_dir/2" <<'STEWARD_SCRIPT_2_END'
exit 3
STEWARD_SCRIPT_2_END
sh "$steward_dir/2"
steward_code=$?
echo "steward-personalize: fail.sh exit $steward_code"
echo "$steward_code" > "$steward_results/.fail.sh.tmp" && mv -f "$steward_results/.fail.sh.tmp" "$steward_results/fail.sh" \
  || echo "steward-personalize: cannot record the result of fail.sh"
if [ "$steward_code" -ne 0 ]; then exit "$steward_code"; fi
exit 0
"#;
        assert_eq!(render_user_data(&sample_drive()), expected);
    }

    #[test]
    fn user_data_without_scripts_does_nothing() {
        let drive = ConfigDrive { scripts: vec![], ..sample_drive() };
        assert_eq!(
            render_user_data(&drive),
            "#!/bin/sh\n# Steward personalization: there are no scripts to run.\nexit 0\n"
        );
    }

    /// Runs the user-data of `drive` with `sh` on this machine, recording results under `results`.
    fn run_user_data(drive: &ConfigDrive, directory: &Path, results: &Path) -> std::process::Output {
        let script = directory.join("user-data");
        std::fs::write(&script, render_user_data_recording_into(drive, results.to_str().unwrap())).unwrap();
        std::process::Command::new("sh").arg(&script).output().unwrap()
    }

    #[test]
    fn user_data_really_runs_records_results_and_stops_at_the_first_failure() {
        let directory = tempfile::tempdir().unwrap();
        let marker = directory.path().join("ran");
        let results = directory.path().join("results with 'quote'");
        let mut drive = sample_drive();
        drive.scripts = vec![
            PersonalizationScript { name: "one".to_owned(), body: format!("echo one >> {}", marker.display()) },
            PersonalizationScript { name: "two".to_owned(), body: "exit 4".to_owned() },
            PersonalizationScript { name: "three".to_owned(), body: format!("echo three >> {}", marker.display()) },
        ];
        let output = run_user_data(&drive, directory.path(), &results);
        assert_eq!(output.status.code(), Some(4), "{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "steward-personalize: one exit 0\nsteward-personalize: two exit 4\n"
        );
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "one\n");
        let mut recorded: Vec<(String, String)> = std::fs::read_dir(&results)
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                (entry.file_name().to_string_lossy().into_owned(), std::fs::read_to_string(entry.path()).unwrap())
            })
            .collect();
        recorded.sort();
        // No temporary file is left, and the script that never ran has no result.
        assert_eq!(recorded, [("one".to_owned(), "0\n".to_owned()), ("two".to_owned(), "4\n".to_owned())]);
    }

    const HOSTILE_VALUES: [&str; 9] = [
        "it's",
        "'",
        "''\\''",
        "$(touch PWNED) `touch PWNED` ${HOME}",
        "a\nb\n\nc",
        "\\\"; touch PWNED; echo \"",
        "",
        " leading and trailing spaces ",
        "STEWARD_SCRIPT_1_END\nEOF\n)",
    ];

    #[test]
    fn shell_quoting_survives_hostile_values() {
        let directory = tempfile::tempdir().unwrap();
        for value in HOSTILE_VALUES {
            let output = std::process::Command::new("sh")
                .current_dir(directory.path())
                .arg("-c")
                .arg(format!("printf '%s' {}", shell_quote(value)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&output.stdout), value, "{value:?}");
        }
        assert!(!directory.path().join("PWNED").exists());
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn every_script_gets_the_environment_and_the_wrapper_is_unaffected() {
        let directory = tempfile::tempdir().unwrap();
        let results = directory.path().join("results");
        let mut drive = sample_drive();
        drive.environment = HOSTILE_VALUES
            .iter()
            .enumerate()
            .map(|(index, value)| (format!("HOSTILE_{index}"), (*value).to_owned()))
            .collect();
        drive.environment.insert("STEWARD_COMPLEX".to_owned(), "web tier".to_owned());
        drive.environment.insert("STEWARD_MEMBER_INDEX".to_owned(), "3".to_owned());
        // Even variables the wrapper itself relies on do not change how it runs.
        drive.environment.insert("PATH".to_owned(), "/nowhere".to_owned());
        drive.environment.insert("IFS".to_owned(), "/".to_owned());
        drive.environment.insert("steward_results".to_owned(), "/nowhere".to_owned());
        let dump = directory.path().join("dump");
        let mut body = String::new();
        for index in 0..HOSTILE_VALUES.len() {
            body.push_str(&format!("printf '%s\\0' \"$HOSTILE_{index}\" >> '{}'\n", dump.display()));
        }
        body.push_str(&format!(
            "printf '%s\\0%s\\0%s\\0' \"$STEWARD_COMPLEX\" \"$STEWARD_MEMBER_INDEX\" \"$PATH\" >> '{}'\n",
            dump.display()
        ));
        drive.scripts = vec![
            PersonalizationScript { name: "first".to_owned(), body: body.clone() },
            PersonalizationScript { name: "second".to_owned(), body: "exit 0".to_owned() },
        ];
        drive.scripts[1].body = format!("printf '%s\\0' \"$STEWARD_MEMBER_INDEX\" >> '{}'", dump.display());
        let output = run_user_data(&drive, directory.path(), &results);
        assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
        let dumped = std::fs::read(&dump).unwrap();
        let values: Vec<String> =
            dumped.split(|byte| *byte == 0).map(|part| String::from_utf8_lossy(part).into_owned()).collect();
        let mut expected: Vec<String> = HOSTILE_VALUES.iter().map(|value| (*value).to_owned()).collect();
        expected.extend(["web tier", "3", "/nowhere", "3", ""].map(str::to_owned));
        assert_eq!(values, expected);
        assert_eq!(std::fs::read_to_string(results.join("first")).unwrap(), "0\n");
        assert_eq!(std::fs::read_to_string(results.join("second")).unwrap(), "0\n");
        assert!(!directory.path().join("PWNED").exists());
    }

    #[test]
    fn bad_environment_names_and_values_are_refused() {
        for bad in ["", "1A", "A-B", "A B", "A=B", "É", "A$"] {
            let mut drive = sample_drive();
            drive.environment.insert(bad.to_owned(), "x".to_owned());
            let error = validate_config_drive(&drive).unwrap_err().to_string();
            assert!(error.contains("environment variable name"), "{bad:?}: {error}");
        }
        for good in ["_", "A", "a_1", "STEWARD_MEMBER_INDEX"] {
            let mut drive = sample_drive();
            drive.environment.insert(good.to_owned(), "x".to_owned());
            assert!(validate_config_drive(&drive).is_ok(), "{good:?}");
        }
        let mut drive = sample_drive();
        drive.environment.insert("NUL".to_owned(), "a\0b".to_owned());
        assert!(validate_config_drive(&drive).unwrap_err().to_string().contains("NUL"));
        let mut drive = sample_drive();
        drive.scripts[1].name = drive.scripts[0].name.clone();
        assert!(validate_config_drive(&drive).unwrap_err().to_string().contains("used twice"));
    }

    #[test]
    fn invalid_drives_are_refused_with_the_field_named() {
        let mut drive = sample_drive();
        drive.hostname = "bad_host".to_owned();
        assert!(validate_config_drive(&drive).unwrap_err().to_string().contains("hostname"));
        let mut drive = sample_drive();
        drive.scripts[0].body = "STEWARD_SCRIPT_1_END\n".to_owned();
        assert!(validate_config_drive(&drive).unwrap_err().to_string().contains("must not contain"));
        let mut drive = sample_drive();
        drive.nics[0].mac = "zz".to_owned();
        assert!(validate_config_drive(&drive).unwrap_err().to_string().contains("MAC of config-drive NIC 0"));
    }

    #[test]
    fn the_image_is_a_readable_fat_volume_labelled_cidata() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("cidata.img");
        let drive = sample_drive();
        config_drive_write(&path, &drive).unwrap();
        // Writing twice is harmless (idempotent) and leaves no temporary file behind.
        config_drive_write(&path, &drive).unwrap();
        assert_eq!(std::fs::read_dir(directory.path()).unwrap().count(), 1);

        let image = File::open(&path).unwrap();
        let filesystem = fatfs::FileSystem::new(image, fatfs::FsOptions::new()).unwrap();
        assert_eq!(filesystem.volume_label(), "cidata");
        let root = filesystem.root_dir();
        for (name, expected) in [
            ("meta-data", render_meta_data(&drive)),
            ("network-config", render_network_config(&drive)),
            ("user-data", render_user_data(&drive)),
        ] {
            let mut text = String::new();
            root.open_file(name).unwrap().read_to_string(&mut text).unwrap();
            assert_eq!(text, expected, "{name}");
        }
        let names: Vec<String> = root.iter().map(|entry| entry.unwrap().file_name()).collect();
        assert_eq!(names, ["meta-data", "network-config", "user-data"]);
    }
}
