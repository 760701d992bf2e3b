import CEdgeRing

/// A read-only shared mapping of a whole file. A cleartext response sends a file's bytes from it
/// with no read into a buffer: the kernel copies them from the page cache straight into the
/// socket, one copy where a read and a send make two.
///
/// Only the kernel may touch these bytes. A file truncated under its mapping makes a user-space
/// access raise SIGBUS (the process dies), while the kernel's copy in a send fails with EFAULT
/// (the connection is closed, the response cut). So TLS, which seals the bytes in user space,
/// reads files into buffers, and a piece from a mapping is always sent gathered, never copied.
///
/// Before bytes are sent from it, `isResident` asks whether their pages are in the page cache
/// (`mincore`: no I/O): a page that is not would be read from disk by the send's page fault, on
/// the worker. Those ranges are read through the ring instead. (A page evicted between the check
/// and the send is faulted in by the send itself: the window is one loop turn.)
public final class FileMapping {
    public let base: UnsafeRawPointer
    public let length: Int
    /// The simulated kernel that made it (its bytes are a copy), or nil for a real mapping.
    private let simulated: SimulatedIO?

    fileprivate init(base: UnsafeRawPointer, length: Int, simulated: SimulatedIO?) {
        self.base = base
        self.length = length
        self.simulated = simulated
    }

    deinit {
        if let simulated {
            simulated.unmapped(base)
        } else {
            edge_unmap_file(UnsafeMutableRawPointer(mutating: base), length)
        }
    }

    /// Whether every page under `offset..<offset+count` is in the page cache now.
    public func isResident(_ offset: Int, _ count: Int) -> Bool {
        precondition(offset >= 0 && count >= 0 && offset <= length - count, "a range outside the mapping")
        if let simulated { return simulated.pagesResident() }
        return edge_pages_resident(base, offset, count) != 0
    }
}

extension Ring {
    /// Maps the first `length` bytes of the open file `fd` read-only, or nil when it cannot be
    /// (then the file is read). A system call, but no I/O: pages come in as they are sent.
    public func mapFile(fd: Int32, length: Int) -> FileMapping? {
        guard length > 0 else { return nil }
        switch backend {
        case .kernel:
            guard let p = edge_map_file(fd, length) else { return nil }
            return FileMapping(base: UnsafeRawPointer(p), length: length, simulated: nil)
        case .simulated(let sim):
            guard let p = sim.mapFile(fd: fd, length: length) else { return nil }
            return FileMapping(base: p, length: length, simulated: sim)
        }
    }
}
