import EdgeHTTP

/// The body of one response, pulled by its protocol front end as the peer can take it: a list of
/// in-memory and file segments (multipart part headers are in-memory segments), read through the
/// ring in `readChunkBytes` pieces into one buffer. At most one read is in flight per body, and a
/// new read starts only when the protocol has taken the previous bytes — so a slow reader never
/// makes the server buffer more than one chunk per stream.
final class BodyStream {
    enum Segment { case bytes([UInt8]); case file(offset: Int, length: Int) }

    let file: FileEntry?
    private var segments: [Segment]
    private var index = 0
    private var offsetInSegment = 0
    let owner: FileEntry.Waiter
    private(set) var buffer: UnsafeMutableRawPointer?
    let bufferCapacity: Int
    private(set) var start = 0
    private(set) var end = 0
    var readInFlight = false
    var cancelled = false
    var failed = false
    var fileReleased = false
    /// Bytes not yet handed to the protocol (buffered ones included).
    private(set) var remaining: Int

    init(file: FileEntry?, segments: [Segment], owner: FileEntry.Waiter, bufferCapacity: Int) {
        self.file = file
        self.segments = segments
        self.owner = owner
        self.bufferCapacity = bufferCapacity
        var total = 0
        for s in segments {
            switch s {
            case .bytes(let b): total += b.count
            case .file(_, let l): total += l
            }
        }
        remaining = total
    }

    var buffered: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: buffer.map { $0 + start }, count: end - start) }
    var isComplete: Bool { remaining == 0 }

    func consume(_ n: Int) {
        start += n; remaining -= n
        if start == end { start = 0; end = 0 }
    }

    /// Copies in-memory segments into the buffer; returns the file read to start next, if any.
    func prepare(pool: BufferPool) -> (offset: Int, length: Int, into: UnsafeMutableRawPointer)? {
        guard !readInFlight, !failed, start == end, index < segments.count else { return nil }
        if buffer == nil { buffer = pool.take() }
        let buf = buffer!
        while index < segments.count && end < bufferCapacity {
            switch segments[index] {
            case .bytes(let b):
                let n = min(b.count - offsetInSegment, bufferCapacity - end)
                b.withUnsafeBytes { (buf + end).copyMemory(from: $0.baseAddress! + offsetInSegment, byteCount: n) }
                end += n; offsetInSegment += n
                if offsetInSegment == b.count { index += 1; offsetInSegment = 0 }
            case .file(let offset, let length):
                if end > 0 { return nil }   // hand over the in-memory bytes first
                let n = min(length - offsetInSegment, bufferCapacity)
                readInFlight = true
                return (offset + offsetInSegment, n, buf)
            }
        }
        return nil
    }

    /// A read finished with `result` bytes (or -errno). A short or failed read of an immutable file
    /// means it changed under us: the response is failed, never padded or spliced.
    func readCompleted(_ result: Int32, requested: Int) {
        readInFlight = false
        guard result == Int32(requested) else { failed = true; return }
        end = Int(result)
        offsetInSegment += Int(result)
        if case .file(_, let length) = segments[index], offsetInSegment == length { index += 1; offsetInSegment = 0 }
    }

    func releaseBuffer(to pool: BufferPool) {
        if let b = buffer, !readInFlight { pool.give(b); buffer = nil }
    }
}
