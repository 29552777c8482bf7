//! Tiny x86 firmware images generated in code: 64 KiB `-bios` images that the CPU starts executing at the
//! reset vector (offset 0xFFF0, address F000:FFF0 in real mode). The probe uses one that switches to 64-bit long
//! mode with paging and then writes to the `isa-debug-exit` port, so QEMU exits at once with a known status when
//! the accelerator really runs guest code. On nested-virtualization hosts like this one, KVM runs real-mode code
//! but hangs once paging is on, so a real-mode-only probe would wrongly report KVM (measured: the real-mode
//! probe exits under KVM in 0.08 s, the long-mode one hangs). Tests use an image that idles forever, a guest
//! that needs no operating system.

/// The size of a legacy BIOS image.
pub const BIOS_IMAGE_BYTES: usize = 64 * 1024;
/// Where the CPU starts executing inside the image.
const RESET_VECTOR_OFFSET: usize = 0xFFF0;
/// The I/O port of QEMU's `isa-debug-exit` device as the probe configures it.
pub const DEBUG_EXIT_PORT: u8 = 0xf4;

/// The long-mode probe, assembled (GNU as, `.code16`, linked at 0, run with CS base 0xF0000) from:
///
/// ```text
///   cli; xor %ax,%ax; mov %ax,%ds; mov %ax,%es          # flat real-mode data segments
///   mov $0x1000,%di; mov $0x1800,%cx; cld; rep stosw    # zero 12 KiB of RAM for the page tables
///   movl $0x2003,0x1000                                 # PML4[0] -> PDPT at 0x2000
///   movl $0x3003,0x2000                                 # PDPT[0] -> PD at 0x3000
///   movl $0x83,0x3000                                   # PD[0]: one 2 MiB identity page at 0
///   lgdtl %cs:gdt_descriptor                            # the GDT below, linear base 0xF0000 + offset
///   cr4 |= 0x20 (PAE); cr3 = 0x1000
///   EFER (MSR 0xC0000080) |= 0x100 (LME)
///   cr0 |= 0x80000001 (PE, PG)
///   ljmpl $0x08, $(0xF0000 + long_mode)                 # into the 64-bit code segment
/// long_mode: (.code64)
///   mov $VALUE,%al; out %al,$0xf4; 1: hlt; jmp 1b
/// gdt: null, 0x00AF9A000000FFFF (64-bit code), 0x00CF92000000FFFF (data)
/// gdt_descriptor: .word 23; .long 0xF0000 + gdt
/// ```
const LONG_MODE_PROBE: [u8; 142] = [
    0xFA, 0x31, 0xC0, 0x8E, 0xD8, 0x8E, 0xC0, 0xBF, 0x00, 0x10, 0xB9, 0x00, 0x18, 0xFC, 0xF3, 0xAB, 0x66, 0xC7, 0x06,
    0x00, 0x10, 0x03, 0x20, 0x00, 0x00, 0x66, 0xC7, 0x06, 0x00, 0x20, 0x03, 0x30, 0x00, 0x00, 0x66, 0xC7, 0x06, 0x00,
    0x30, 0x83, 0x00, 0x00, 0x00, 0x2E, 0x66, 0x0F, 0x01, 0x16, 0x88, 0x00, 0x0F, 0x20, 0xE0, 0x66, 0x83, 0xC8, 0x20,
    0x0F, 0x22, 0xE0, 0x66, 0xB8, 0x00, 0x10, 0x00, 0x00, 0x0F, 0x22, 0xD8, 0x66, 0xB9, 0x80, 0x00, 0x00, 0xC0, 0x0F,
    0x32, 0x66, 0x0D, 0x00, 0x01, 0x00, 0x00, 0x0F, 0x30, 0x0F, 0x20, 0xC0, 0x66, 0x0D, 0x01, 0x00, 0x00, 0x80, 0x0F,
    0x22, 0xC0, 0x66, 0xEA, 0x69, 0x00, 0x0F, 0x00, 0x08, 0x00, 0xB0, 0x2A, 0xE6, 0xF4, 0xF4, 0xEB, 0xFD, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x9A, 0xAF, 0x00, 0xFF, 0xFF, 0x00, 0x00, 0x00,
    0x92, 0xCF, 0x00, 0x17, 0x00, 0x70, 0x00, 0x0F, 0x00,
];
/// Where the immediate of `mov $VALUE,%al` lies in `LONG_MODE_PROBE`.
const LONG_MODE_PROBE_VALUE_OFFSET: usize = 0x6A;

fn image_with_reset_code(code: &[u8]) -> Vec<u8> {
    let mut image = vec![0xF4u8; BIOS_IMAGE_BYTES];
    image[RESET_VECTOR_OFFSET..RESET_VECTOR_OFFSET + code.len()].copy_from_slice(code);
    image
}

/// A firmware that enters 64-bit long mode with paging and writes `value` to the debug-exit port: QEMU then
/// exits with status `(value << 1) | 1`. The code sits at the start of the image; the reset vector jumps there
/// (`ljmp $0xF000,$0`), where the image is also mapped below 1 MiB.
pub fn debug_exit_bios(value: u8) -> Vec<u8> {
    let mut image = image_with_reset_code(&[0xEA, 0x00, 0x00, 0x00, 0xF0]);
    image[..LONG_MODE_PROBE.len()].copy_from_slice(&LONG_MODE_PROBE);
    image[LONG_MODE_PROBE_VALUE_OFFSET] = value;
    image
}

/// The exit status QEMU reports after `debug_exit_bios(value)` ran.
pub fn debug_exit_status(value: u8) -> i32 {
    (i32::from(value) << 1) | 1
}

/// A firmware that spins forever (`jmp $`): a guest that runs, uses a CPU and ignores ACPI power buttons.
pub fn idle_loop_bios() -> Vec<u8> {
    image_with_reset_code(&[0xEB, 0xFE])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reset_vector_jumps_to_the_probe_code() {
        let image = debug_exit_bios(0x17);
        assert_eq!(image.len(), BIOS_IMAGE_BYTES);
        assert_eq!(&image[0xFFF0..0xFFF5], &[0xEA, 0x00, 0x00, 0x00, 0xF0]);
        assert_eq!(&image[0x69..0x6E], &[0xB0, 0x17, 0xE6, DEBUG_EXIT_PORT, 0xF4]);
        assert_eq!(debug_exit_status(0x2a), 85);
        assert_eq!(&idle_loop_bios()[0xFFF0..0xFFF2], &[0xEB, 0xFE]);
    }
}
