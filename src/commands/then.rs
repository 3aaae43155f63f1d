//! What follows a build in this process: the one type the build's paths (normal, no-op,
//! edit) and its conclusion share, apart from them so that none imports another for it.

/// What follows a build in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// The process exits: its large trees are left to the kernel rather than freed node
    /// by node (for 10,000 nodes, the workflow's trees cost a no-op about a fifth of its
    /// time, the results kept for repair about a twelfth of a cold build's).
    Exit,
    /// Another build follows (`--watch`): everything is freed.
    Continue,
}

impl Then {
    /// Let go of what a build held: left to the kernel when the process ends next (its
    /// large trees and mapped records cost time to free or unmap piece by piece: the
    /// no-op record's mapping, unmapped while the build's other threads lived, cost an
    /// edit of 10,000 nodes 1.6 ms), freed when another build follows.
    pub fn leave<T>(self, held: T) {
        match self {
            Then::Exit => std::mem::forget(held),
            Then::Continue => drop(held),
        }
    }
}
