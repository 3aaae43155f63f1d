//! How pflow's memory comes from the kernel: transparent huge pages, on or off for the
//! process.
//!
//! The allocator asks for huge pages, and each first touch of a 2 MiB region then zeroes
//! all of it. That pays off when a build fills its memory (a cold build or an edit near
//! the start of 10,000 nodes ran about 15% faster with them), and costs where a process
//! touches a little of many regions: a no-op of 10,000 nodes held 22 MiB with them and
//! 12 MiB without, at the same speed, an edit near the end 35 MiB and 25 MiB (as fast or
//! faster without), and 100 batch workers' heaps held 190 MB with them and about 40 MB
//! without. The flag is the process's (Linux's `PR_SET_THP_DISABLE`):
//! memory already in use keeps its pages, and commands started while it is off inherit
//! it (which changes their speed, never what they do).

/// Turn huge pages off (`false`) or back on for what the process touches from now on.
pub fn huge_pages(on: bool) {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes an integer flag and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, libc::c_ulong::from(!on), 0, 0, 0);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = on;
}
