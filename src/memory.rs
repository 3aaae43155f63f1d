//! How pflow's memory comes from the kernel and goes back: transparent huge pages, on or
//! off for the process, a big buffer's pages faulted in at once ([`prefault`]), and
//! what a build is done with freed on a thread of its own ([`free_later`]).
//!
//! The allocator asks for huge pages, and each first touch of a 2 MiB region then zeroes
//! all of it. That pays off when a build fills its memory (a cold build or an edit near
//! the start of 10,000 nodes ran about 15% faster with them), and costs where a process
//! touches a little of many regions: a no-op of 10,000 nodes held 22 MiB with them and
//! 12 MiB without, at the same speed, an edit near the end 35 MiB and 25 MiB (as fast or
//! faster without), and 100 batch workers' heaps held 190 MB with them and about 40 MB
//! without. So the process begins with small pages (set in `main.rs` before the first
//! allocation: the first huge page alone, zeroed for a few KB, was a tenth of a
//! `--version` and 1.5 ms of a 10,000-node no-op), a build that goes the normal way turns
//! huge pages on, and every command other than `build` runs with them as before. The
//! flag is the process's (Linux's `PR_SET_THP_DISABLE`):
//! memory already in use keeps its pages, and commands started while it is off inherit
//! it (which changes their speed, never what they do). A process started with them off
//! (its parent's choice, or the allocator's `MIMALLOC_ALLOW_THP=0`) keeps them off.

use std::sync::atomic::{AtomicBool, Ordering};

/// Huge pages were off when the process started.
static STARTED_OFF: AtomicBool = AtomicBool::new(false);

/// Small pages from now on, as the process's first act (before its first allocation,
/// see `main.rs`: two system calls, nothing of the standard library), remembering
/// whether the process was started with them off.
pub fn small_pages_first() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_GET_THP_DISABLE reads an integer flag of the process and touches
        // no memory of ours.
        let off = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) } == 1;
        STARTED_OFF.store(off, Ordering::Relaxed);
        huge_pages(false);
    }
}

/// Are huge pages never to be turned on: the process was started with them off, or the
/// allocator was told not to use them (which it would do with this same flag, at its
/// start, had it not been set already)?
fn never() -> bool {
    static TOLD_OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    STARTED_OFF.load(Ordering::Relaxed)
        || *TOLD_OFF.get_or_init(|| {
            std::env::var("MIMALLOC_ALLOW_THP").is_ok_and(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "0" | "false" | "off" | "no"
                )
            })
        })
}

/// Turn huge pages off (`false`) or back on for what the process touches from now on
/// (unless the process was started with them off, or the allocator told not to use them).
pub fn huge_pages(on: bool) {
    if on && never() {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes an integer flag and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, libc::c_ulong::from(!on), 0, 0, 0);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = on;
}

/// Fault in the pages of `v`'s spare capacity now, in one call, rather than one fault
/// per page as they are first written. On the 2-core VM the benchmarks run on, a page
/// fault costs a few microseconds: the 2.4 MB of a 10,000-node build's reports was
/// 600 of them. Nothing is written; a kernel without `MADV_POPULATE_WRITE` (before
/// Linux 5.14) refuses it and the pages fault in as before.
pub fn prefault<T>(v: &mut Vec<T>) {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let spare = v.spare_capacity_mut();
        let start = spare.as_mut_ptr() as usize;
        let end = start + std::mem::size_of_val(spare);
        // Whole pages only: the first and last may hold other allocations' bytes.
        let (from, to) = (start.next_multiple_of(PAGE), end / PAGE * PAGE);
        if to > from {
            // SAFETY: the range lies inside `v`'s own allocation; MADV_POPULATE_WRITE
            // only maps its pages in (as a write would), changing no byte.
            unsafe {
                libc::madvise(
                    from as *mut libc::c_void,
                    to - from,
                    libc::MADV_POPULATE_WRITE,
                );
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}

/// Drop `value` on a thread of its own: what a build is done with, but which takes
/// milliseconds to free (tables of many records, their mapped files), freed while the
/// build writes its records and report instead of before. A process that ends first
/// (`_exit`) leaves the rest to the kernel; nothing here is more than memory.
pub fn free_later<T: Send + 'static>(value: T) {
    // A thread that cannot start drops its closure, and `value` with it, here.
    let _ = spawn_light(c"pflow-free", move || drop(value));
}

/// Start a thread named `name` (at most 15 bytes) for the system (`ps`, `top -H`,
/// `perf`) but not for the standard library, which copies a name it knows to the heap
/// as the thread starts. That copy was the only allocation of the threads that free
/// and remove what a build is done with, and a thread's first allocation takes an
/// allocator segment of its own, whose first touch zeroes a 2 MiB huge page once the
/// build has turned them on: 0.35 to 3.5 ms of kernel time each on the benchmark VM,
/// for a few bytes. An edit at node 0 of the 10,000-node chain faulted one more huge
/// page than a cold build, all of it this.
pub fn spawn_light<T, F>(
    name: &'static std::ffi::CStr,
    f: F,
) -> std::io::Result<std::thread::JoinHandle<T>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    std::thread::Builder::new().spawn(move || {
        #[cfg(target_os = "linux")]
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes (a
        // longer one is cut) from a pointer that lives as long as the program.
        unsafe {
            libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = name;
        f()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn what_is_freed_later_is_freed() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        struct Tell(std::sync::mpsc::Sender<()>);
        impl Drop for Tell {
            fn drop(&mut self) {
                let _ = self.0.send(());
            }
        }
        super::free_later(Tell(tx));
        assert!(rx.recv_timeout(std::time::Duration::from_secs(10)).is_ok());
    }

    #[test]
    fn a_light_thread_runs_under_its_name_for_the_system_only() {
        let seen = super::spawn_light(c"pflow-test", || {
            let system = std::fs::read_to_string("/proc/thread-self/comm").ok();
            (system, std::thread::current().name().map(str::to_owned))
        })
        .map(|t| t.join());
        let Ok(Ok((system, std_name))) = seen else {
            panic!("the thread did not start or did not finish");
        };
        if cfg!(target_os = "linux") {
            assert_eq!(system.as_deref(), Some("pflow-test\n"));
        }
        assert_eq!(std_name, None);
    }

    #[test]
    fn prefaulting_changes_no_element_and_the_vec_fills_as_before() {
        let mut v: Vec<u64> = (0..1000).collect();
        v.reserve(1 << 20);
        super::prefault(&mut v);
        assert!(v.iter().copied().eq(0..1000));
        v.extend(1000..(1 << 20));
        assert!(v.iter().copied().eq(0..(1 << 20)));
        let mut empty: Vec<u8> = Vec::new();
        super::prefault(&mut empty);
        assert!(empty.is_empty());
    }
}
