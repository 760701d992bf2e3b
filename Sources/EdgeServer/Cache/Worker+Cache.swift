import Synchronization
import CEdgeRing
import Glibc
import EdgeIO
import EdgeHTTP
import EdgeCrypto

/// Each worker's ring, for cross-worker wake-ups (IORING_OP_MSG_RING), and a flag per worker so
/// that many progress events coalesce into one wake-up.
final class WorkerDirectory: @unchecked Sendable {
    final class Entry: @unchecked Sendable {
        let ringFD = Atomic<Int32>(-1)
        let wakePending = Atomic<Bool>(false)
    }
    let entries: [Entry]
    init(workers: Int) { entries = (0..<workers).map { _ in Entry() } }
    func register(worker: Int, ringFD: Int32) { entries[worker].ringFD.store(ringFD, ordering: .releasing) }
}

/// A request or body waiting on a fill in progress.
struct Parked {
    var connectionSlot: UInt32
    var generation: UInt32
    var streamID: Int32
    var fill: Fill
    /// nil: the response head waits for the object's metadata; else this body waits for bytes.
    var body: BodyStream?
}

/// A slice on its way to disk: tmp file → header → data → fsync → close → rename.
final class DiskWrite {
    enum Step { case open, header, data, sync, close, rename }
    let key: SliceKey
    let fill: Fill
    let header: [UInt8]
    let tmpPath: UnsafeMutablePointer<CChar>
    let finalPath: UnsafeMutablePointer<CChar>
    let relativePath: String
    var fd: Int32 = -1
    var step = Step.open
    var written = 0
    init(key: SliceKey, fill: Fill, header: [UInt8], tmpPath: String, finalPath: String, relativePath: String) {
        self.key = key; self.fill = fill; self.header = header
        self.tmpPath = strdup(tmpPath)!; self.finalPath = strdup(finalPath)!
        self.relativePath = relativePath
    }
    deinit { free(tmpPath); free(finalPath) }
}

extension Worker {
    var sliceBytes: Int { store!.sliceBytes }

    // MARK: requests

    /// The cached path of a GET/HEAD: answer from the object's metadata when known; otherwise
    /// fetch (or join the fetch of) the slice holding the first requested byte, and answer when
    /// its head arrives — a miss's time to first byte is the origin's.
    func handleCached(_ c: Connection, _ ex: Exchange, _ path: String) {
        if let meta = store!.meta(path) { respondCached(c, ex, path, meta, fetched: false); return }
        // The slice holding the first byte asked for, read by the same range parser a hit uses. A
        // suffix range needs the size first, and a first byte past any object we would accept is
        // answered from the size too: both fetch slice 0.
        var first = 0
        if let r = ex.request.header("range"), let f = RangeEvaluator.firstByteBeforeLength(r, maxRanges: limits.rangesMax),
           f < store!.objectBytesMax {
            first = f
        }
        guard canWait() else { return respondBusy(c, ex) }
        let key = SliceKey(path: path, index: first / sliceBytes)
        switch store!.lookup(key, worker: index) {
        case .filling(let f):
            park(Parked(connectionSlot: c.slot, generation: c.generation, streamID: ex.streamID, fill: f, body: nil))
        case .startFill(let f):
            origin!.fetch(f)
            park(Parked(connectionSlot: c.slot, generation: c.generation, streamID: ex.streamID, fill: f, body: nil))
        case .overloaded:
            respondBusy(c, ex)
        case .ram, .disk:
            // Slices without metadata: only after a purge raced this request. Treat as a miss next time.
            respondBusy(c, ex)
        }
    }

    func respondBusy(_ c: Connection, _ ex: Exchange) {
        respondSimple(c, ex, status: 503, body: "busy\n", extraHeaders: [HeaderField("retry-after", "1")])
    }

    /// Whether one more request or body may wait on this worker (`waiting_per_worker_max`).
    func canWait() -> Bool {
        if parked.count < limits.waitingPerWorkerMax { return true }
        waitRefusals += 1
        return false
    }

    func respondCached(_ c: Connection, _ ex: Exchange, _ path: String, _ meta: ObjectMeta, fetched: Bool) {
        boundaryCounter &+= 0x9E37_79B9_7F4A_7C15
        var r = ResponsePlan.build(request: ex.request, path: path, size: meta.size, etag: meta.etag, lastModified: meta.lastModified,
                                   contentType: meta.contentType, rangesMax: limits.rangesMax, boundarySeed: boundaryCounter,
                                   cacheControl: ex.cacheControl)
        ex.rangeText = r.rangeText
        // RFC 9211 Cache-Status and Age: a hit unless this request had to go to the origin.
        let age = max(0, ring.wallMilliseconds() / 1000 - meta.storedAtSeconds)
        let status = fetched ? "edge; fwd=miss; stored" : (missingSlices(path, r.segments) ? "edge; fwd=partial; stored" : "edge; hit")
        r.headers.append(HeaderField("cache-status", status))
        r.headers.append(HeaderField("age", String(age)))
        ex.cacheStatus = status
        var body: BodyStream? = nil
        if !ex.isHead && !r.segments.isEmpty {
            body = BodyStream(file: nil, objectPath: path, objectETag: meta.etag, segments: r.segments,
                              owner: FileEntry.Waiter(connectionSlot: c.slot, generation: c.generation, streamID: ex.streamID),
                              bufferCapacity: limits.readChunkBytes)
        }
        respond(c, ex, status: r.status, headers: r.headers, contentLength: r.contentLength, body: body)
    }

    /// Whether any slice the segments touch is neither in RAM nor on disk.
    private func missingSlices(_ path: String, _ segments: [BodyStream.Segment]) -> Bool {
        for s in segments {
            if case .content(let o, let l) = s, l > 0, store!.anyMissing(path, o / sliceBytes, (o + l - 1) / sliceBytes) { return true }
        }
        return false
    }

    // MARK: bodies of cached objects

    func refillObject(_ body: BodyStream) {
        let offset = body.contentOffset
        let idx = offset / sliceBytes
        let within = offset - idx * sliceBytes
        if body.sliceIndex != idx || body.sliceSource == nil {
            if let d = body.diskEntry { cacheFiles!.release(d); body.diskEntry = nil }
            if body.sliceIndex == idx {
                // Looking the same slice up again (it vanished from disk meanwhile): bounded, so an
                // eviction racing a re-write can never make a body loop.
                body.sliceLookups += 1
                guard body.sliceLookups <= Self.sliceLookupsMax else { body.failed = true; return }
            } else {
                body.sliceLookups = 0
            }
            body.sliceIndex = idx
            switch store!.lookup(SliceKey(path: body.objectPath!, index: idx), worker: index) {
            case .ram(let b, let length): body.sliceSource = .memory(b, length: length)
            case .disk(let d): body.sliceSource = .disk(d)
            case .filling(let f): body.sliceSource = .fill(f); body.servedFromCache = false
            case .startFill(let f): origin!.fetch(f); body.sliceSource = .fill(f); body.servedFromCache = false
            case .overloaded: body.failed = true; return
            }
        }
        let want = body.segmentRemaining
        switch body.sliceSource! {
        case .memory(let b, let length):
            guard within < length else { body.failed = true; return }
            body.borrow(UnsafeRawPointer(b.bytes + within), min(length - within, want), owner: b)
        case .fill(let f):
            switch f.currentPhase {
            case .failed:
                body.failed = true
            case .requested:
                park(Parked(connectionSlot: body.owner.connectionSlot, generation: body.owner.generation, streamID: body.owner.streamID, fill: f, body: body))
            case .head, .complete:
                // Never splice bytes of another version into this response.
                guard f.meta?.etag == body.objectETag, within < f.length else { body.failed = true; return }
                let available = f.buffer.available.load(ordering: .acquiring)
                if available > within {
                    body.borrow(UnsafeRawPointer(f.buffer.bytes + within), min(available - within, want), owner: f.buffer)
                } else {
                    park(Parked(connectionSlot: body.owner.connectionSlot, generation: body.owner.generation, streamID: body.owner.streamID, fill: f, body: body))
                }
            }
        case .disk(let d):
            guard within < d.length else { body.failed = true; return }
            let entry: FileEntry
            if let e = body.diskEntry { entry = e } else {
                switch cacheFiles!.lookup("/" + d.relativePath, now: now) {
                case .ready(let e): entry = e
                case .missing:
                    // Gone since the lookup: the index forgets it and the next look starts a fill.
                    store!.diskSliceMissing(SliceKey(path: body.objectPath!, index: idx), relativePath: d.relativePath)
                    body.sliceSource = nil
                    refillObject(body)
                    return
                case .pending(let e):
                    guard e.waiters.count < limits.waitingPerWorkerMax else { body.failed = true; return }
                    e.waiters.append(FileEntry.Waiter(connectionSlot: body.owner.connectionSlot, generation: body.owner.generation,
                                                      streamID: body.owner.streamID, body: body))
                    body.parked = true
                    return
                }
                guard entry.size == d.dataOffset + d.length else { body.failed = true; return }
                cacheFiles!.acquire(entry)
                body.diskEntry = entry
            }
            startRead(body, fd: entry.fd, offset: d.dataOffset + within, length: min(d.length - within, want, body.bufferCapacity))
        }
    }

    static let sliceLookupsMax = 3

    func cacheFileSettled(_ e: FileEntry) {
        let waiters = e.waiters
        e.waiters = []
        for w in waiters {
            guard let body = w.body else { continue }
            body.parked = false
            if body.cancelled { finishBody(body); continue }
            if e.state != .ready {   // gone: the index forgets it, the next refill fetches it again
                if case .disk(let d)? = body.sliceSource, let path = body.objectPath {
                    store!.diskSliceMissing(SliceKey(path: path, index: body.sliceIndex), relativePath: d.relativePath)
                }
                body.sliceSource = nil
            }
            resumeBody(body)
        }
        if e.retired { cacheFiles!.release(e) }
    }

    // MARK: parking and waking

    /// Parks a request or body on a fill. Never resumes anything itself: it may run inside an
    /// nghttp2 callback, where calling back into nghttp2 is forbidden; resumption happens at the
    /// top of the event loop (`resumePending`).
    func park(_ p: Parked) {
        // A body that cannot wait is cut (its front end sees `failed` when this returns).
        if p.body != nil && !canWait() { p.body!.failed = true; return }
        p.body?.parked = true
        parked.append(p)
        // Register, then look again: progress published in between is not missed.
        _ = p.fill.waitingWorkers.bitwiseOr(UInt64(1) << UInt64(index), ordering: .acquiringAndReleasing)
        if canProgress(p) { resumePending = true }
    }

    private func canProgress(_ p: Parked) -> Bool {
        let phase = p.fill.currentPhase
        guard let body = p.body else { return phase != .requested }
        if phase == .failed || phase == .complete { return true }
        return phase == .head && p.fill.buffer.available.load(ordering: .acquiring) > body.contentOffset - body.sliceIndex * sliceBytes
    }

    /// Re-examines every parked request and body; resumes those whose fill moved.
    func resumeParked() {
        guard !parked.isEmpty else { return }
        var still: [Parked] = []
        let list = parked
        parked = []
        for p in list {
            let c = connections[Int(p.connectionSlot)]
            let alive = c.isCurrent(p.generation)
            let phase = p.fill.currentPhase
            if let body = p.body {
                if !alive || body.cancelled { body.parked = false; finishBody(body); continue }
                if canProgress(p) { body.parked = false; resumeBody(body) } else { still.append(p) }
            } else {
                guard alive else { continue }
                let ex: Exchange? = p.streamID == 0 ? c.exchange : c.h2?.exchanges[p.streamID]
                guard let ex, !ex.responded else { continue }
                switch phase {
                case .requested:
                    still.append(p)
                case .failed:
                    var headers: [HeaderField] = []
                    if p.fill.failureStatus == 416, let cr = p.fill.failureContentRange { headers.append(HeaderField("content-range", cr)) }
                    let text = p.fill.failureStatus == 504 ? "origin timeout\n" : p.fill.failureStatus == 502 ? "origin error\n" :
                        "\(HTTPStatus.reason(p.fill.failureStatus).lowercased())\n"
                    ex.cacheStatus = "edge; fwd=miss"
                    respondSimple(c, ex, status: p.fill.failureStatus, body: text, extraHeaders: headers)
                    pump(c)
                case .head, .complete:
                    respondCached(c, ex, p.fill.key.path, p.fill.meta!, fetched: true)
                    pump(c)
                }
            }
        }
        parked.append(contentsOf: still)
    }

    func onFillWake() {
        settings.directory.entries[index].wakePending.store(false, ordering: .releasing)
        resumeParked()
    }

    /// Called by the filling worker whenever a fill moves: wakes every other worker with
    /// requests parked on it (one message per worker until it has run), and this worker's own.
    func fillProgressed(_ f: Fill) {
        var mask = f.waitingWorkers.load(ordering: .acquiring) & ~(UInt64(1) << UInt64(index))
        while mask != 0 {
            let w = mask.trailingZeroBitCount
            mask &= mask - 1
            if settings.directory.entries[w].wakePending.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged {
                let fd = settings.directory.entries[w].ringFD.load(ordering: .acquiring)
                if fd >= 0 { ring.message(ringFD: fd, UserData(kind: OpKind.fillWake, slot: 0)) }
            }
        }
        resumePending = true
    }

    func fillCompleted(_ f: Fill) {
        // Verify what arrived before anyone can find it in the cache: the length it announced.
        f.phase.store(Fill.Phase.complete.rawValue, ordering: .releasing)
        let (write, evicted) = store!.completeFill(f)
        for d in evicted { unlinkSlice(d.relativePath) }
        if write, let meta = f.meta {
            if diskWritesInFlight < settings.config.cache.diskWritesInFlightMax {
                startDiskWrite(f, meta: meta)
            } else {
                diskWritesSkipped += 1
                store!.diskWriteFailed(f.key)   // kept in RAM only; a later miss may write it
            }
        }
        fillProgressed(f)
    }

    func fillFailed(_ f: Fill) {
        store!.failFill(f)
        fillProgressed(f)
    }

    func purgeFiles(_ path: String) {
        for d in store!.purge(path) { unlinkSlice(d.relativePath) }
    }

    func logError(_ text: String) {
        errorLog.line(text, wallMilliseconds: ring.wallMilliseconds())
    }

    // MARK: disk tier writes

    /// Removes an evicted or purged slice file. Its path lives until the completion (the kernel
    /// reads it when the operation is issued).
    private func unlinkSlice(_ relativePath: String) {
        let path = strdup(store!.directory + "/" + relativePath)!
        let slot: UInt32
        if let s = freeUnlinks.popLast() { slot = s; unlinks[Int(s)] = path } else { slot = UInt32(unlinks.count); unlinks.append(path) }
        ring.unlink(path: path, UserData(kind: OpKind.sliceUnlink, slot: slot))
    }

    func onSliceUnlinked(slot: UInt32) {
        precondition(unlinks[Int(slot)] != nil, "an unlink completion for slot \(slot) with no unlink in flight")
        free(unlinks[Int(slot)])
        unlinks[Int(slot)] = nil
        freeUnlinks.append(slot)
    }

    private func takeDiskWriteSlot(_ w: DiskWrite) -> UInt32 {
        if let s = freeDiskWrites.popLast() { diskWrites[Int(s)] = w; return s }
        diskWrites.append(w)
        return UInt32(diskWrites.count - 1)
    }

    private func startDiskWrite(_ f: Fill, meta: ObjectMeta) {
        let rel = SliceFile.relativePath(f.key, etag: meta.etag)
        let digest = SHA256.digest(UnsafeRawPointer(f.buffer.bytes), f.length)
        let header = SliceFile.header(key: f.key, meta: meta, length: f.length, digest: digest)
        let random = SecureRandom.uint64()
        let w = DiskWrite(key: f.key, fill: f, header: header, tmpPath: store!.directory + "/tmp/" + String(random, radix: 16),
                          finalPath: store!.directory + "/" + rel, relativePath: rel)
        let slot = takeDiskWriteSlot(w)
        diskWritesInFlight += 1
        ring.openCreate(path: w.tmpPath, UserData(kind: OpKind.diskWrite, slot: slot))
    }

    func onDiskWrite(slot: UInt32, _ result: Int32) {
        guard let w = diskWrites[Int(slot)] else { return }
        let d = UserData(kind: OpKind.diskWrite, slot: slot)
        func fail(_ what: String) {
            if w.fd >= 0 { ring.close(fd: w.fd, UserData(kind: OpKind.ignore, slot: 0)); w.fd = -1 }
            ring.unlink(path: w.tmpPath, UserData(kind: OpKind.ignore, slot: 0))
            store!.diskWriteFailed(w.key)
            logError("cache write failed (\(what): errno \(-result)) for \(w.key.path) slice \(w.key.index); serving it from RAM and origin")
            finish()
        }
        func finish() {
            // The paths must outlive the submission: keep the object until the ring has taken them.
            ring.submit()
            diskWritesInFlight -= 1
            assert(diskWritesInFlight >= 0, "more slice writes finished than started")
            diskWrites[Int(slot)] = nil
            freeDiskWrites.append(slot)
        }
        switch w.step {
        case .open:
            guard result >= 0 else { return fail("open") }
            w.fd = result
            w.step = .header
            w.header.withUnsafeBytes { ring.write(fd: w.fd, from: $0.baseAddress!, length: $0.count, offset: 0, d) }
        case .header:
            guard result == Int32(w.header.count) else { return fail(result < 0 ? "write" : "short write") }
            w.step = .data
            w.written = 0
            ring.write(fd: w.fd, from: UnsafeRawPointer(w.fill.buffer.bytes), length: w.fill.length, offset: UInt64(SliceFile.headerBytes), d)
        case .data:
            guard result > 0 else { return fail(result < 0 ? "write" : "short write") }
            w.written += Int(result)
            if w.written < w.fill.length {
                ring.write(fd: w.fd, from: UnsafeRawPointer(w.fill.buffer.bytes + w.written), length: w.fill.length - w.written,
                           offset: UInt64(SliceFile.headerBytes + w.written), d)
                return
            }
            w.step = .sync
            ring.fsync(fd: w.fd, d)
        case .sync:
            guard result >= 0 else { return fail("fsync") }
            w.step = .close
            ring.close(fd: w.fd, d)
            w.fd = -1
        case .close:
            guard result >= 0 else { return fail("close") }
            w.step = .rename
            ring.rename(from: w.tmpPath, to: w.finalPath, UserData(kind: OpKind.diskWrite, slot: slot))
        case .rename:
            guard result >= 0 else { return fail("rename") }
            if !store!.diskWritten(w.key, DiskSlice(relativePath: w.relativePath, dataOffset: SliceFile.headerBytes, length: w.fill.length)) {
                unlinkSlice(w.relativePath)   // purged or replaced while it was being written
            }
            finish()
        }
    }
}
