import EdgeIO
import EdgeHTTP
import EdgeConfig

/// Content from a directory of files (a `file://` origin): an open-file table shared by every
/// response on the worker, and bodies read through the ring, one chunk at a time.
final class DirectorySource {
    let files: FileTable
    let reads: BodyReads
    private(set) var limits: LimitsConfig
    /// The worker, set once it exists. It owns this source and outlives it; `unowned(unsafe)`,
    /// not `weak`: a weak reference gave the worker a side table, and every retain and release
    /// of it took the runtime's slow path (4 % of a 4 KiB hit's CPU).
    unowned(unsafe) var delivery: (any ContentDelivery)?
    /// Requests refused at `waiting_per_worker_max` (reported by the worker's tick).
    private(set) var waitRefusals = 0
    private var boundaryCounter: UInt64

    init(root: String, ring: Ring, reads: BodyReads, limits: LimitsConfig, boundarySeed: UInt64) {
        files = FileTable(
            root: root, ring: ring, entriesMax: limits.openFilesMax,
            revalidateMilliseconds: limits.openFileRevalidateMilliseconds)
        self.reads = reads
        self.limits = limits
        boundaryCounter = boundarySeed
    }

    /// A reload's limits, for what starts next.
    func configure(_ limits: LimitsConfig) {
        self.limits = limits
        files.entriesMax = limits.openFilesMax
        files.revalidateMicroseconds = Int64(limits.openFileRevalidateMilliseconds) * 1000
    }

    /// Answers a routed request for `ex.canonicalPath` at once, or later when its file is open.
    func answer(_ c: Connection, _ ex: Exchange, now: Int64) -> ContentAnswer {
        switch files.lookup(ex.canonicalPath ?? "", now: now) {
        case .ready(let e):
            return response(c, ex, e)
        case .missing:
            return .text(status: 404, text: "not found\n", headers: [])
        case .pending(let e):
            guard e.waiters.count < limits.waitingPerWorkerMax else { waitRefusals += 1; return busy }
            e.waiters.append(BodyOwner(connectionSlot: c.slot, generation: c.generation, streamID: ex.streamID))
            return .waiting
        }
    }

    var busy: ContentAnswer { .text(status: 503, text: "busy\n", headers: [HeaderField("retry-after", "1")]) }

    /// An open (or its statx) finished: answers everything that waited for it.
    func opened(_ op: UInt8, slot: UInt32, result: Int32, now: Int64) {
        guard let (e, waiters) = files.completed(op, slot: slot, result: result, now: now) else { return }
        for w in waiters {
            guard let (c, ex) = delivery?.waitingExchange(w) else { continue }
            let answer: ContentAnswer =
                e.state == .ready ? response(c, ex, e) : .text(status: 404, text: "not found\n", headers: [])
            delivery?.deliver(c, ex, answer)
        }
        if e.retired { files.release(e) }
    }

    private func response(_ c: Connection, _ ex: Exchange, _ e: FileEntry) -> ContentAnswer {
        boundaryCounter &+= 0x9E37_79B9_7F4A_7C15
        let plan = ResponsePlan(
            request: ex.request, size: e.size, etag: e.etag,
            lastModified: e.lastModified, contentType: e.contentType, rangesMax: limits.rangesMax,
            boundarySeed: boundaryCounter, cacheControl: ex.cacheControl)
        ex.rangeText = plan.rangeText
        var body: BodyStream? = nil
        if !ex.isHead && !plan.segments.isEmpty {
            files.acquire(e)
            body = BodyStream(
                file: e, segments: plan.segments,
                owner: BodyOwner(connectionSlot: c.slot, generation: c.generation, streamID: ex.streamID),
                bufferCapacity: limits.readChunkBytes)
            body!.sendsFromMappings = c.tls == nil
        }
        return .respond(plan, body: body)
    }

    /// Makes the next chunk of a body's current file range ready: on cleartext, borrowed from the
    /// file's mapping when its pages are in the page cache (no read, no copy of ours: see
    /// `FileMapping`); otherwise read through the ring into the body's buffer.
    func refill(_ body: BodyStream, now: Int64) {
        guard let file = body.file else { body.failed = true; return }
        let offset = body.contentOffset
        let length = min(body.segmentRemaining, body.bufferCapacity)
        if body.sendsFromMappings && file.size <= limits.mappedFileBytesMax {
            if !file.mappingTried {
                file.mappingTried = true
                file.mapping = files.ring.mapFile(fd: file.fd, length: file.size)
            }
            // The segment lies inside the size the plan was made from, the mapping's length.
            if let m = file.mapping, isResident(file, m, offset, length, now: now) {
                body.borrowMapped(m.base + offset, length, owner: m)
                return
            }
        }
        reads.start(body, fd: file.fd, offset: offset, length: length)
    }

    /// Files up to this size are checked for residency whole, and the answer kept for
    /// `page_cache_check_milliseconds`: one `mincore` then serves every chunk of a hot file
    /// (it was one system call per chunk, about 5 % of a 4 KiB range's CPU). Larger files are
    /// checked chunk by chunk.
    static let wholeFileResidencyBytesMax = 1 << 20

    /// Whether the chunk's pages are in the page cache: known for a small file checked whole
    /// within the last `page_cache_check_milliseconds`, else asked of the kernel.
    private func isResident(_ file: FileEntry, _ m: FileMapping, _ offset: Int, _ length: Int, now: Int64) -> Bool {
        if now < file.residentUntilMicroseconds { return true }
        guard file.size <= Self.wholeFileResidencyBytesMax, limits.pageCacheCheckMilliseconds > 0 else {
            return m.isResident(offset, length)
        }
        guard m.isResident(0, m.length) else { return m.isResident(offset, length) }
        file.residentUntilMicroseconds = now + Int64(limits.pageCacheCheckMilliseconds) * 1000
        return true
    }

    /// Drops the body's reference to its file (exactly once).
    func release(_ body: BodyStream) {
        if let f = body.file { files.release(f) }
    }
}
