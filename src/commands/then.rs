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
