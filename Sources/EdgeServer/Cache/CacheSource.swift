import EdgeIO
import EdgeHTTP
import EdgeConfig

/// A request or body waiting on a fill in progress.
struct Parked {
    var owner: BodyOwner
    var fill: Fill
    /// nil: the response head waits for the object's metadata; else this body waits for bytes.
    var body: BodyStream? { owner.body }
}

/// Content from the slice cache in front of HTTP upstreams, on one worker: answers from the
/// shared index (RAM slices, slice files on disk), fills from the origin (one fetch per slice
/// however many wait, on any worker), and parks what waits until the fill moves.
final class CacheSource {
    let store: SliceStore
    let origin: OriginClient
    let cacheFiles: FileTable
    let writer: SliceWriter
    let promoter: SlicePromoter
    let reads: BodyReads
    let ring: Ring
    let clock: LoopClock
    let worker: Int
    private(set) var limits: LimitsConfig
    /// This cache's Cache-Status entries (`server.cache_name`).
    private(set) var statusText: CacheStatusText
    let directory: WorkerDirectory
    let errorLog: AccessLog
    let counters: WorkerCounters
    /// The worker, set once it exists. It owns this source and outlives it; `unowned(unsafe)`,
    /// not `weak`: a weak reference gave the worker a side table, and every retain and release
    /// of it took the runtime's slow path (4 % of a 4 KiB hit's CPU).
    unowned(unsafe) var delivery: (any ContentDelivery)?
    var parked: [Parked] = []
    /// Parked work that can progress; run at the top of the loop, outside any protocol callback.
    var resumePending = false
    /// Requests refused and bodies cut at `waiting_per_worker_max` (reported by the worker's tick).
    var waitRefusals = 0
    private var boundaryCounter: UInt64
    var sliceBytes: Int { store.sliceBytes }
    static let sliceLookupsMax = 3
    /// Indices into `MetricLayout.cacheTiers`.
    static let originTier = 2, coalescedTier = 3

    init(
        store: SliceStore, worker: Int, ring: Ring, clock: LoopClock, reads: BodyReads, settings: WorkerSettings,
        errorLog: AccessLog, boundarySeed: UInt64
    ) {
        let config = settings.config
        self.store = store
        self.worker = worker
        self.ring = ring
        self.clock = clock
        self.reads = reads
        limits = config.limits
        statusText = CacheStatusText(name: config.server.cacheName)
        directory = settings.directory
        self.errorLog = errorLog
        boundaryCounter = boundarySeed
        cacheFiles = FileTable(
            root: store.directory, ring: ring, entriesMax: limits.openFilesMax, revalidateMilliseconds: 3_600_000,
            openKind: OpKind.cacheFileOpen, statKind: OpKind.cacheFileStat, cachesMissing: false)
        writer = SliceWriter(
            ring: ring, store: store, errorLog: errorLog, inFlightMax: config.cache.diskWritesInFlightMax,
            queueMax: config.cache.diskWriteQueueMax)
        promoter = SlicePromoter(ring: ring, store: store, writer: writer, errorLog: errorLog)
        counters = settings.counters[worker]
        origin = OriginClient(
            ring: ring, clock: clock, config: config.origin, store: store, errorLog: errorLog, counters: counters,
            addresses: settings.addresses)
        origin.listener = self
        promoter.listener = self
    }

    /// A reload's settings, between two completions: bounds on what starts next. Responses in
    /// flight and parked requests keep going.
    func configure(_ config: EdgeConfig) {
        limits = config.limits
        statusText = CacheStatusText(name: config.server.cacheName)
        cacheFiles.entriesMax = config.limits.openFilesMax
        writer.inFlightMax = config.cache.diskWritesInFlightMax
        writer.queueMax = config.cache.diskWriteQueueMax
        origin.configure(config.origin)
    }

    // MARK: requests

    /// A GET/HEAD: answered from the object's metadata when known (one critical section of the
    /// index, which also looks up the first slice the body reads); otherwise fetch (or join the
    /// fetch of) the slice holding the first requested byte, and answer when its head arrives — a
    /// miss's time to first byte is the origin's.
    func answer(_ c: Connection, _ ex: Exchange, _ path: String) -> ContentAnswer {
        if let answer = hitResponse(c, ex, path) { return answer }
        // The slice holding the first byte asked for, read by the same range parser a hit uses. A
        // suffix range needs the size first, and a first byte past any object we would accept is
        // answered from the size too: both fetch slice 0.
        var first = 0
        if let r = ex.request.header("range"),
            let f = RangeEvaluator.firstByteBeforeLength(r, maxRanges: limits.rangesMax),
            f < store.objectBytesMax
        {
            first = f
        }
        guard canWait() else { return busy }
        let owner = BodyOwner(connectionSlot: c.slot, generation: c.generation, streamID: ex.streamID)
        switch store.lookup(SliceKey(path: path, index: first / sliceBytes), worker: worker) {
        case .filling(let f):
            counters.add(MetricLayout.cacheLookups + Self.coalescedTier)
            park(Parked(owner: owner, fill: f))
            return .waiting
        case .startFill(let f):
            counters.add(MetricLayout.cacheLookups + Self.originTier)
            origin.fetch(f)
            park(Parked(owner: owner, fill: f))
            return .waiting
        case .promote(let f, let d):
            // Metadata recorded since `hitResponse` looked: the slice is on disk. Read it (the
            // fill must run: others may join it), and answer as a hit next time.
            promoter.start(f, d)
            return busy
        case .overloaded, .ram, .disk, .changed:
            // Slices without metadata: only after a purge raced this request. A miss next time.
            // (`.changed` answers only a lookup that names a version, which this one does not.)
            return busy
        }
    }

    var busy: ContentAnswer { .text(status: 503, text: "busy\n", headers: [HeaderField("retry-after", "1")]) }

    /// Whether one more request or body may wait on this worker (`waiting_per_worker_max`).
    func canWait() -> Bool {
        if parked.count < limits.waitingPerWorkerMax { return true }
        waitRefusals += 1
        return false
    }

    /// The response to a request for an object whose metadata is known (nil: unknown, a miss).
    /// `fetched`: this request went to the origin for it.
    /// `fetched`: the metadata of the fill this request waited for (it went to the origin).
    /// `upstreamStatus`: a parent edge's Cache-Status for the fill, listed before this cache's entry.
    func hitResponse(
        _ c: Connection, _ ex: Exchange, _ path: String, fetched: ObjectMeta? = nil, upstreamStatus: String? = nil
    ) -> ContentAnswer? {
        boundaryCounter &+= 0x9E37_79B9_7F4A_7C15
        let seed = boundaryCounter
        let readsBody = !ex.isHead
        let wallSeconds = clock.wallSeconds   // one clock read: the object's last access and its Age
        guard
            case let (hit, plan)? = store.hit(
                path, known: fetched, worker: worker, nowSeconds: wallSeconds, readsBody: readsBody,
                plan: { meta in
                    ResponsePlan(
                        request: ex.request, size: meta.size, etag: meta.etag,
                        lastModified: meta.lastModified,
                        contentType: meta.contentType, rangesMax: limits.rangesMax, boundarySeed: seed,
                        cacheControl: ex.cacheControl)
                },
                stamp: { plan, meta, partial in
                    // RFC 9211 Cache-Status and Age: a hit unless this request had to go to the origin.
                    var status =
                        fetched != nil ? statusText.missStored : (partial ? statusText.partialStored : statusText.hit)
                    if fetched != nil, let upstreamStatus { status = upstreamStatus + ", " + status }
                    plan.fields.cacheStatus = status
                    plan.fields.age = Self.ageSeconds(nowSeconds: wallSeconds, storedAtSeconds: meta.storedAtSeconds)
                })
        else { return nil }
        // The plan is this request's alone, stamped before the store returned it: changed here, it
        // was copied on its way into the answer, each of its strings retained once more
        // (`loadtest/instructions.py`).
        ex.rangeText = plan.rangeText
        ex.cacheStatus = plan.fields.cacheStatus
        var body: BodyStream? = nil
        if readsBody && !plan.segments.isEmpty {
            let b = BodyStream(
                file: nil, objectPath: path, objectETag: hit.meta.etag, segments: plan.segments,
                owner: BodyOwner(connectionSlot: c.slot, generation: c.generation, streamID: ex.streamID),
                bufferCapacity: limits.readChunkBytes)
            // A miss counted its first slice when it went to the origin.
            if let (index, lookup) = hit.firstSlice { adopt(lookup, index: index, into: b, counted: fetched == nil) }
            body = b
        }
        return .respond(plan, body: body)
    }

    /// RFC 9111 Age of an object stored at `storedAtSeconds`: 0 for a time in the future, and for
    /// one so far off that the subtraction overflows (a stored time read from disk is not trusted).
    static func ageSeconds(nowSeconds: Int64, storedAtSeconds: Int64) -> Int {
        let (elapsed, overflow) = nowSeconds.subtractingReportingOverflow(storedAtSeconds)
        return overflow ? 0 : Int(max(0, elapsed))
    }

    // MARK: bodies of cached objects

    /// Where slice `index` of a body's object comes from, as the index said.
    private func adopt(_ lookup: SliceStore.Lookup, index: Int, into body: BodyStream, counted: Bool = true) {
        body.sliceIndex = index
        let tier: Int
        switch lookup {
        case .ram(let b, let length): body.sliceSource = .memory(b, length: length); tier = 0
        case .disk(let d): body.sliceSource = .disk(d); tier = 1
        case .filling(let f) where f.promotedFrom != nil: body.sliceSource = .fill(f); tier = 1
        case .filling(let f): body.sliceSource = .fill(f); body.servedFromCache = false; tier = Self.coalescedTier
        case .promote(let f, let d): promoter.start(f, d); body.sliceSource = .fill(f); tier = 1
        case .startFill(let f):
            origin.fetch(f); body.sliceSource = .fill(f); body.servedFromCache = false; tier = Self.originTier
        case .overloaded, .changed: body.sliceSource = nil; body.failed = true; return
        }
        if counted { counters.add(MetricLayout.cacheLookups + tier) }
    }

    /// Makes the next bytes of a body ready: borrowed from a RAM slice or a fill in progress, or
    /// read from a slice file; parks the body when its fill has not got that far yet.
    func refill(_ body: BodyStream) {
        guard let objectPath = body.objectPath else { body.failed = true; return }
        let offset = body.contentOffset
        let idx = offset / sliceBytes
        let within = offset - idx * sliceBytes
        if body.sliceIndex != idx || body.sliceSource == nil {
            if let d = body.diskEntry { cacheFiles.release(d); body.diskEntry = nil }
            if body.sliceIndex == idx {
                // Looking the same slice up again (it vanished from disk meanwhile): bounded, so an
                // eviction racing a re-write can never make a body loop.
                body.sliceLookups += 1
                guard body.sliceLookups <= Self.sliceLookupsMax else { body.failed = true; return }
            } else {
                body.sliceLookups = 0
            }
            // The body's version checked: a slice of the object as it is now must never be spliced
            // into a response that began with another version.
            let key = SliceKey(path: objectPath, index: idx)
            adopt(store.lookup(key, worker: worker, etag: body.objectETag), index: idx, into: body)
            if body.failed { return }
        }
        let want = body.segmentRemaining
        switch body.sliceSource! {
        case .memory(let b, let length):
            guard within < length else { body.failed = true; return }
            body.borrow(UnsafeRawPointer(b.bytes + within), min(length - within, want), owner: b)
        case .fill(let f):
            refillFromFill(body, f, within: within, want: want)
        case .disk(let d):
            refillFromDisk(body, d, objectPath: objectPath, index: idx, within: within, want: want)
        }
    }

    private func refillFromFill(_ body: BodyStream, _ f: Fill, within: Int, want: Int) {
        switch f.currentPhase {
        case .failed where f.promotedFrom != nil:
            // The slice file was unusable: the index forgot it, so looking again fetches it
            // (the bytes already sent were verified, and the next source is checked by ETag).
            body.sliceSource = nil
            refill(body)
        case .failed:
            body.failed = true
        case .requested:
            park(Parked(owner: bodyOwner(body), fill: f))
        case .head, .complete:
            // Never splice bytes of another version into this response.
            guard f.meta?.etag == body.objectETag, within < f.length else { body.failed = true; return }
            let available = f.buffer.available.load(ordering: .acquiring)
            if available > within {
                body.borrow(UnsafeRawPointer(f.buffer.bytes + within), min(available - within, want), owner: f.buffer)
            } else {
                park(Parked(owner: bodyOwner(body), fill: f))
            }
        }
    }

    private func refillFromDisk(
        _ body: BodyStream, _ d: DiskSlice, objectPath: String, index: Int, within: Int, want: Int
    ) {
        guard within < d.length else { body.failed = true; return }
        let entry: FileEntry
        if let e = body.diskEntry {
            entry = e
        } else {
            switch cacheFiles.lookup("/" + d.relativePath, now: clock.nowMicroseconds) {
            case .ready(let e): entry = e
            case .missing:
                // Gone since the lookup: the index forgets it and the next look starts a fill.
                store.diskSliceMissing(SliceKey(path: objectPath, index: index), relativePath: d.relativePath)
                body.sliceSource = nil
                refill(body)
                return
            case .pending(let e):
                guard e.waiters.count < limits.waitingPerWorkerMax else { body.failed = true; return }
                e.waiters.append(bodyOwner(body))
                body.parked = true
                return
            }
            guard entry.size == d.dataOffset + d.length else { body.failed = true; return }
            cacheFiles.acquire(entry)
            body.diskEntry = entry
        }
        reads.start(
            body, fd: entry.fd, offset: d.dataOffset + within, length: min(d.length - within, want, body.bufferCapacity)
        )
    }

    /// The body's owner, carrying the body: what waits is the body, not a request.
    private func bodyOwner(_ body: BodyStream) -> BodyOwner {
        var owner = body.owner
        owner.body = body
        return owner
    }

    /// A slice file's open (or statx) finished: resumes the bodies that waited for it.
    func cacheFileOpened(_ op: UInt8, slot: UInt32, result: Int32) {
        guard let (e, waiters) = cacheFiles.completed(op, slot: slot, result: result, now: clock.nowMicroseconds) else {
            return
        }
        for w in waiters {
            guard let body = w.body else { continue }
            body.parked = false
            if body.cancelled { delivery?.finish(body); continue }
            if e.state != .ready {   // gone: the index forgets it, the next refill fetches it again
                if case .disk(let d)? = body.sliceSource, let path = body.objectPath {
                    store.diskSliceMissing(SliceKey(path: path, index: body.sliceIndex), relativePath: d.relativePath)
                }
                body.sliceSource = nil
            }
            delivery?.resume(body)
        }
        if e.retired { cacheFiles.release(e) }
    }

    /// Drops a body's reference to its slice file.
    func release(_ body: BodyStream) {
        if let d = body.diskEntry { cacheFiles.release(d); body.diskEntry = nil }
    }
}

/// A cache's RFC 9211 Cache-Status entries, formatted once per configuration: interpolated per
/// response, the hit's cost an allocation each.
struct CacheStatusText {
    let hit: String, partialStored: String, missStored: String, miss: String
    init(name: String) {
        hit = name + "; hit"
        partialStored = name + "; fwd=partial; stored"
        missStored = name + "; fwd=miss; stored"
        miss = name + "; fwd=miss"
    }
}
