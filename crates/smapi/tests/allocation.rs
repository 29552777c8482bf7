//! Hostile lengths must not make the decoders allocate: a reply that claims gigabytes but carries a few bytes
//! is refused without any allocation near the claimed size. A global allocator records the largest single
//! allocation made on the test's thread while a decode runs.

use std::alloc::{GlobalAlloc, Layout as AllocationLayout, System};
use std::cell::Cell;

use smapi::functions::{ImageActiveConfigurationQuery, ImageNameQueryDm, VirtualNetworkVswitchQueryExtended};
use smapi::{Reply, SmapiRequest};

struct Recording;

thread_local! {
    static RECORDING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = RECORDING.try_with(|recording| {
        if recording.get() {
            let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; `note` only touches const-initialised
// thread-local cells, which never allocate.
unsafe impl GlobalAlloc for Recording {
    unsafe fn alloc(&self, layout: AllocationLayout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: AllocationLayout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: AllocationLayout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: `pointer` was allocated by this allocator, which is `System`.
        unsafe { System.realloc(pointer, layout, new_size) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: AllocationLayout) {
        // SAFETY: `pointer` was allocated by this allocator, which is `System`.
        unsafe { System.dealloc(pointer, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Recording = Recording;

/// Runs `work` and returns the largest single allocation it made on this thread.
fn largest_allocation(work: impl FnOnce()) -> usize {
    LARGEST.with(|largest| largest.set(0));
    RECORDING.with(|recording| recording.set(true));
    work();
    RECORDING.with(|recording| recording.set(false));
    LARGEST.with(Cell::get)
}

fn reply_with_output(output: &[u8]) -> Reply {
    Reply { request_id: 1, reply_request_id: 1, return_code: 0, reason_code: 0, output: output.to_vec() }
}

#[test]
fn the_recorder_sees_allocations() {
    let largest = largest_allocation(|| {
        let buffer = vec![0u8; 10_000];
        std::hint::black_box(&buffer);
    });
    assert!(largest >= 10_000, "the recording allocator missed a 10 000-byte allocation ({largest})");
}

#[test]
fn claimed_lengths_do_not_drive_allocations() {
    let hostile_outputs: [&[u8]; 4] = [
        // A string array of 2 GiB holding one string of 2 GiB.
        b"\x7f\xff\xff\xff\x7f\xff\xff\xf0abc",
        // 2^31 - 1 virtual switches, the first with a structure of 2 GiB.
        b"\x7f\xff\xff\xff\x7f\xff\xff\xff\x00",
        // A share value of 2 GiB.
        b"\x00\x00\x00\x01\x03\x01\x7f\xff\xff\xffA",
        // Lengths of -1.
        b"\xff\xff\xff\xff\xff\xff\xff\xff",
    ];
    for output in hostile_outputs {
        let reply = reply_with_output(output);
        let largest = largest_allocation(|| {
            assert!(ImageNameQueryDm::decode_output(&reply).is_err());
            assert!(VirtualNetworkVswitchQueryExtended::decode_output(&reply).is_err());
            assert!(ImageActiveConfigurationQuery::decode_output(&reply).is_err());
        });
        assert!(largest < 4096, "decoding {output:02x?} allocated {largest} bytes at once");
    }
}

#[test]
fn reply_headers_are_checked_before_reading_the_body() {
    // A header announcing 4 GiB of output, followed by nothing.
    let frame = b"\x00\x00\x00\x01\xff\xff\xff\xf0";
    let largest = largest_allocation(|| {
        assert!(Reply::parse(frame).is_err());
        assert!(Reply::read_header(*frame, 1024 * 1024).is_err());
    });
    assert!(largest < 4096, "parsing a hostile header allocated {largest} bytes at once");
}
