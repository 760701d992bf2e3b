import CEdgeRing
import CEdgeTLS
import Glibc
import EdgeIO
import EdgeHTTP
import EdgeConfig
import EdgeAuthToken
import EdgeCrypto
import Synchronization

/// Settings every worker shares, read-only after start-up.
final class WorkerSettings: @unchecked Sendable {
    let config: EdgeConfig
    let router: Router
    /// The players' TLS context at start-up (a reload may hand workers a new one).
    let tlsContext: TLSServerContext?
    let accessLogFD: Int32
    /// The shared cache (HTTP origins only).
    let store: SliceStore?
    let directory: WorkerDirectory
    /// One block of counters per worker, summed by the metrics scrape.
    let counters: [WorkerCounters]
    /// Workers whose listeners are armed (readiness).
    let workersStarted = Atomic<Int>(0)
    /// Resolves the upstreams' host names (nil: none to resolve, or a test's fixed addresses).
    let resolver: OriginResolver?
    /// The upstreams' host names as resolved at start-up (later answers come by mail).
    var addresses: AddressBook { resolver?.book ?? AddressBook([:]) }
    init(
        config: EdgeConfig, router: Router, tlsContext: TLSServerContext?, accessLogFD: Int32, store: SliceStore?,
        directory: WorkerDirectory, resolver: OriginResolver? = nil
    ) {
        self.config = config; self.router = router; self.tlsContext = tlsContext; self.accessLogFD = accessLogFD
        self.store = store; self.directory = directory; self.resolver = resolver
        counters = directory.entries.map { _ in WorkerCounters() }
    }
}

struct Listener { var fd: Int32; var isTLS: Bool; var armed: Bool }

/// One thread, one ring, its own SO_REUSEPORT listeners. A connection lives and dies here.
/// Completions are drained into a fixed array, then each is dispatched by its kind to a plain
/// method; no handler runs inside the drain.
final class Worker {
    let index: Int
    let settings: WorkerSettings
    /// This worker's copy of the running configuration: a reload replaces it between two
    /// completions. Connections take their limits when accepted; deadlines apply from the next tick.
    var config: EdgeConfig
    var limits: LimitsConfig
    var deadlines: Deadlines
    let ring: Ring
    let clock: LoopClock
    var listeners: [Listener]
    let log: AccessLog
    let readPool: BufferPool
    let reads: BodyReads
    /// Token settings: replaced whole by a reload, between two requests.
    var router: Router
    var verifier: EdgeAuthVerifier
    /// New TLS connections' context: replaced by a reload with new certificate files.
    var tlsContext: TLSServerContext?
    let counters: WorkerCounters
    /// Files of a directory origin, or the slice cache in front of HTTP origins.
    let content: ContentSource
    var connections: [Connection] = []
    var freeSlots: [UInt32] = []
    var liveConnections = 0
    let wakeFD: Int32
    private let wakeValue = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    private let tickStorage = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 8)
    /// Where TLS reads put plaintext until the protocol has taken it (a temporary allocation of
    /// this size came from the heap, once per receive).
    let tlsPlaintextScratch = UnsafeMutableRawPointer.allocate(byteCount: 16384, alignment: 16)
    /// Where the front ends write response heads (`ResponseHead.swift`).
    let headScratch = HeadScratch()
    let tickMilliseconds = 250
    var draining = false
    var drainDeadlineMicroseconds: Int64 = 0
    var dateText = ""
    private var dateSecond: Int64 = -1
    var rejectedConnections = 0
    var reportedRejected = 0
    var reportedDropped = 0
    var acceptBackoff = false
    let errorLog: AccessLog
    /// What limits cost, as last reported on the error log (once a tick, when it changed).
    var reportedWaitRefusals = 0
    var reportedDiskWritesSkipped = 0
    var reportedQueueRefusals = 0
    /// Sends from a file mapping that failed because the file was truncated under the response.
    var truncatedFileSends = 0
    var reportedTruncatedFileSends = 0
    var cacheControlMemo: (seconds: Int, text: String) = (-1, "")

    /// `ring`: the kernel's (nil: created here, on the worker's own thread) or a simulated one.
    init(index: Int, settings: WorkerSettings, listeners: [Listener], wakeFD: Int32, ring injected: Ring? = nil) throws
    {
        self.index = index
        self.settings = settings
        config = settings.config
        limits = settings.config.limits
        deadlines = Deadlines(limits)
        let ring = try injected ?? Ring(entries: limits.ringEntries)
        self.ring = ring
        clock = LoopClock(ring: ring)
        self.listeners = listeners
        self.wakeFD = wakeFD
        log = AccessLog(fd: settings.accessLogFD, ring: ring, bufferBytesMax: limits.accessLogBufferBytesMax)
        readPool = BufferPool(size: limits.readChunkBytes, keepMax: 1024)
        reads = BodyReads(ring: ring, pool: readPool)
        router = settings.router
        verifier = EdgeAuthVerifier(policy: settings.router.policy)
        tlsContext = settings.tlsContext
        counters = settings.counters[index]
        errorLog = AccessLog(fd: 2, ring: ring, bufferBytesMax: 65536, writeKind: OpKind.errorLogWrite)
        // Multipart boundaries: unpredictable to clients, different on every worker.
        let boundarySeed = SecureRandom.uint64()
        if let store = settings.store {
            content = .cache(
                CacheSource(
                    store: store, worker: index, ring: ring, clock: clock, reads: reads, settings: settings,
                    errorLog: errorLog, boundarySeed: boundarySeed))
        } else {
            content = .directory(
                DirectorySource(
                    root: settings.config.origin.directory ?? "/nonexistent", ring: ring, reads: reads,
                    limits: limits, boundarySeed: boundarySeed))
        }
        switch content {
        case .cache(let cache): cache.delivery = self
        case .directory(let directory): directory.delivery = self
        }
    }

    /// The cache source, in cache mode (for tests and the tick's reports).
    var cache: CacheSource? { if case .cache(let c) = content { c } else { nil } }
    /// The directory source, in directory mode.
    var directorySource: DirectorySource? { if case .directory(let d) = content { d } else { nil } }

    // MARK: loop

    func run() {
        start()
        while step() {}
        finish()
    }

    /// Arms the wake-up, the listeners and the tick.
    func start() {
        settings.directory.register(worker: index, ringFD: ring.fd)
        settings.directory.entries[index].wakeFD.store(wakeFD, ordering: .releasing)
        ring.readEventFD(fd: wakeFD, into: wakeValue, UserData(kind: OpKind.wake, slot: 0))
        clock.advance()
        updateDate()
        for i in listeners.indices { armAccept(i) }
        ring.timeout(milliseconds: tickMilliseconds, storage: tickStorage, UserData(kind: OpKind.tick, slot: 0))
        settings.workersStarted.add(1, ordering: .releasing)
    }

    /// One turn of the loop: waits for completions and handles them. False once the worker
    /// should stop (drained, or the ring failed).
    func step() -> Bool {
        let n: Int
        do { n = try ring.submitAndWait() } catch {
            printError("worker \(index): \(error)")
            return false
        }
        clock.advance()
        for i in 0..<n {
            let c = ring.completion(at: i)
            dispatch(c.data, c.result, c.more)
        }
        // Still more to do: a message to our own ring ends the next wait at once.
        if let cache, cache.runPending() { ring.message(ringFD: ring.fd, UserData(kind: OpKind.fillWake, slot: 0)) }
        return
            !(draining
            && ((liveConnections == 0 && !(cache?.origin.fetching ?? false))
                || nowMicroseconds >= drainDeadlineMicroseconds))
    }

    @inline(__always) private func dispatch(_ d: UserData, _ result: Int32, _ more: Bool) {
        switch d.kind {
        case OpKind.recv: if let c = connection(d) { onRecv(c, result) }
        case OpKind.send: if let c = connection(d) { onSend(c, result) }
        case OpKind.fileRead: if let body = reads.completed(slot: d.slot, result) { bodyRead(body) }
        case OpKind.accept: onAccept(listener: Int(d.slot), result, more: more)
        case OpKind.close: onClosed(slot: d.slot)
        case OpKind.fileOpen, OpKind.fileStat:
            directorySource?.opened(d.kind, slot: d.slot, result: result, now: nowMicroseconds)
        case OpKind.tick: onTick()
        case OpKind.wake: onWake()
        case OpKind.logWrite: log.written(result)
        case OpKind.originSocket: cache?.origin.onSocket(d, result)
        case OpKind.originConnect: cache?.origin.onConnect(d, result)
        case OpKind.originSend: cache?.origin.onSend(d, result)
        case OpKind.originRecv: cache?.origin.onRecv(d, result)
        case OpKind.originClose: cache?.origin.onClose(d)
        case OpKind.fillWake: cache?.fillWake()
        case OpKind.diskWrite: cache?.writer.completed(slot: d.slot, result)
        case OpKind.cacheFileOpen, OpKind.cacheFileStat: cache?.cacheFileOpened(d.kind, slot: d.slot, result: result)
        case OpKind.errorLogWrite: errorLog.written(result)
        case OpKind.sliceUnlink: cache?.writer.unlinked(slot: d.slot)
        case OpKind.slicePromote: cache?.promoter.completed(slot: d.slot, result)
        default: break
        }
    }

    /// The connection a completion belongs to, counting the completion against its in-flight ops.
    @inline(__always) private func connection(_ d: UserData) -> Connection? {
        let c = connections[Int(d.slot)]
        switch c.life.completed(receive: d.kind == OpKind.recv, generation: d.generation) {
        case .deliver: return c
        case .drop: return nil
        case .release: release(c); return nil
        }
    }

    func finish() {
        for c in connections where c.life.isOpen { close(c) }
        switch content {
        case .directory(let directory): directory.files.closeAll()
        case .cache(let cache): cache.cacheFiles.closeAll()
        }
        log.flush()
        errorLog.flush()
        // The last completions (closes, the log write) before the thread exits.
        // Bounded by time, not by a count of completions: a slice write alone is six steps, and a
        // slice half-written at exit is a slice lost from the disk tier.
        let finishDeadline = ring.monotonicMicroseconds() + 5_000_000
        while ring.monotonicMicroseconds() < finishDeadline
            && (!log.idle || !errorLog.idle || liveConnections > 0 || !(cache?.writer.idle ?? true)
                || !(cache?.promoter.idle ?? true))
        {
            guard let n = try? ring.submitAndWait() else { break }
            for i in 0..<n { let c = ring.completion(at: i); dispatch(c.data, c.result, c.more) }
        }
        ring.submit()
    }

    func updateDate() {
        let wall = clock.wallSeconds
        if wall != dateSecond { dateSecond = wall; dateText = HTTPDate.format(unixSeconds: Int(wall)) }
    }

    // MARK: logging, closing, timers

    func logExchange(_ c: Connection, _ ex: Exchange) {
        guard !ex.logged else { return }
        ex.logged = true
        let ttfb = max(0, ex.ttfbMicroseconds)
        counters.request(protocolIndex: c.isHTTP2 ? 1 : 0, status: ex.status, bytes: ex.bytesSent)
        counters.observe(histogram: MetricLayout.ttfb, microseconds: ttfb)
        if ex.status == 403 { counters.tokenRejected(ex.verdict) }
        guard log.enabled else { return }
        log.log(
            AccessLog.Record(
                client: c.client, protocolName: c.protocolName, method: ex.request.method, path: ex.logPath,
                status: ex.status, bytesSent: ex.bytesSent, range: ex.rangeText,
                ttfbMicroseconds: ttfb,
                totalMicroseconds: clock.read() - ex.startMicroseconds,
                token: ex.verdict, cache: ex.cacheStatus), wallMilliseconds: clock.wallMilliseconds)
    }

    func close(_ c: Connection) {
        guard c.life.close() else { return }
        switch c.frontEnd {
        case .http1(let h1): h1.shutdown()
        case .http2(let h2): h2.shutdown()
        case .undecided: break
        }
        ring.shutdownAndClose(fd: c.fd, UserData(kind: OpKind.close, slot: c.slot, generation: c.generation))
    }

    func onClosed(slot: UInt32) {
        let c = connections[Int(slot)]
        if c.life.closeCompleted() { release(c) }
    }

    func release(_ c: Connection) {
        c.life.release()
        liveConnections -= 1
        assert(liveConnections >= 0, "more connections released than accepted")
        counters.set(MetricLayout.connectionsOpen, liveConnections)
        c.reset()
        freeSlots.append(c.slot)
    }

    func onTick() {
        updateDate()
        // Report what limits cost, at most once a tick and only when it changed.
        report(rejectedConnections, &reportedRejected) {
            "connections_per_worker_max (\(limits.connectionsPerWorkerMax)) reached: \($0) connections refused (worker \(index), \(rejectedConnections) in all)"
        }
        report(log.droppedLines, &reportedDropped) {
            "access log behind: \($0) lines dropped (worker \(index), access_log_buffer_bytes_max \(limits.accessLogBufferBytesMax))"
        }
        let waitRefusals = cache?.waitRefusals ?? directorySource?.waitRefusals ?? 0
        report(waitRefusals, &reportedWaitRefusals) {
            "waiting_per_worker_max (\(limits.waitingPerWorkerMax)) reached: \($0) requests refused with 503 or bodies cut (worker \(index))"
        }
        report(cache?.writer.skipped ?? 0, &reportedDiskWritesSkipped) {
            "cache.disk_write_queue_max (\(config.cache.diskWriteQueueMax)) reached with \(config.cache.diskWritesInFlightMax) writes in flight (disk_writes_in_flight_max): \($0) slices kept in RAM only (worker \(index))"
        }
        report(truncatedFileSends, &reportedTruncatedFileSends) {
            "\($0) responses cut: their origin-directory file was truncated while they were sent (EFAULT from its mapping; worker \(index))"
        }
        report(cache?.origin.queueRefusals ?? 0, &reportedQueueRefusals) {
            "origin.queue_max (\(config.origin.queueMax)) reached: \($0) fetches refused with 503 (worker \(index))"
        }
        log.flush()
        errorLog.flush()
        cache?.origin.tick(now: nowMicroseconds)
        if acceptBackoff {
            acceptBackoff = false
            for i in listeners.indices { armAccept(i) }
        }
        for c in connections where c.life.isOpen { checkDeadlines(c) }
        if draining && nowMicroseconds >= drainDeadlineMicroseconds {
            for c in connections where c.life.isOpen { close(c) }
        }
        ring.timeout(milliseconds: tickMilliseconds, storage: tickStorage, UserData(kind: OpKind.tick, slot: 0))
    }

    /// The deadlines of one open connection, from the tick: TLS handshake and the protocol's first
    /// bytes, a send without progress (slow readers, zero windows), then the front end's own.
    func checkDeadlines(_ c: Connection) {
        let now = nowMicroseconds
        // A send that makes no progress: a slow or stalled reader (TCP zero window).
        if (c.output.inFlight || !c.output.isEmpty) && now - c.lastSendProgressMicroseconds > deadlines.sendMicroseconds
        {
            close(c)
            return
        }
        let verdict: DeadlineVerdict
        if let tls = c.tls, edge_tls_handshake_done(tls) == 0 {
            verdict = now - c.acceptedMicroseconds > deadlines.headerMicroseconds ? .close : .none
        } else {
            switch c.frontEnd {
            case .undecided:
                verdict = now - c.acceptedMicroseconds > deadlines.headerMicroseconds ? .close : .none
            case .http1(let h1):
                verdict = h1.checkDeadlines(now: now, deadlines)
            case .http2(let h2):
                verdict = h2.checkDeadlines(
                    now: now, deadlines, lastSendProgressMicroseconds: c.lastSendProgressMicroseconds)
            }
        }
        switch verdict {
        case .none: break
        case .send: pump(c)
        case .close: close(c)
        }
    }

    /// Logs how much a counter grew since it was last reported, if it did.
    func report(_ count: Int, _ reported: inout Int, _ text: (Int) -> String) {
        guard count != reported else { return }
        logError(text(count - reported))
        reported = count
    }

    /// The eventfd fired: mail from the control plane, or the stop request (SIGTERM).
    func onWake() {
        let entry = settings.directory.entries[index]
        let mail = entry.mailbox.withLock { box in
            defer { box.removeAll(keepingCapacity: true) }
            return box
        }
        for m in mail {
            switch m {
            case .fetch(let fill):
                if let cache {
                    cache.origin.fetch(fill)
                } else {
                    preconditionFailure("a fetch for a worker without a cache")
                }
            case .reload(let r):
                router = r
                verifier = EdgeAuthVerifier(policy: r.policy)
            case .tls(let context):
                tlsContext = context
            case .configure(let c):
                configure(c)
            case .addresses(let book):
                if case .cache(let cache) = content { cache.origin.setAddresses(book) }
            }
        }
        // A wake may also mean a fill moved that no worker's ring was told of (one the control
        // plane failed): parked work is looked at again at the top of the loop.
        cache?.resumePending = true
        if entry.stopRequested.load(ordering: .acquiring) {
            beginDrain()
        } else {
            ring.readEventFD(fd: wakeFD, into: wakeValue, UserData(kind: OpKind.wake, slot: 0))
        }
    }

    /// A reload's configuration (what may change while running: `EdgeControl.apply` keeps the
    /// rest as it was).
    func configure(_ c: EdgeConfig) {
        config = c
        limits = c.limits
        deadlines = Deadlines(c.limits)
        log.bufferBytesMax = c.limits.accessLogBufferBytesMax
        switch content {
        case .cache(let cache): cache.configure(c)
        case .directory(let directory): directory.configure(c.limits)
        }
    }

    /// SIGTERM/SIGINT: stop accepting, GOAWAY to HTTP/2 peers, close idle HTTP/1.1 connections,
    /// let responses in flight finish until the drain deadline.
    func beginDrain() {
        guard !draining else { return }
        draining = true
        drainDeadlineMicroseconds = nowMicroseconds + Int64(limits.drainTimeoutMilliseconds) * 1000
        for l in listeners {
            // The ring holds its own reference to a listener with a multishot accept: cancel, then close.
            ring.cancel(fd: l.fd, UserData(kind: OpKind.ignore, slot: 0))
            ring.close(fd: l.fd, UserData(kind: OpKind.ignore, slot: 0))
        }
        for c in connections where c.life.isOpen {
            switch c.frontEnd {
            case .http2(let h2):
                h2.goAway()
                pump(c)
            case .http1(let h1):
                if h1.drain() { close(c) }
            case .undecided:
                close(c)
            }
        }
    }
}


func printError(_ s: String) {
    var line = s + "\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}
