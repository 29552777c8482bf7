//! Property tests: `read_package` gets bytes from users, so random bytes, random bytes behind each format's
//! magic, and real packages with bytes changed, cut short or inserted never make it panic; it answers with
//! package metadata or an error.

mod support;

use std::fs;
use std::sync::OnceLock;

use proptest::prelude::*;
use steward_package::{build_deb, build_rpm, read_package};
use support::*;

/// Real packages to damage: a .deb and an .rpm built here, and (when dpkg-deb is installed) .debs that
/// dpkg-deb compressed with xz and zstd.
fn samples() -> &'static Vec<Vec<u8>> {
    static SAMPLES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SAMPLES.get_or_init(|| build_samples().expect("building the sample packages"))
}

fn build_samples() -> anyhow::Result<Vec<Vec<u8>>> {
    let scratch = tempfile::tempdir()?;
    let spec = sample_spec(&sample_tree(&scratch.path().join("files"))?);
    let deb = scratch.path().join("sample.deb");
    let rpm = scratch.path().join("sample.rpm");
    build_deb(&spec, &deb)?;
    build_rpm(&spec, &rpm)?;
    let mut samples = vec![fs::read(&deb)?, fs::read(&rpm)?];
    if tool_available("dpkg-deb") {
        let root = scratch.path().join("root");
        fs::create_dir_all(root.join("DEBIAN"))?;
        fs::create_dir_all(root.join("usr/share/doc/probe"))?;
        fs::write(root.join("usr/share/doc/probe/README"), "probe\n".repeat(50))?;
        fs::write(
            root.join("DEBIAN/control"),
            "Package: probe\nVersion: 1.0-1\nArchitecture: all\nMaintainer: A <a@example.org>\n\
             Depends: libc6 (>= 2.36) | musl\nDescription: probe\n text\n",
        )?;
        for compression in ["xz", "zstd"] {
            let package = scratch.path().join(format!("probe-{compression}.deb"));
            let built = run(
                "dpkg-deb",
                &[
                    "--root-owner-group",
                    &format!("-Z{compression}"),
                    "--build",
                    root.to_str().unwrap_or_default(),
                    package.to_str().unwrap_or_default(),
                ],
            );
            if built.is_ok() {
                samples.push(fs::read(&package)?);
            }
        }
    }
    for sample in &samples {
        read_package(&sample[..])?;
    }
    Ok(samples)
}

/// A change to a package: bytes replaced, then optionally cut at a length or a run of bytes inserted.
#[derive(Debug, Clone)]
struct Damage {
    sample: usize,
    replacements: Vec<(usize, u8)>,
    cut: Option<usize>,
    insertion: Option<(usize, Vec<u8>)>,
}

fn damage() -> impl Strategy<Value = Damage> {
    // Positions favour the first 4 KiB, where the headers, control archive and tar headers are.
    let position = prop_oneof![0usize..4096, any::<usize>()];
    (
        0usize..4,
        prop::collection::vec((position.clone(), any::<u8>()), 1..8),
        prop::option::of(any::<usize>()),
        prop::option::of((position, prop::collection::vec(any::<u8>(), 1..64))),
    )
        .prop_map(|(sample, replacements, cut, insertion)| Damage { sample, replacements, cut, insertion })
}

fn apply(damage: &Damage) -> Vec<u8> {
    let samples = samples();
    let mut bytes = samples[damage.sample % samples.len()].clone();
    for &(position, value) in &damage.replacements {
        let length = bytes.len();
        bytes[position % length] = value;
    }
    if let Some((position, inserted)) = &damage.insertion {
        let at = position % (bytes.len() + 1);
        bytes.splice(at..at, inserted.iter().copied());
    }
    if let Some(cut) = damage.cut {
        bytes.truncate(cut % (bytes.len() + 1));
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = read_package(&bytes[..]);
    }

    #[test]
    fn random_bytes_behind_a_magic_never_panic(
        deb in any::<bool>(),
        rest in prop::collection::vec(any::<u8>(), 0..4096),
    ) {
        let mut bytes = if deb {
            format!("!<arch>\n{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n2.0\n", "debian-binary", 0, 0, 0, 100644, 4)
                .into_bytes()
        } else {
            let mut lead = vec![0u8; 96];
            lead[..4].copy_from_slice(&[0xed, 0xab, 0xee, 0xdb]);
            lead.extend_from_slice(&[0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0]);
            lead
        };
        bytes.extend_from_slice(&rest);
        let _ = read_package(&bytes[..]);
    }

    #[test]
    fn damaged_packages_never_panic(damage in damage()) {
        let bytes = apply(&damage);
        let _ = read_package(&bytes[..]);
    }
}

#[test]
fn undamaged_samples_read() {
    // The damage above only means something if the samples themselves read.
    assert!(samples().len() >= 2);
}
