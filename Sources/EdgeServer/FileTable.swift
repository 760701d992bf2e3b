import CEdgeRing
import Glibc
import EdgeIO
import EdgeHTTP

/// An open file of the directory origin, shared by every response that reads it on this worker.
final class FileEntry {
    enum State { case opening, statting, ready, missing }
    let slot: UInt32
    let relativePath: String
    let cPath: UnsafeMutablePointer<CChar>
    let statBuffer: UnsafeMutableRawPointer
    var state: State = .opening
    var fd: Int32 = -1
    var size = 0
    var etag = ""
    var lastModified = ""
    let contentType: String
    var validatedAtMicroseconds: Int64 = 0
    /// Responses reading the descriptor; it is closed only when this drops to zero after retirement.
    var users = 0
    var retired = false
    /// Requests (or bodies) waiting for the open to finish.
    var waiters: [BodyOwner] = []
    var lastUseMicroseconds: Int64 = 0
    /// The file mapped for cleartext bodies to send from: made by the first one (nil until then,
    /// or when it cannot be; `mappingTried` keeps a failed mapping from being tried per body).
    var mapping: FileMapping?
    var mappingTried = false
    /// Until when the whole file is known to be in the page cache (see `DirectorySource.isResident`).
    var residentUntilMicroseconds: Int64 = 0

    init(slot: UInt32, relativePath: String, fullPath: String) {
        self.slot = slot
        self.relativePath = relativePath
        contentType = MediaTypes.type(forPath: relativePath)
        cPath = strdup(fullPath)!
        statBuffer = .allocate(byteCount: edge_statx_size(), alignment: 16)
    }
    deinit { free(cPath); statBuffer.deallocate() }
}

/// The per-worker open-file table of the `file://` origin: one open + statx per file per
/// revalidation period, however many requests read it; negative results are cached the same way.
/// Bounded by `open_files_max`: the least recently used idle entry is closed first.
final class FileTable {
    let root: String
    let ring: Ring
    /// Both reloadable: a lower bound is reached as files are opened (two retired per open).
    var entriesMax: Int
    var revalidateMicroseconds: Int64
    let openKind: UInt8
    let statKind: UInt8
    /// Whether "no such file" is remembered until revalidation. Not for slice files: one that is
    /// missing now (evicted by another worker) may be written again under the same name.
    let cachesMissing: Bool
    private var byPath: [String: UInt32] = [:]
    private(set) var slots: [FileEntry?] = []
    private var freeSlots: [UInt32] = []
    var liveCount = 0

    init(
        root: String, ring: Ring, entriesMax: Int, revalidateMilliseconds: Int, openKind: UInt8 = OpKind.fileOpen,
        statKind: UInt8 = OpKind.fileStat,
        cachesMissing: Bool = true
    ) {
        self.cachesMissing = cachesMissing
        self.openKind = openKind
        self.statKind = statKind
        self.root = root.hasSuffix("/") ? String(root.dropLast()) : root
        self.ring = ring
        self.entriesMax = entriesMax
        revalidateMicroseconds = Int64(revalidateMilliseconds) * 1000
    }

    enum Lookup { case ready(FileEntry), missing, pending(FileEntry) }

    /// Finds (or starts opening) `path`, an already-checked absolute request path.
    func lookup(_ path: String, now: Int64) -> Lookup {
        if let s = byPath[path], let e = slots[Int(s)] {
            if (e.state == .ready || e.state == .missing)
                && (now - e.validatedAtMicroseconds > revalidateMicroseconds || (e.state == .missing && !cachesMissing))
            {
                retire(e)   // stale: open afresh so a replaced file is noticed
            } else {
                e.lastUseMicroseconds = now
                switch e.state {
                case .ready: return .ready(e)
                case .missing: return .missing
                default: return .pending(e)
                }
            }
        }
        if liveCount >= entriesMax { evictOne() }
        if liveCount > entriesMax { evictOne() }   // above a bound a reload lowered
        let slot: UInt32
        if let f = freeSlots.popLast() { slot = f } else { slot = UInt32(slots.count); slots.append(nil) }
        let e = FileEntry(slot: slot, relativePath: path, fullPath: root + path)
        e.lastUseMicroseconds = now
        slots[Int(slot)] = e
        byPath[path] = slot
        liveCount += 1
        ring.openRead(path: e.cPath, UserData(kind: openKind, slot: slot))
        return .pending(e)
    }

    /// Handles the open completion; returns the entry when it has reached a final state.
    func opened(slot: UInt32, result: Int32, now: Int64) -> FileEntry? {
        guard let e = slots[Int(slot)] else { return nil }
        if result < 0 {
            e.state = .missing
            e.validatedAtMicroseconds = now
            return e
        }
        e.fd = result
        e.state = .statting
        ring.statx(fd: result, into: e.statBuffer, UserData(kind: statKind, slot: slot))
        return nil
    }

    func statted(slot: UInt32, result: Int32, now: Int64) -> FileEntry? {
        guard let e = slots[Int(slot)] else { return nil }
        let st = e.statBuffer.assumingMemoryBound(to: statx.self)
        if result < 0 || edge_statx_is_regular(st) == 0 {
            e.state = .missing
            if e.fd >= 0 { ring.close(fd: e.fd, UserData(kind: OpKind.ignore, slot: 0)); e.fd = -1 }
        } else {
            e.state = .ready
            e.size = Int(edge_statx_size_of(st))
            let mtime = Int(edge_statx_mtime_seconds(st))
            e.etag = "\"\(String(mtime, radix: 16))-\(String(e.size, radix: 16))\""
            e.lastModified = HTTPDate.format(unixSeconds: mtime)
        }
        e.validatedAtMicroseconds = now
        if e.retired { release(e) }
        return e
    }

    /// An open or statx of this table completed: the entry and its waiters (handed over) once it
    /// has settled as ready or missing.
    func completed(_ op: UInt8, slot: UInt32, result: Int32, now: Int64) -> (entry: FileEntry, waiters: [BodyOwner])? {
        let settled =
            op == openKind
            ? opened(slot: slot, result: result, now: now) : statted(slot: slot, result: result, now: now)
        guard let e = settled else { return nil }
        let waiters = e.waiters
        e.waiters = []
        return (e, waiters)
    }

    func acquire(_ e: FileEntry) { e.users += 1 }

    func release(_ e: FileEntry) {
        if e.users > 0 { e.users -= 1 }
        if e.retired && e.users == 0 && e.waiters.isEmpty && (e.state == .ready || e.state == .missing) { destroy(e) }
    }

    private func retire(_ e: FileEntry) {
        guard !e.retired else { return }
        e.retired = true
        if byPath[e.relativePath] == e.slot { byPath[e.relativePath] = nil }
        liveCount -= 1
        assert(liveCount >= 0, "more file entries retired than opened")
        if e.users == 0 && e.waiters.isEmpty && (e.state == .ready || e.state == .missing) { destroy(e) }
    }

    private func destroy(_ e: FileEntry) {
        if e.fd >= 0 { ring.close(fd: e.fd, UserData(kind: OpKind.ignore, slot: 0)); e.fd = -1 }
        slots[Int(e.slot)] = nil
        freeSlots.append(e.slot)
    }

    private func evictOne() {
        var victim: FileEntry? = nil
        for case let e? in slots
        where !e.retired && e.users == 0 && e.waiters.isEmpty && (e.state == .ready || e.state == .missing) {
            if victim == nil || e.lastUseMicroseconds < victim!.lastUseMicroseconds { victim = e }
        }
        if let victim { retire(victim) }
    }

    func closeAll() {
        for case let e? in slots where e.fd >= 0 {
            ring.close(fd: e.fd, UserData(kind: OpKind.ignore, slot: 0)); e.fd = -1
        }
    }
}
