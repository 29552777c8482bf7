//! Lengths read from a package are checked before anything is allocated for them: packages that claim huge
//! sizes and counts (but are small) are refused without any large allocation. A counting allocator records
//! the largest single allocation while each package is read; one test function reads them all in turn, so no
//! other test thread allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use steward_package::read_package;

struct LargestAllocation;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the layout is the caller's, passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: the pointer was allocated by `System` with this layout.
        unsafe { System.dealloc(pointer, layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: as for `alloc` and `dealloc`.
        unsafe { System.realloc(pointer, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

fn rpm_with_signature_header(tags: u32, store: u32, index_and_store: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0u8; 96];
    bytes[..4].copy_from_slice(&[0xed, 0xab, 0xee, 0xdb]);
    bytes.extend_from_slice(&[0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0]);
    bytes.extend_from_slice(&tags.to_be_bytes());
    bytes.extend_from_slice(&store.to_be_bytes());
    bytes.extend_from_slice(index_and_store);
    bytes
}

fn ar_member(name: &str, claimed_size: u64, data: &[u8]) -> Vec<u8> {
    let mut bytes = format!("{name:<16}{:<12}{:<6}{:<6}{:<8}{claimed_size:<10}`\n", 0, 0, 0, 100644).into_bytes();
    bytes.extend_from_slice(data);
    bytes
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// A tar header block with a name, a type and a size (the checksum made right).
fn tar_header(name: &str, kind: u8, size: u64) -> Vec<u8> {
    let mut header = vec![0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    header[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    header[156] = kind;
    header[257..265].copy_from_slice(b"ustar  \0");
    header[148..156].copy_from_slice(b"        ");
    let checksum: u32 = header.iter().map(|&byte| u32::from(byte)).sum();
    header[148..156].copy_from_slice(format!("{checksum:06o}\0 ").as_bytes());
    header
}

fn deb_with_control_archive(control_archive: &[u8]) -> Vec<u8> {
    let mut bytes = b"!<arch>\n".to_vec();
    bytes.extend(ar_member("debian-binary", 4, b"2.0\n"));
    bytes.extend(ar_member("control.tar.gz", control_archive.len() as u64, control_archive));
    bytes
}

#[test]
fn claimed_sizes_allocate_nothing_large() {
    // NAME, VERSION and RELEASE ("x"), then REQUIRENAME claiming u32::MAX strings in a 2-byte store.
    let mut index_and_store = Vec::new();
    for entry in [[1000u32, 6, 0, 1], [1001, 6, 0, 1], [1002, 6, 0, 1], [1049, 8, 0, u32::MAX]] {
        for word in entry {
            index_and_store.extend_from_slice(&word.to_be_bytes());
        }
    }
    index_and_store.extend_from_slice(b"x\0");
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        (
            "an RPM header claiming 65535 tags and 64 MiB, with 32 bytes",
            rpm_with_signature_header(65_535, 4 << 20, &[0; 32]),
        ),
        ("an RPM header over the limits", rpm_with_signature_header(u32::MAX, u32::MAX, &[0; 32])),
        ("an RPM string array claiming four billion strings", {
            let mut signature = rpm_with_signature_header(0, 0, &[]);
            // An empty signature header, then the main header.
            signature.extend_from_slice(&[0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 2]);
            signature.extend_from_slice(&index_and_store);
            signature
        }),
        ("an ar member claiming 9999999999 bytes", {
            let mut bytes = b"!<arch>\n".to_vec();
            bytes.extend(ar_member("debian-binary", 4, b"2.0\n"));
            bytes.extend(ar_member("control.tar.gz", 9_999_999_999, &gzip(b"short")));
            bytes
        }),
        (
            "a tar long name claiming 8 GiB",
            deb_with_control_archive(&gzip(&tar_header("././@LongLink", b'L', (8 << 30) - 1))),
        ),
        (
            "a control file claiming 8 GiB",
            deb_with_control_archive(&gzip(&tar_header("./control", b'0', (8 << 30) - 1))),
        ),
        ("a gzip bomb of a control archive", deb_with_control_archive(&gzip(&vec![0u8; 64 << 20]))),
    ];
    for (what, bytes) in hostile {
        LARGEST.store(0, Ordering::Relaxed);
        let result = read_package(&bytes[..]);
        let largest = LARGEST.load(Ordering::Relaxed);
        assert!(result.is_err(), "{what}: read as a package");
        assert!(largest <= 1 << 20, "{what}: an allocation of {largest} bytes ({result:?})");
        eprintln!(
            "{what}: refused ({}), largest allocation {largest} bytes",
            result.err().map(|error| error.to_string()).unwrap_or_default()
        );
    }
}
