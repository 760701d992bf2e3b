import CEdgeRing
import CEdgeTLS
import Glibc
import EdgeIO
import EdgeHTTP
import EdgeConfig
import EdgeAuthToken
import EdgeCrypto

/// Settings every worker shares, read-only after start-up.
final class WorkerSettings: @unchecked Sendable {
    let config: EdgeConfig
    let router: Router
    let tlsContext: OpaquePointer?
    let accessLogFD: Int32
    /// The shared cache (HTTP origins only).
    let store: SliceStore?
    let directory: WorkerDirectory
    init(config: EdgeConfig, router: Router, tlsContext: OpaquePointer?, accessLogFD: Int32, store: SliceStore?, directory: WorkerDirectory) {
        self.config = config; self.router = router; self.tlsContext = tlsContext; self.accessLogFD = accessLogFD
        self.store = store; self.directory = directory
    }
}

struct Listener { var fd: Int32; var isTLS: Bool; var armed: Bool }

/// One thread, one ring, its own SO_REUSEPORT listeners. A connection lives and dies here.
/// Completions are drained into a fixed array, then each is dispatched by its kind to a plain
/// method; no handler runs inside the drain.
final class Worker {
    let index: Int
    let settings: WorkerSettings
    let limits: LimitsConfig
    let ring: Ring
    let clock: LoopClock
    var now: Int64 { clock.nowMicroseconds }
    var listeners: [Listener]
    let log: AccessLog
    let readPool: BufferPool
    let reads: BodyReads
    let verifier: EdgeAuthVerifier
    /// Files of a directory origin, or the slice cache in front of HTTP origins.
    let content: ContentSource
    private(set) var connections: [Connection] = []
    private var freeSlots: [UInt32] = []
    var liveConnections = 0
    let wakeFD: Int32
    private let wakeValue = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    private let tickStorage = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 8)
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
    var cacheControlMemo: (seconds: Int, text: String) = (-1, "")

    /// `ring`: the kernel's (nil: created here, on the worker's own thread) or a simulated one.
    init(index: Int, settings: WorkerSettings, listeners: [Listener], wakeFD: Int32, ring injected: Ring? = nil) throws {
        self.index = index
        self.settings = settings
        limits = settings.config.limits
        let ring = try injected ?? Ring(entries: limits.ringEntries)
        self.ring = ring
        clock = LoopClock(ring: ring)
        self.listeners = listeners
        self.wakeFD = wakeFD
        log = AccessLog(fd: settings.accessLogFD, ring: ring, bufferBytesMax: limits.accessLogBufferBytesMax)
        readPool = BufferPool(size: limits.readChunkBytes, keepMax: 1024)
        reads = BodyReads(ring: ring, pool: readPool)
        verifier = EdgeAuthVerifier(policy: settings.router.policy)
        errorLog = AccessLog(fd: 2, ring: ring, bufferBytesMax: 65536, writeKind: OpKind.errorLogWrite)
        // Multipart boundaries: unpredictable to clients, different on every worker.
        let boundarySeed = SecureRandom.uint64()
        if let store = settings.store {
            content = .cache(CacheSource(store: store, worker: index, ring: ring, clock: clock, reads: reads, settings: settings,
                                         errorLog: errorLog, boundarySeed: boundarySeed))
        } else {
            content = .directory(DirectorySource(root: settings.config.origin.directory ?? "/nonexistent", ring: ring, reads: reads,
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
        ring.readEventFD(fd: wakeFD, into: wakeValue, UserData(kind: OpKind.wake, slot: 0))
        clock.advance()
        updateDate()
        for i in listeners.indices { armAccept(i) }
        ring.timeout(milliseconds: tickMilliseconds, storage: tickStorage, UserData(kind: OpKind.tick, slot: 0))
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
        return !(draining && (liveConnections == 0 || now >= drainDeadlineMicroseconds))
    }

    @inline(__always) private func dispatch(_ d: UserData, _ result: Int32, _ more: Bool) {
        switch d.kind {
        case OpKind.recv: if let c = connection(d) { onRecv(c, result) }
        case OpKind.send: if let c = connection(d) { onSend(c, result) }
        case OpKind.fileRead: if let body = reads.completed(slot: d.slot, result) { bodyRead(body) }
        case OpKind.accept: onAccept(listener: Int(d.slot), result, more: more)
        case OpKind.close: onClosed(slot: d.slot)
        case OpKind.fileOpen, OpKind.fileStat: directorySource?.opened(d.kind, slot: d.slot, result: result, now: now)
        case OpKind.tick: onTick()
        case OpKind.wake: beginDrain()
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
                && (!log.idle || !errorLog.idle || liveConnections > 0 || !(cache?.writer.idle ?? true)) {
            guard let n = try? ring.submitAndWait() else { break }
            for i in 0..<n { let c = ring.completion(at: i); dispatch(c.data, c.result, c.more) }
        }
        ring.submit()
    }

    private func updateDate() {
        let wall = ring.wallMilliseconds() / 1000
        if wall != dateSecond { dateSecond = wall; dateText = HTTPDate.format(unixSeconds: Int(wall)) }
    }

    // MARK: accept

    private func armAccept(_ i: Int) {
        guard !draining, !listeners[i].armed else { return }
        listeners[i].armed = true
        ring.acceptMultishot(fd: listeners[i].fd, UserData(kind: OpKind.accept, slot: UInt32(i)))
    }

    private func onAccept(listener i: Int, _ result: Int32, more: Bool) {
        if !more { listeners[i].armed = false }
        if result < 0 {
            let error = Errno(-result)
            precondition(!error.isServerBug, "accept failed with \(error) on listener \(i)")
            // EMFILE/ENFILE/ENOMEM: back off to the next tick instead of spinning.
            if !error.isRetryable && error != .cancelled { acceptBackoff = true }
            if !listeners[i].armed && !acceptBackoff { armAccept(i) }
            return
        }
        if !listeners[i].armed && !acceptBackoff { armAccept(i) }
        let fd = result
        guard !draining else { ring.close(fd: fd, UserData(kind: OpKind.ignore, slot: 0)); return }
        guard let c = takeSlot() else {
            rejectedConnections += 1
            ring.close(fd: fd, UserData(kind: OpKind.ignore, slot: 0))
            return
        }
        c.fd = fd
        c.life.accept()
        c.acceptedMicroseconds = now
        c.idleSinceMicroseconds = now
        c.lastSendProgressMicroseconds = now
        ring.setNoDelay(fd: fd)
        c.client = ring.peerAddress(fd: fd)
        liveConnections += 1   // counted before anything can fail: close() and release() balance it
        if listeners[i].isTLS, let ctx = settings.tlsContext {
            guard let ssl = edge_tls_new(ctx) else { close(c); return }
            c.tls = ssl
        }
        postRecv(c)
    }

    private func takeSlot() -> Connection? {
        if let s = freeSlots.popLast() { return connections[Int(s)] }
        guard connections.count < limits.connectionsPerWorkerMax else { return nil }
        let c = Connection(slot: UInt32(connections.count), recvBufferBytes: limits.recvBufferBytes, outputCapacity: 16384)
        connections.append(c)
        return c
    }

    // MARK: receive

    func postRecv(_ c: Connection) {
        // HTTP/1.1 back-pressure: while a response is in progress, or answers wait to be sent,
        // buffer at most one header section.
        if c.proto == .http1 && (c.exchange != nil || c.queuedBytes >= limits.outputBufferBytesMax)
            && c.input.count >= limits.headerBytesMax { return }
        guard c.life.submitReceive() else { return }   // closing, finishing, or one already in flight
        ring.recv(fd: c.fd, into: c.recvBuffer, length: c.recvBufferBytes, UserData(kind: OpKind.recv, slot: c.slot, generation: c.generation))
    }

    private func onRecv(_ c: Connection, _ result: Int32) {
        let count: Int
        switch TransferOutcome(receiveResult: result) {
        case .bytes(let n): count = n
        case .retry: postRecv(c); return
        case .peerClosed, .failed: close(c); return   // the peer closed, or the connection is gone
        }
        let bytes = UnsafeRawBufferPointer(start: c.recvBuffer, count: count)
        if let tls = c.tls {
            if edge_tls_feed(tls, bytes.baseAddress, Int32(bytes.count)) < 0 { close(c); return }
            let wasDone = edge_tls_handshake_done(tls) != 0
            while c.life.isOpen {
                let n = withUnsafeTemporaryAllocation(byteCount: 16384, alignment: 16) { buf -> Int32 in
                    let n = edge_tls_read(tls, buf.baseAddress!, 16384)
                    if n > 0 {
                        if !wasDone || c.proto == .undecided { c.proto = edge_tls_alpn(tls) == 2 && settings.config.server.http2 ? .http2 : .http1 }
                        processPlaintext(c, UnsafeRawBufferPointer(start: buf.baseAddress!, count: Int(n)))
                    }
                    return n
                }
                if n == 0 { break }
                if n < 0 { c.drainTLS(); c.life.finishAfterFlush(); flush(c); return }
            }
            if !wasDone && edge_tls_handshake_done(tls) != 0 && c.proto == .undecided {
                c.proto = edge_tls_alpn(tls) == 2 && settings.config.server.http2 ? .http2 : .http1
                if c.proto == .http2 { startH2(c, initial: UnsafeRawBufferPointer(start: nil, count: 0)) }
            }
            c.drainTLS()
            flush(c)
        } else {
            processPlaintext(c, bytes)
        }
        if c.life.isOpen { postRecv(c) }
    }

    private static let h2Preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    private func processPlaintext(_ c: Connection, _ bytes: UnsafeRawBufferPointer) {
        switch c.proto {
        case .http2:
            if c.h2 == nil { startH2(c, initial: bytes) } else { c.h2!.receive(bytes) }
            pump(c)
        case .http1:
            c.input.append(bytes)
            if c.headerStartMicroseconds == 0 { c.headerStartMicroseconds = now }
            if c.exchange == nil { h1Next(c) }
        case .undecided:
            c.input.append(bytes)
            let have = c.input.readable
            let k = min(have.count, Self.h2Preface.count)
            let prefixMatches = settings.config.server.http2 && have.prefix(k).elementsEqual(Self.h2Preface.prefix(k))
            if prefixMatches && k < Self.h2Preface.count { return }   // wait for the rest of the preface
            if prefixMatches {
                c.proto = .http2
                let initial = ByteBuffer(capacity: c.input.count)
                initial.append(c.input.readable)
                c.input.clear()
                startH2(c, initial: initial.readable)
                pump(c)
            } else {
                c.proto = .http1
                c.headerStartMicroseconds = now
                h1Next(c)
            }
        }
    }

    private func startH2(_ c: Connection, initial: UnsafeRawBufferPointer) {
        guard c.h2 == nil else { return }
        guard let session = H2Session(worker: self, connection: c, limits: limits) else { close(c); return }
        c.h2 = session
        if initial.count > 0 { session.receive(initial) }
        pump(c)
    }

    // MARK: HTTP/1.1

    /// Parses and starts the next request on an HTTP/1.1 connection, if one is complete.
    func h1Next(_ c: Connection) {
        guard !c.inRequestLoop else { return }   // the loop below takes the next request
        c.inRequestLoop = true
        defer { c.inRequestLoop = false }
        // Bounded output too: a client that pipelines without reading gets no more answers queued
        // than output_buffer_bytes_max; the loop resumes as sends complete.
        while c.exchange == nil && c.life.isOpen && !c.life.closesAfterFlush && c.queuedBytes < limits.outputBufferBytesMax {
            if c.skipBodyBytes > 0 {
                let n = min(c.skipBodyBytes, c.input.count)
                c.input.consume(n); c.skipBodyBytes -= n
                if c.skipBodyBytes > 0 { return }
            }
            if c.input.isEmpty { c.headerStartMicroseconds = 0; return }
            if c.headerStartMicroseconds == 0 { c.headerStartMicroseconds = now }
            let parser = HTTP1Parser(limits: HTTP1Limits(requestLineBytesMax: limits.requestLineBytesMax,
                                                         headerBytesMax: limits.headerBytesMax, headerCountMax: limits.headerCountMax))
            switch parser.parse(c.input.readable) {
            case .needMore:
                return
            case .error(let status, let reason):
                let ex = Exchange(request: EdgeRequest(method: "-", target: "-", version: .http1_1, headers: []), streamID: 0,
                                  startMicroseconds: now)
                ex.keepAlive = false
                c.exchange = ex
                c.input.clear()
                respondSimple(c, ex, status: status, body: "\(HTTPStatus.reason(status).lowercased()): \(reason)\n", extraHeaders: [])
                return
            case .request(let request, let consumed, let bodyLength):
                c.input.consume(consumed)
                c.headerStartMicroseconds = 0
                let ex = Exchange(request: request, streamID: 0, startMicroseconds: now)
                ex.keepAlive = request.wantsKeepAlive && c.requestsServed + 1 < limits.requestsPerConnectionMax && !draining
                c.exchange = ex
                if bodyLength > limits.requestBodyBytesMax {
                    ex.keepAlive = false
                    respondSimple(c, ex, status: 413, body: "content too large\n", extraHeaders: [])
                    return
                }
                c.skipBodyBytes = bodyLength
                handle(c, ex)
            }
        }
    }


    private func h1Finished(_ c: Connection, _ ex: Exchange) {
        logExchange(c, ex)
        if let body = ex.body { finishBody(body) }
        c.exchange = nil
        c.requestsServed += 1
        c.idleSinceMicroseconds = now
        if !ex.keepAlive {
            // close_notify after the last response, so the client knows nothing was cut.
            if let tls = c.tls, c.sealTLS() { edge_tls_shutdown(tls); c.drainTLS() }
            c.life.finishAfterFlush()
            return
        }
        h1Next(c)
        if c.life.isOpen { postRecv(c) }
    }

    // MARK: requests (both protocols)

    /// Routes a complete request: access checks, then the content source.
    func handle(_ c: Connection, _ ex: Exchange) {
        let decision = settings.router.route(ex.request, clientIP: c.client, nowSeconds: Int(clock.wallSeconds), verifier: verifier)
        switch decision {
        case let .simple(status, body, extraHeaders, verdict):
            ex.verdict = verdict
            respondSimple(c, ex, status: status, body: body, extraHeaders: extraHeaders)
        case let .audio(path, verdict, privateSeconds):
            ex.verdict = verdict
            ex.canonicalPath = path
            if let privateSeconds {
                // The same few values over and over (one per token expiry and second): formatted once.
                if privateSeconds != cacheControlMemo.seconds {
                    cacheControlMemo = (privateSeconds, ResponsePlan.cacheControl(privateSeconds: privateSeconds))
                }
                ex.cacheControl = cacheControlMemo.text
            }
            let answer: ContentAnswer
            switch content {
            case .directory(let directory): answer = directory.answer(c, ex, now: now)
            case .cache(let cache): answer = cache.answer(c, ex, path)
            }
            apply(answer, c, ex)
        }
    }

    /// Sends a content source's answer (nothing yet while it waits). No pump here: this may run
    /// inside an nghttp2 callback, and the front end sends when the callback returns.
    private func apply(_ answer: ContentAnswer, _ c: Connection, _ ex: Exchange) {
        switch answer {
        case .respond(let r): respond(c, ex, status: r.status, headers: r.headers, contentLength: r.contentLength, body: r.body)
        case let .text(status, text, headers): respondSimple(c, ex, status: status, body: text, extraHeaders: headers)
        case .waiting: break
        }
    }

    func respondSimple(_ c: Connection, _ ex: Exchange, status: Int, body: String, extraHeaders: [HeaderField]) {
        let bytes = Array(body.utf8)
        var headers = extraHeaders
        if !bytes.isEmpty { headers.insert(HeaderField("content-type", "text/plain; charset=utf-8"), at: 0) }
        if status == 408 || status == 400 || status == 413 || status == 414 || status == 431 || status == 505 { ex.keepAlive = false }
        let stream = (ex.isHead || bytes.isEmpty) ? nil : BodyStream(file: nil, segments: [.bytes(bytes)],
                      owner: BodyOwner(connectionSlot: c.slot, generation: c.generation, streamID: ex.streamID),
                      bufferCapacity: max(bytes.count, 64))
        respond(c, ex, status: status, headers: headers, contentLength: bytes.count, body: stream)
    }

    /// Hands a response to the connection's protocol front end.
    func respond(_ c: Connection, _ ex: Exchange, status: Int, headers: [HeaderField], contentLength: Int, body: BodyStream?) {
        ex.responded = true
        ex.status = status
        ex.body = body
        ex.ttfbMicroseconds = now - ex.startMicroseconds
        if c.proto == .http2, let h2 = c.h2 {
            h2.submitResponse(ex, status: status, headers: headers, contentLength: contentLength, date: dateText)
            return
        }
        // HTTP/1.1 head.
        var head = "HTTP/1.1 \(status) \(HTTPStatus.reason(status))\r\nServer: edge\r\nDate: \(dateText)\r\n"
        for h in headers { head += "\(h.name): \(h.value)\r\n" }
        if status != 304 && status != 204 { head += "Content-Length: \(contentLength)\r\n" }
        if !ex.keepAlive { head += "Connection: close\r\n" } else if ex.request.version == .http1_0 { head += "Connection: keep-alive\r\n" }
        head += "\r\n"
        c.write(head)
        if body == nil { h1Finished(c, ex) }
        pump(c)
    }

    // MARK: output

    /// Moves as much response data into the output queue as the high-water mark allows, starting
    /// file reads as bodies run dry, then sends.
    func pump(_ c: Connection) {
        guard c.life.isOpen else { return }
        let highWater = limits.outputBufferBytesMax
        if c.proto == .http2, let h2 = c.h2 {
            h2.send(highWater: highWater)
            if h2.finished && c.queuedBytes == 0 && !c.output.inFlight { close(c); return }
        } else if let ex = c.exchange, let body = ex.body {
            while c.queuedBytes < highWater && c.life.isOpen {
                let buffered = body.buffered
                if buffered.count > 0 {
                    let n = min(buffered.count, highWater - c.queuedBytes)
                    c.write(UnsafeRawBufferPointer(rebasing: buffered[0..<n]))
                    body.consume(n)
                    ex.bytesSent += n
                } else if body.isComplete {
                    h1Finished(c, ex)
                    break
                } else if body.failed {
                    // The file changed under a response: cut the connection rather than send wrong bytes.
                    ex.keepAlive = false
                    logExchange(c, ex)
                    close(c)
                    return
                } else {
                    refill(body)
                    if body.buffered.count == 0 && !body.failed { break }
                }
            }
        }
        flush(c)
    }

    /// Makes the next bytes of a body ready, or starts what will: in-memory segments are copied,
    /// origin-directory ranges read through the ring, cached-object ranges borrowed from a slice
    /// buffer or read from a slice file (see the content sources).
    func refill(_ body: BodyStream) {
        guard !body.readInFlight, !body.failed, !body.parked, body.buffered.count == 0, let segment = body.currentSegment else { return }
        switch (segment, content) {
        case (.bytes, _): _ = body.copyBytesSegments(pool: readPool)
        case (.content, .directory(let directory)): directory.refill(body)
        case (.content, .cache(let cache)): cache.refill(body)
        }
    }

    private func bodyRead(_ body: BodyStream) {
        if body.cancelled { finishBody(body); return }
        resumeBody(body)
    }

    /// Wakes the front end of a body that has bytes (or a failure) to report.
    func resumeBody(_ body: BodyStream) {
        let c = connections[Int(body.owner.connectionSlot)]
        guard c.isCurrent(body.owner.generation) else { finishBody(body); return }
        if c.proto == .http2, let h2 = c.h2 { h2.resume(streamID: body.owner.streamID) }
        pump(c)
    }

    /// Returns a body's buffer and file reference once nothing reads into it any more.
    func finishBody(_ body: BodyStream) {
        body.cancelled = true
        guard !body.readInFlight else { return }   // the read's completion finishes it
        body.releaseBuffer(to: readPool)
        // Released exactly once, even when both the protocol and a late read finish the body.
        if !body.fileReleased {
            body.fileReleased = true
            switch content {
            case .directory(let directory): directory.release(body)
            case .cache(let cache): cache.release(body)
            }
        }
    }

    func flush(_ c: Connection) {
        guard c.life.isOpen else { return }
        if c.tls != nil && !c.sealTLS() { close(c); return }
        guard let bytes = c.output.nextSend() else {
            if c.life.closesAfterFlush && c.output.isEmpty && !c.output.inFlight { close(c) }
            return
        }
        c.life.submitSend()
        ring.send(fd: c.fd, from: bytes.baseAddress!, length: bytes.count, UserData(kind: OpKind.send, slot: c.slot, generation: c.generation))
    }

    private func onSend(_ c: Connection, _ result: Int32) {
        switch TransferOutcome(sendResult: result) {
        case .bytes(let n):
            c.output.sent(n)
        case .retry:
            c.output.sent(0)
            flush(c)
            return
        case .peerClosed, .failed:
            c.output.sent(0)
            close(c)   // EPIPE, ECONNRESET, ...
            return
        }
        c.lastSendProgressMicroseconds = now
        if c.proto == .http1 && c.exchange == nil && !c.input.isEmpty && c.life.isOpen {
            h1Next(c)   // pipelined requests held back while their answers could not be queued
            if c.life.isOpen { postRecv(c) }
        }
        pump(c)
    }

    // MARK: logging, closing, timers

    func logExchange(_ c: Connection, _ ex: Exchange) {
        guard !ex.logged else { return }
        ex.logged = true
        log.log(AccessLog.Record(client: c.client, protocolName: c.protocolName, method: ex.request.method, path: ex.logPath,
                                 status: ex.status, bytesSent: ex.bytesSent, range: ex.rangeText,
                                 ttfbMicroseconds: max(0, ex.ttfbMicroseconds), totalMicroseconds: now - ex.startMicroseconds,
                                 token: ex.verdict, cache: ex.cacheStatus), wallMilliseconds: ring.wallMilliseconds())
    }

    func close(_ c: Connection) {
        guard c.life.close() else { return }
        if let ex = c.exchange {
            if let body = ex.body { finishBody(body) }
            if ex.responded && !ex.logged { logExchange(c, ex) }
            c.exchange = nil
        }
        if let h2 = c.h2 { h2.shutdown(); c.h2 = nil }
        ring.shutdownAndClose(fd: c.fd, UserData(kind: OpKind.close, slot: c.slot, generation: c.generation))
    }

    private func onClosed(slot: UInt32) {
        let c = connections[Int(slot)]
        if c.life.closeCompleted() { release(c) }
    }

    private func release(_ c: Connection) {
        c.life.release()
        liveConnections -= 1
        assert(liveConnections >= 0, "more connections released than accepted")
        c.reset()
        freeSlots.append(c.slot)
    }

    private func onTick() {
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
            "cache.disk_writes_in_flight_max (\(settings.config.cache.diskWritesInFlightMax)) reached: \($0) slices kept in RAM only (worker \(index))"
        }
        report(cache?.origin.queueRefusals ?? 0, &reportedQueueRefusals) {
            "origin.queue_max (\(settings.config.origin.queueMax)) reached: \($0) fetches refused with 503 (worker \(index))"
        }
        log.flush()
        errorLog.flush()
        cache?.origin.tick(now: now)
        if acceptBackoff {
            acceptBackoff = false
            for i in listeners.indices { armAccept(i) }
        }
        let headerTimeout = Int64(limits.headerTimeoutMilliseconds) * 1000
        let keepAliveTimeout = Int64(limits.keepAliveTimeoutMilliseconds) * 1000
        let sendTimeout = Int64(limits.sendTimeoutMilliseconds) * 1000
        let requestTimeout = Int64(limits.requestTimeoutMilliseconds) * 1000
        for c in connections where c.life.isOpen {
            // A send that makes no progress: a slow or stalled reader (TCP zero window).
            if (c.output.inFlight || !c.output.isEmpty) && now - c.lastSendProgressMicroseconds > sendTimeout { close(c); continue }
            if let tls = c.tls, edge_tls_handshake_done(tls) == 0 {
                if now - c.acceptedMicroseconds > headerTimeout { close(c) }
                continue
            }
            switch c.proto {
            case .undecided:
                if now - c.acceptedMicroseconds > headerTimeout { close(c) }
            case .http1:
                if let ex = c.exchange {
                    if now - ex.startMicroseconds > requestTimeout { close(c) }
                } else if c.headerStartMicroseconds != 0 && !c.input.isEmpty {
                    if now - c.headerStartMicroseconds > headerTimeout {
                        let ex = Exchange(request: EdgeRequest(method: "-", target: "-", version: .http1_1, headers: []), streamID: 0, startMicroseconds: now)
                        ex.keepAlive = false
                        c.exchange = ex
                        c.input.clear()
                        respondSimple(c, ex, status: 408, body: "request timeout\n", extraHeaders: [])
                    }
                } else {
                    let limit = c.requestsServed == 0 ? headerTimeout : keepAliveTimeout
                    if now - c.idleSinceMicroseconds > limit { close(c) }
                }
            case .http2:
                guard let h2 = c.h2 else { continue }
                if h2.incompleteStreams > 0 {
                    h2.expireIncomplete(now: now, timeoutMicroseconds: Int64(limits.h2StreamRequestTimeoutMilliseconds) * 1000)
                    pump(c)
                    if !c.life.isOpen { continue }
                }
                if h2.exchanges.isEmpty && h2.incompleteStreams == 0 && h2.goAwaySentMicroseconds > 0
                    && now - h2.goAwaySentMicroseconds > headerTimeout {
                    close(c)   // a peer that neither closes nor sends after our GOAWAY
                } else if h2.exchanges.isEmpty {
                    if now - h2.idleSinceMicroseconds > keepAliveTimeout { h2.goAway(); pump(c) }
                } else if h2.hasBlockedData && now - c.lastSendProgressMicroseconds > sendTimeout {
                    close(c)   // streams with data the peer will not take (zero window)
                } else if let oldest = h2.oldestStartMicroseconds, now - oldest > requestTimeout {
                    close(c)
                }
            }
        }
        if draining && now >= drainDeadlineMicroseconds {
            for c in connections where c.life.isOpen { close(c) }
        }
        ring.timeout(milliseconds: tickMilliseconds, storage: tickStorage, UserData(kind: OpKind.tick, slot: 0))
    }

    /// Logs how much a counter grew since it was last reported, if it did.
    private func report(_ count: Int, _ reported: inout Int, _ text: (Int) -> String) {
        guard count != reported else { return }
        logError(text(count - reported))
        reported = count
    }

    /// SIGTERM/SIGINT: stop accepting, GOAWAY to HTTP/2 peers, close idle HTTP/1.1 connections,
    /// let responses in flight finish until the drain deadline.
    private func beginDrain() {
        guard !draining else { return }
        draining = true
        drainDeadlineMicroseconds = now + Int64(limits.drainTimeoutMilliseconds) * 1000
        for l in listeners {
            // The ring holds its own reference to a listener with a multishot accept: cancel, then close.
            ring.cancel(fd: l.fd, UserData(kind: OpKind.ignore, slot: 0))
            ring.close(fd: l.fd, UserData(kind: OpKind.ignore, slot: 0))
        }
        for c in connections where c.life.isOpen {
            switch c.proto {
            case .http2:
                c.h2?.goAway()
                pump(c)
            default:
                if let ex = c.exchange { ex.keepAlive = false } else { close(c) }
            }
        }
    }
}


func printError(_ s: String) {
    var line = s + "\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}
