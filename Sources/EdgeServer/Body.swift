import EdgeHTTP
import EdgeIO

/// The body of one response, pulled by its protocol front end as the peer can take it. Segments
/// are in-memory bytes (multipart part headers, short texts), ranges of an origin-directory file,
/// or ranges of a cached object (served slice by slice). Ready bytes are either in the stream's
/// own buffer (filled by a file read through the ring) or *borrowed* from a slice buffer: bytes
/// the RAM tier or a fill in progress already holds are sent from there without a copy. At most
/// one read is in flight, and a new one starts only when the front end has taken the previous
/// bytes — a slow reader never makes the server buffer more than one chunk per stream.
final class BodyStream {
    /// `.content` ranges are of the directory-origin file (`file`) or of the cached object
    /// (`objectPath`): one or the other per body.
    typealias Segment = BodySegment

    /// The origin-directory file (for `.file` segments).
    let file: FileEntry?
    /// The cached object (for `.object` segments): its path and the ETag the response announced.
    let objectPath: String?
    let objectETag: String
    let segments: [Segment]
    // `@exclusivity(unchecked)`: see "Exclusivity checks" in docs/ARCHITECTURE.md (scalars of a
    // one-thread object; collections keep their checks).
    @exclusivity(unchecked) private(set) var index = 0
    @exclusivity(unchecked) private(set) var offsetInSegment = 0
    let owner: BodyOwner
    let bufferCapacity: Int
    /// The buffer reads and copied segments go into; output pieces may still send from it.
    private(set) var ownBuffer: ReadBuffer?
    @exclusivity(unchecked) private var readyPointer: UnsafeRawPointer?
    @exclusivity(unchecked) private var readyCount = 0
    /// Keeps a borrowed slice buffer alive while its bytes are referenced.
    private var borrowedFrom: AnyObject?
    @exclusivity(unchecked) var readInFlight = false
    @exclusivity(unchecked) var pendingReadLength = 0
    @exclusivity(unchecked) var cancelled = false
    @exclusivity(unchecked) var failed = false
    @exclusivity(unchecked) var fileReleased = false
    @exclusivity(unchecked) var parked = false
    /// Whether file ranges may be sent from the file's mapping (cleartext only: see `FileMapping`).
    @exclusivity(unchecked) var sendsFromMappings = false
    /// Bytes not yet handed to the protocol (ready ones included).
    @exclusivity(unchecked) private(set) var remaining: Int
    // Cached-object cursor: the slice being read and where its bytes come from.
    @exclusivity(unchecked) var sliceIndex = -1
    /// Lookups of the current slice index in a row (bounded: see `Worker.sliceLookupsMax`).
    @exclusivity(unchecked) var sliceLookups = 0
    var sliceSource: SliceSource?
    var diskEntry: FileEntry?
    /// Whether every slice so far came from the cache (for Cache-Status on the log).
    @exclusivity(unchecked) var servedFromCache = true

    enum SliceSource {
        case memory(SliceBuffer, length: Int)
        case fill(Fill)
        case disk(DiskSlice)
    }

    init(
        file: FileEntry?, objectPath: String? = nil, objectETag: String = "", segments: [Segment], owner: BodyOwner,
        bufferCapacity: Int
    ) {
        precondition(file == nil || objectPath == nil, "a body reads a file or a cached object, not both")
        self.file = file
        self.objectPath = objectPath
        self.objectETag = objectETag
        self.segments = segments
        self.owner = owner
        self.bufferCapacity = bufferCapacity
        var total = 0
        for s in segments {
            switch s {
            case .bytes(let b): total += b.count
            case .content(_, let l): total += l
            }
        }
        remaining = total
    }

    var buffered: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: readyPointer, count: readyCount) }
    /// Whether the ready bytes belong to another object (a slice or a file mapping), not the own buffer.
    var readyIsBorrowed: Bool { borrowedFrom != nil }
    var isComplete: Bool { remaining == 0 }
    var currentSegment: Segment? { index < segments.count ? segments[index] : nil }
    var segmentRemaining: Int {
        switch segments[index] {
        case .bytes(let b): return b.count - offsetInSegment
        case .content(_, let l): return l - offsetInSegment
        }
    }
    /// The offset in the representation (file or cached object) the next produced byte comes from.
    var contentOffset: Int {
        if case .content(let o, _) = segments[index] { return o + offsetInSegment }
        return 0
    }

    func consume(_ n: Int) {
        readyPointer = readyPointer.map { $0 + n }
        readyCount -= n
        remaining -= n
        if readyCount == 0 { readyPointer = nil; borrowedFrom = nil }
    }

    private func produced(_ n: Int) {
        offsetInSegment += n
        if offsetInSegment == segmentLength(index) { index += 1; offsetInSegment = 0 }
    }
    private func segmentLength(_ i: Int) -> Int {
        switch segments[i] {
        case .bytes(let b): return b.count
        case .content(_, let l): return l
        }
    }

    /// Copies in-memory segments into the own buffer; true when it produced bytes.
    func copyBytesSegments(pool: BufferPool) -> Bool {
        guard readyCount == 0, index < segments.count, case .bytes = segments[index] else { return false }
        let buf = takeOwnBuffer(pool)
        var n = 0
        while index < segments.count, case .bytes(let b) = segments[index], n < bufferCapacity {
            let k = min(b.count - offsetInSegment, bufferCapacity - n)
            b.withUnsafeBytes { (buf + n).copyMemory(from: $0.baseAddress! + offsetInSegment, byteCount: k) }
            n += k
            produced(k)
        }
        readyPointer = UnsafeRawPointer(buf)
        readyCount = n
        borrowedFrom = nil
        return n > 0
    }

    /// The buffer to fill next: the own one, or a fresh one while the output still sends from it
    /// (bytes under a send must not change).
    func takeOwnBuffer(_ pool: BufferPool) -> UnsafeMutableRawPointer {
        if let b = ownBuffer, b.isShared { b.release(); ownBuffer = nil }
        if ownBuffer == nil { ownBuffer = pool.take() }
        return ownBuffer!.bytes
    }

    /// The first `n` ready bytes, consumed, and what keeps them valid until they are sent: the
    /// slice they are borrowed from, or the own buffer with one more user for them.
    func lend(_ n: Int) -> (bytes: UnsafeRawBufferPointer, keepAlive: AnyObject?, lent: ReadBuffer?) {
        let bytes = UnsafeRawBufferPointer(start: readyPointer, count: n)
        let keepAlive = borrowedFrom
        var lent: ReadBuffer? = nil
        if keepAlive == nil, let b = ownBuffer {
            b.share()
            lent = b
        }
        consume(n)
        return (bytes, keepAlive, lent)
    }

    /// Marks `length` bytes, read into the own buffer, as ready.
    func readCompleted(_ result: Int32) {
        readInFlight = false
        guard result == Int32(pendingReadLength), result > 0 else { failed = true; return }
        readyPointer = UnsafeRawPointer(ownBuffer!.bytes)
        readyCount = Int(result)
        produced(Int(result))
    }

    /// Makes bytes that another object owns ready without copying them.
    func borrow(_ pointer: UnsafeRawPointer, _ count: Int, owner: AnyObject) {
        readyPointer = pointer
        readyCount = count
        borrowedFrom = owner
        produced(count)
    }

    /// Makes a range of a file mapping ready (see `FileMapping` for who may read it): borrowed
    /// bytes are always gathered into the send, never copied (`Connection.writeBody`).
    func borrowMapped(_ pointer: UnsafeRawPointer, _ count: Int, owner: FileMapping) {
        precondition(sendsFromMappings, "mapped bytes for a body whose bytes user space reads (TLS)")
        borrow(pointer, count, owner: owner)
    }

    func releaseBuffer() {
        if let b = ownBuffer, !readInFlight { b.release(); ownBuffer = nil }
    }
}
