//! CPU share for QEMU guests, as the host's scheduler offers it.
//!
//! A share is a relative weight: 100 is normal, 200 asks for twice the CPU time of a normal guest when the
//! host is busy, 50 for half (z/VM's relative SHARE has the same meaning). On Linux that is the CFS weight,
//! which the driver sets through the nice value of every thread of the QEMU process (`setpriority` applies to
//! one thread, and the vCPU threads are the ones that matter). Each nice step changes the weight by about 1.25
//! times, so the share maps to `nice = round(-log_1.25(share / 100))`, clamped to -20..=19: share 100 is nice
//! 0, 200 is nice -3 (weight x1.95), 50 is nice 3, 1000 is nice -10, 10 is nice 10. Raising a weight above
//! normal (negative nice) needs root or `CAP_SYS_NICE`.
//!
//! A cgroup v2 `cpu.weight` would express the same weight exactly and for all threads at once, but it needs a
//! delegated cgroup v2 subtree with the `cpu` controller; this machine has cgroup v1 only, so it is not used.
//! The applied value is read back from the main thread's nice value.

use crate::error::{HypervisorError, Result};

/// The nice value for a share.
pub fn nice_for_share(share: u32) -> i32 {
    let share = f64::from(share.max(1));
    let nice = -(share / 100.0).ln() / 1.25f64.ln();
    (nice.round() as i32).clamp(-20, 19)
}

/// The share a nice value stands for (the inverse of `nice_for_share`, rounded).
pub fn share_for_nice(nice: i32) -> u32 {
    (100.0 * 1.25f64.powi(-nice)).round() as u32
}

/// Applies `share` to every thread of process `pid`.
pub fn apply_share(guest: &str, pid: u32, share: u32) -> Result<()> {
    let nice = nice_for_share(share);
    let error = |source| HypervisorError::CpuShare { guest: guest.to_owned(), pid, source };
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).map_err(error)?;
    for task in tasks.flatten() {
        let Some(thread_id) = task.file_name().to_str().and_then(|name| name.parse::<libc::id_t>().ok()) else {
            continue;
        };
        // SAFETY: setpriority has no memory-safety preconditions.
        let status = unsafe { libc::setpriority(libc::PRIO_PROCESS, thread_id, nice) };
        if status != 0 {
            let source = std::io::Error::last_os_error();
            // A thread that exited in the meantime is not an error.
            if source.raw_os_error() != Some(libc::ESRCH) {
                return Err(error(source));
            }
        }
    }
    tracing::debug!(guest, pid, share, nice, "applied CPU share");
    Ok(())
}

/// The share currently applied to process `pid` (from its main thread's nice value).
pub fn current_share(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // After the command name: state, ppid, pgrp, session, tty_nr, tpgid, flags, minflt, cminflt, majflt,
    // cmajflt, utime, stime, cutime, cstime, priority, nice (the 17th field after the name).
    let nice: i32 = rest.split_whitespace().nth(16)?.parse().ok()?;
    Some(share_for_nice(nice))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_map_to_nice_values() {
        assert_eq!(nice_for_share(100), 0);
        assert_eq!(nice_for_share(200), -3);
        assert_eq!(nice_for_share(50), 3);
        assert_eq!(nice_for_share(1000), -10);
        assert_eq!(nice_for_share(10), 10);
        assert_eq!(nice_for_share(1), 19);
        assert_eq!(nice_for_share(10_000), -20);
        assert_eq!(share_for_nice(0), 100);
        assert_eq!(nice_for_share(share_for_nice(-3)), -3);
    }

    #[test]
    fn this_process_has_a_share() {
        assert!(current_share(std::process::id()).is_some());
    }
}
