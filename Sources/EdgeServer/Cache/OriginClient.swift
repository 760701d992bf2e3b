import CEdgeRing
import EdgeIO
import EdgeHTTP
import EdgeConfig
import EdgeCache
import EdgeClient
import EdgeCrypto
import EdgeEncoding
import Glibc

/// Fetches slices from the configured HTTP upstreams on its worker's ring: keep-alive pools per
/// upstream (bounded), connect / first-byte / idle-read timeouts, the next upstream on failure
/// (bounded attempts), and passive health — an upstream that keeps failing is skipped for a
/// while, then given one probe request.
final class OriginClient {
    struct Job {
        var fill: Fill; var attempts: Int; var tried: [Int]
        /// Addresses of the current upstream that refused a connection in this attempt: the next
        /// one is tried within the same attempt (a name's addresses fail over among themselves).
        var addressFailures = 0
    }
    struct Health { var failures = 0; var downUntilMicroseconds: Int64 = 0; var probing = false }

    let ring: Ring
    let clock: LoopClock
    let store: SliceStore
    let errorLog: AccessLog
    let counters: WorkerCounters
    /// Told when a fill moves (the worker's cache source, which owns this client and outlives
    /// it: unowned, not weak, so it has no side table and slow reference counting).
    unowned(unsafe) var listener: (any FillListener)?
    /// Every upstream this client has connections or health for, by slot (`OriginConnection.upstream`);
    /// `active` lists the configured ones, in the configuration's order. A reload that removes an
    /// upstream leaves its slot until its last connection closes (a response in flight finishes).
    private(set) var upstreams: [Upstream]
    private(set) var active: [Int]
    private var isActive: [Bool]
    private(set) var config: OriginConfig
    /// Signs every request when the origin is a private bucket (`origin.auth = "s3-sigv4"`).
    var signer: SigV4Signer?
    /// HTTPS upstreams: this worker's client context (trusted certificates, verification, ALPN
    /// http/1.1), the newest resumable session per upstream slot (the pool resumes it), and the
    /// buffer sessions open records into.
    private(set) var tlsContext: ClientTLS.Context?
    var tlsSessions: [ClientTLS.Session?] = []
    let tlsPlaintext = UnsafeMutableRawPointer.allocate(byteCount: 65536, alignment: 64)
    let sliceBytes: Int
    var connections: [OriginConnection] = []
    var freeSlots: [UInt32] = []
    var idle: [[UInt32]]
    var open: [Int]
    var health: [Health]
    var queued: [Job] = []
    /// The host names' addresses as last resolved, and each upstream's endpoints (its literal,
    /// or its name's addresses), with when each may be tried again after refusing a connection.
    private var addressBook: AddressBook
    private(set) var endpoints: [[Endpoint]] = []
    private var endpointDownUntil: [[Int64]] = []
    private var nextEndpoint: [Int] = []
    private(set) var requestsSent = 0
    /// Fetches refused at `origin.queue_max` (reported by the worker's tick).
    var queueRefusals = 0

    init(
        ring: Ring, clock: LoopClock, config: OriginConfig, store: SliceStore, errorLog: AccessLog,
        counters: WorkerCounters, addresses: AddressBook = AddressBook([:])
    ) {
        addressBook = addresses
        self.counters = counters
        self.ring = ring
        self.clock = clock
        self.store = store
        self.errorLog = errorLog
        self.config = config
        signer = config.sigV4.map(Self.signer)
        tlsContext = Self.tlsContext(config, log: { errorLog.line($0, wallMilliseconds: ring.wallMilliseconds()) })
        upstreams = config.upstreams
        sliceBytes = store.sliceBytes
        idle = Array(repeating: [], count: config.upstreams.count)
        open = Array(repeating: 0, count: config.upstreams.count)
        health = Array(repeating: Health(), count: config.upstreams.count)
        active = Array(config.upstreams.indices)
        isActive = Array(repeating: true, count: config.upstreams.count)
        rebuildEndpoints()
    }

    /// New answers from the resolver: connections opened from now on use them.
    func setAddresses(_ book: AddressBook) {
        addressBook = book
        rebuildEndpoints()
        // Pooled connections follow the name: one to an address it no longer has is closed when
        // idle (a busy one finishes its response first, then is not kept).
        for c in connections where c.state != .free && c.state != .opening {
            let list = endpoints[c.upstream]
            let k = list.firstIndex { e in e.storage.withUnsafeBytes { memcmp($0.baseAddress!, c.address, 128) == 0 } }
            c.endpoint = k ?? Int.max
            if k == nil && c.state == .idle { retire(c) }
        }
        startQueued()
    }

    private func rebuildEndpoints() {
        let old = endpoints
        endpoints = upstreams.map { u in
            u.isIPLiteral
                ? (Endpoint.literal(u.host, port: u.port).map { [$0] } ?? [])
                : (addressBook.endpoints[AddressBook.key(u)] ?? [])
        }
        // An address that stays keeps its down mark; new ones start up.
        endpointDownUntil = endpoints.indices.map { i in
            endpoints[i].map { e in
                guard i < old.count, let k = old[i].firstIndex(of: e), k < endpointDownUntil[i].count else { return 0 }
                return endpointDownUntil[i][k]
            }
        }
        while nextEndpoint.count < endpoints.count { nextEndpoint.append(0) }
        while tlsSessions.count < endpoints.count { tlsSessions.append(nil) }
    }

    /// The next address of upstream `u` in turn (spread), skipping those that refused a
    /// connection lately unless all did; nil when its name has never resolved.
    func pickEndpoint(_ u: Int) -> Int? {
        let list = endpoints[u]
        guard !list.isEmpty else { return nil }
        let now = clock.nowMicroseconds
        for step in 0..<list.count {
            let i = (nextEndpoint[u] + step) % list.count
            if endpointDownUntil[u][i] <= now {
                nextEndpoint[u] = i + 1
                return i
            }
        }
        let i = nextEndpoint[u] % list.count
        nextEndpoint[u] = i + 1
        return i
    }

    /// A reload's origin settings: timeouts, attempts and bounds apply to what starts next. An
    /// upstream kept (same URL) keeps its pool and its health; a new one starts healthy; a
    /// removed one gets no new request, its idle connections close now and its busy ones when
    /// their response ends.
    func configure(_ new: OriginConfig) {
        precondition(!new.upstreams.isEmpty, "an HTTP origin without upstreams")
        if new.sigV4 != config.sigV4 { signer = new.sigV4.map(Self.signer) }
        if new.caFile != config.caFile || new.insecureSkipVerify != config.insecureSkipVerify
            || (tlsContext == nil && new.upstreams.contains(where: \.tls))
        {
            tlsContext = Self.tlsContext(new, log: logError)
            tlsSessions = tlsSessions.map { _ in nil }   // sessions of the old trust settings are not offered
        }
        config = new
        var order: [Int] = []
        for u in new.upstreams {
            if let i = upstreams.indices.first(where: { upstreams[$0].url == u.url && !order.contains($0) }) {
                upstreams[i] = u
                order.append(i)
            } else if let i = upstreams.indices.first(where: {
                !isActive[$0] && open[$0] == 0 && !order.contains($0) && !new.upstreams.contains(upstreams[$0])
            }) {
                upstreams[i] = u; health[i] = Health(); idle[i] = []   // a removed upstream's slot, free again
                order.append(i)
            } else {
                upstreams.append(u); health.append(Health()); idle.append([]); open.append(0); isActive.append(false)
                order.append(upstreams.count - 1)
            }
        }
        rebuildEndpoints()
        let removed = active.filter { !order.contains($0) }
        active = order
        for i in isActive.indices { isActive[i] = order.contains(i) }
        for r in removed {
            while let s = idle[r].last { retire(connections[Int(s)]) }
        }
        startQueued()   // more connections allowed, or a new upstream to use
    }

    /// The client context for HTTPS upstreams (nil without any). Checked on the control plane
    /// before it gets here (`OriginTLS.check`), so a failure is only logged.
    static func tlsContext(_ config: OriginConfig, log: (String) -> Void) -> ClientTLS.Context? {
        do { return try OriginTLS.context(config) } catch {
            log("origin: cannot set up TLS to the origins: \(error); https:// fetches fail")
            return nil
        }
    }

    deinit { tlsPlaintext.deallocate() }

    static func signer(_ c: SigV4Credentials) -> SigV4Signer {
        SigV4Signer(
            accessKeyID: c.accessKeyID, secretAccessKey: c.secretAccessKey, region: c.region, service: c.service)
    }

    /// Fetches running or queued. A drain waits for them (up to its deadline): a slice cut at
    /// exit would be fetched a second time after the restart.
    var fetching: Bool { !queued.isEmpty || connections.contains { $0.state != .free && $0.state != .idle } }

    func logError(_ text: String) { errorLog.line(text, wallMilliseconds: ring.wallMilliseconds()) }

    func fetch(_ fill: Fill) { start(Job(fill: fill, attempts: 0, tried: [])) }

    /// The upstreams to ask for an object, in order: without parents the configured ones; with
    /// parents, the parents by rendezvous weight for the object's path (every child picks the same
    /// one, so a region's misses of an object meet at one parent), then the origins when
    /// `parents_fallback = "origin"`.
    func candidates(_ path: String) -> [Int] {
        guard !config.parentURLs.isEmpty else { return active }
        let parents = active.filter { upstreams[$0].isParent }.map {
            ($0, Rendezvous.weight(node: upstreams[$0].url, key: path))
        }
        .sorted { $0.1 > $1.1 }.map(\.0)
        return config.parentsFallbackToOrigin ? parents + active.filter { !upstreams[$0].isParent } : parents
    }

    func pickUpstream(_ job: Job) -> Int? {
        let now = clock.nowMicroseconds
        var fallback: Int? = nil
        for u in candidates(job.fill.key.path) where !job.tried.contains(u) {
            let h = health[u]
            if h.failures < config.failuresBeforeDown { return u }
            if now >= h.downUntilMicroseconds && !h.probing { health[u].probing = true; return u }   // half-open probe
            if fallback == nil { fallback = u }
        }
        return fallback   // everything untried is down: try anyway rather than fail without asking
    }

    /// Starts (or retries) a job; `lastStatus` is what the client gets if no attempt is left.
    func start(_ job: Job, lastStatus: Int = 502) {
        var job = job
        guard job.attempts < config.attemptsMax, let u = pickUpstream(job) else {
            fail(job.fill, status: lastStatus)
            return
        }
        job.attempts += 1
        job.tried.append(u)
        job.addressFailures = 0
        if let s = idle[u].popLast() {
            let c = connections[Int(s)]
            c.job = job
            sendRequest(c)
            return
        }
        guard open[u] < config.connectionsPerUpstreamMax else {
            job.attempts -= 1; job.tried.removeLast()
            guard queued.count < config.queueMax else {
                queueRefusals += 1
                counters.originError("queue_full")
                fail(job.fill, status: 503)
                return
            }
            queued.append(job)
            return
        }
        openConnection(job, to: u)
    }

    /// A new connection to upstream `u` for `job`, to its next address.
    func openConnection(_ job: Job, to u: Int) {
        guard let e = pickEndpoint(u) else {
            counters.originError("connect")
            logError("origin \(upstreams[u].url): \(upstreams[u].host) has no address (it has not resolved); 502")
            health[u].failures += 1
            start(job, lastStatus: 502)
            return
        }
        let c = takeConnection()
        c.upstream = u
        c.endpoint = e
        c.job = job
        c.state = .opening
        open[u] += 1
        let endpoint = endpoints[u][e]
        endpoint.storage.withUnsafeBytes { c.address.copyMemory(from: $0.baseAddress!, byteCount: 128) }
        c.addressLength = endpoint.length
        c.pendingOps += 1
        c.deadlineMicroseconds = clock.nowMicroseconds + Int64(config.connectTimeoutMilliseconds) * 1000
        c.deadlineStatus = 504
        ring.socket(ipv6: endpoint.ipv6, UserData(kind: OpKind.originSocket, slot: c.slot, generation: c.generation))
    }

    /// A connection that could not be opened: the address is skipped for `down_milliseconds`,
    /// and while the upstream has another address this attempt tries it; then the upstream failed.
    func connectFailed(_ c: OriginConnection, counted: Bool = false) {
        if !counted { counters.originError("connect") }
        let u = c.upstream
        if c.endpoint < endpointDownUntil[u].count {
            endpointDownUntil[u][c.endpoint] = clock.nowMicroseconds + Int64(config.downMilliseconds) * 1000
        }
        if var job = c.job, job.addressFailures + 1 < endpoints[u].count, isActive[u] {
            let address = c.endpoint < endpoints[u].count ? endpoints[u][c.endpoint].text : "an address since replaced"
            logError("origin \(upstreams[u].url): no connection to \(address); trying its next address")
            job.addressFailures += 1
            c.job = nil
            retire(c)
            openConnection(job, to: u)
            return
        }
        failed(c, status: 502, upstreamFault: true)
    }

    func takeConnection() -> OriginConnection {
        if let s = freeSlots.popLast() { return connections[Int(s)] }
        let c = OriginConnection(slot: UInt32(connections.count))
        connections.append(c)
        return c
    }

    func connection(_ d: UserData) -> OriginConnection? {
        let c = connections[Int(d.slot)]
        c.pendingOps -= 1
        assert(c.pendingOps >= 0, "an origin completion for slot \(c.slot) with no operation in flight")
        guard c.generation == d.generation, c.state != .free else {
            if c.state == .free && c.pendingOps == 0 { recycle(c) }
            return nil
        }
        return c
    }

    func onSocket(_ d: UserData, _ result: Int32) {
        guard let c = connection(d) else {
            if result >= 0 { ring.close(fd: result, UserData(kind: OpKind.ignore, slot: 0)) }; return
        }
        guard result >= 0 else { counters.originError("connect"); failed(c, status: 502, upstreamFault: true); return }
        c.fd = result
        c.state = .connecting
        c.pendingOps += 1
        ring.connect(
            fd: c.fd, address: c.address, length: c.addressLength,
            UserData(kind: OpKind.originConnect, slot: c.slot, generation: c.generation))
    }

    func onConnect(_ d: UserData, _ result: Int32) {
        guard let c = connection(d) else { return }
        guard result >= 0 else { connectFailed(c); return }
        ring.setNoDelay(fd: c.fd)
        guard upstreams[c.upstream].tls else { sendRequest(c); return }
        // HTTPS: the handshake first (within the connect deadline), the request once it is done.
        guard let context = tlsContext,
            let session = try? ClientTLS(
                context: context, serverName: upstreams[c.upstream].host, resuming: tlsSessions[c.upstream])
        else {
            logError("origin \(upstreams[c.upstream].url): cannot start a TLS session; 502")
            failed(c, status: 502, upstreamFault: true)
            return
        }
        c.tls = session
        flushTLS(c)
        postRecv(c)
    }

    /// Sends what the TLS session has sealed (handshake messages, the request), when no send is
    /// in flight: the kernel reads the wire buffer until the send completes, so nothing is added
    /// to it meanwhile (OpenSSL holds what comes next); the completion sends the rest.
    func flushTLS(_ c: OriginConnection) {
        guard let tls = c.tls, !c.sendPending else { return }
        while tls.hasOutput {
            let room = c.wire.reserve(16384)
            let n = tls.drain(into: UnsafeMutableRawBufferPointer(start: room, count: 16384))
            guard n > 0 else { break }
            c.wire.commit(n)
        }
        if !c.wire.isEmpty { sendRequestBytes(c) }
    }

    /// An HTTPS upstream's certificate or handshake failed: a precise line, then the upstream failed.
    func tlsFailed(_ c: OriginConnection) {
        counters.originError("tls")
        // With verification off OpenSSL still records what it would have refused: not the cause.
        let refused = config.insecureSkipVerify ? nil : c.tls?.verifyError
        let why = refused.map { "certificate refused: \($0)" } ?? "TLS handshake or record failed"
        logError("origin \(upstreams[c.upstream].url): \(why); 502")
        failed(c, status: 502, upstreamFault: true)
    }

    func sendRequest(_ c: OriginConnection) {
        guard let job = c.job else { return }
        let key = job.fill.key
        let up = upstreams[c.upstream]
        let first = key.index * sliceBytes
        let range = "bytes=\(first)-\(first + sliceBytes - 1)"
        c.request.clear()
        if up.isParent {
            // A parent edge: the object's own path, the child key instead of a player's token.
            c.request.append(
                "GET \(Self.encodePath(key.path)) HTTP/1.1\r\nHost: \(up.authority)\r\nRange: \(range)\r\nedge-child-key: \(config.parentKey)\r\n"
            )
        } else if signer != nil {
            // Signed: the path is sent exactly as SigV4 encodes it, and signed with Host and Range.
            let path = up.prefix + SigV4Signer.uriEncode(key.path)
            c.request.append("GET \(path) HTTP/1.1\r\nHost: \(up.authority)\r\nRange: \(range)\r\n")
            let signed = signer!.sign(
                method: "GET", path: path, headers: [("host", up.authority), ("range", range)],
                unixSeconds: ring.wallMilliseconds() / 1000)
            for h in signed { c.request.append("\(h.name): \(h.value)\r\n") }
        } else {
            c.request.append(
                "GET \(up.prefix)\(Self.encodePath(key.path)) HTTP/1.1\r\nHost: \(up.authority)\r\nRange: \(range)\r\n")
        }
        // Slices are stored as the representation's bytes: no content coding is acceptable.
        c.request.append("Accept-Encoding: identity\r\nUser-Agent: edge\r\n\r\n")
        c.state = .busy
        c.head.clear()
        c.headParsed = false
        c.bodyExpected = 0
        c.bodyToDiscard = 0
        c.keepAlive = true
        c.chunked = nil
        c.interimResponses = 0
        c.responseDeadlineMicroseconds = clock.nowMicroseconds + Int64(config.responseTimeoutMilliseconds) * 1000
        c.deadlineMicroseconds = min(
            clock.nowMicroseconds + Int64(config.firstByteTimeoutMilliseconds) * 1000, c.responseDeadlineMicroseconds)
        c.deadlineStatus = 504
        requestsSent += 1
        counters.add(MetricLayout.originRequests)
        c.sentMicroseconds = clock.read()
        if let tls = c.tls {
            let sealed = c.request.readable.count > 0 && tls.write(c.request.readable)
            c.request.clear()
            guard sealed else { tlsFailed(c); return }
            flushTLS(c)
        } else {
            sendRequestBytes(c)
        }
        postRecv(c)
    }

    /// Sends what is left of the request (all of it, or the rest after a short send).
    func sendRequestBytes(_ c: OriginConnection) {
        precondition(!c.sendPending, "two sends in flight on one origin connection")
        let r = (c.tls == nil ? c.request : c.wire).readable
        c.sendPending = true
        c.pendingOps += 1
        ring.send(
            fd: c.fd, from: r.baseAddress!, length: r.count,
            UserData(kind: OpKind.originSend, slot: c.slot, generation: c.generation))
    }

    /// At most one receive in flight: an idle connection's pending receive carries the next response.
    func postRecv(_ c: OriginConnection) {
        guard !c.recvPending else { return }
        c.recvPending = true
        c.pendingOps += 1
        ring.recv(
            fd: c.fd, into: c.recvBuffer, length: 65536,
            UserData(kind: OpKind.originRecv, slot: c.slot, generation: c.generation))
    }

    func onSend(_ d: UserData, _ result: Int32) {
        connections[Int(d.slot)].sendPending = false
        guard let c = connection(d) else { return }
        // Not busy: the response ended (an origin that answered early), unless a TLS handshake
        // (connecting) or a session's own message (idle) was being sent.
        guard c.state == .busy || (c.tls != nil && (c.state == .connecting || c.state == .idle)) else { return }
        let outgoing = c.tls == nil ? c.request : c.wire
        switch TransferOutcome(sendResult: result) {
        case .bytes(let n) where n > 0:
            outgoing.consume(n)
            if !outgoing.isEmpty { sendRequestBytes(c) } else if c.tls != nil { flushTLS(c) }   // a short send: the rest
        case .retry:
            sendRequestBytes(c)
        case .failed(let error):
            // A keep-alive connection the upstream closed meanwhile fails here: a retry is safe (GET).
            failed(c, status: 502, upstreamFault: error != .brokenPipe && error != .connectionReset)
        case .bytes, .peerClosed:
            failed(c, status: 502, upstreamFault: true)
        }
    }

    func onRecv(_ d: UserData, _ result: Int32) {
        connections[Int(d.slot)].recvPending = false
        guard let c = connection(d) else { return }
        if c.tls != nil && (c.state == .connecting || c.state == .idle) {
            receiveTLS(c, result)   // the handshake, or a session ticket while idle
            return
        }
        guard c.state == .busy, let job = c.job else {
            // An idle connection said something (usually: the upstream closed it).
            if c.state == .idle { retire(c) }
            return
        }
        switch TransferOutcome(receiveResult: result) {
        case .bytes: break
        case .retry: postRecv(c); return
        case .peerClosed:   // EOF mid-response
            counters.originError("reset"); failed(c, status: 502, upstreamFault: c.headParsed); return
        case .failed:   // reset mid-response
            counters.originError("reset"); failed(c, status: 502, upstreamFault: true); return
        }
        c.deadlineMicroseconds = min(
            clock.nowMicroseconds + Int64(config.idleReadTimeoutMilliseconds) * 1000, c.responseDeadlineMicroseconds)
        let received = UnsafeRawBufferPointer(start: c.recvBuffer, count: Int(result))
        guard c.tls != nil else {
            if consume(received, c, job) { postRecv(c) }
            return
        }
        receiveTLS(c, result)
    }

    /// Ciphertext from an HTTPS upstream: opened, and its plaintext handed to `consume` (during a
    /// response), or the handshake advanced (then the request goes out), or a ticket taken while idle.
    func receiveTLS(_ c: OriginConnection, _ result: Int32) {
        guard let tls = c.tls else { return }
        guard result > 0 else {
            if case .retry = TransferOutcome(receiveResult: result) { postRecv(c); return }
            if c.state == .idle { retire(c); return }
            counters.originError("reset")
            failed(c, status: 502, upstreamFault: true)
            return
        }
        let wasDone = tls.handshakeDone
        var more = true   // the response wants more bytes (or the connection is kept)
        var after = 0   // plaintext past the end of the response
        tls.withInput(UnsafeRawBufferPointer(start: c.recvBuffer, count: Int(result))) {
            while true {
                let n = tls.read(into: UnsafeMutableRawBufferPointer(start: tlsPlaintext, count: 65536))
                guard n > 0 else { break }
                if c.state == .busy, more, let job = c.job {
                    more = consume(UnsafeRawBufferPointer(start: tlsPlaintext, count: n), c, job)
                } else {
                    after += n
                }
            }
        }
        guard c.state != .free else { return }   // the response ended and the connection was not kept
        if tls.failed { tlsFailed(c); return }
        if after > 0 && c.state == .idle { retire(c); return }   // bytes nobody asked for
        flushTLS(c)   // handshake messages, or the answer to a key update
        keepSession(c, tls)
        if !wasDone && tls.handshakeDone && c.state == .connecting {
            sendRequest(c)
            return
        }
        if tls.closeNotifyReceived && c.state == .idle { retire(c); return }
        if more && c.state != .free { postRecv(c) }
    }

    /// The connection's session, for the pool's next connections to resume: kept once, when it
    /// first becomes resumable (TLS 1.2 at the handshake's end, TLS 1.3 with the server's first
    /// ticket), not copied again on every receive of the body.
    func keepSession(_ c: OriginConnection, _ tls: ClientTLS) {
        guard !c.sessionKept, tls.handshakeDone, let session = tls.resumableSession() else { return }
        tlsSessions[c.upstream] = session
        c.sessionKept = true
    }

    /// Bytes of the response (plaintext): the head parsed, the body appended to the fill. True
    /// while the response wants more; false once it is over (the connection released, retired or
    /// failed).
    func consume(_ received: UnsafeRawBufferPointer, _ c: OriginConnection, _ job: Job) -> Bool {
        var bytes = received
        if !c.headParsed {
            c.head.append(bytes)
            while !c.headParsed {
                switch HTTP1ResponseParser.parse(c.head.readable, headerBytesMax: config.responseHeadBytesMax) {
                case .needMore:
                    return true
                case .error(let why):
                    protocolError(c, job, why)
                    return false
                case let .head(h, consumed):
                    if h.isInterim {
                        // 100 Continue, 103 Early Hints, ...: skipped, a bounded number of them.
                        c.interimResponses += 1
                        guard c.interimResponses <= Self.interimResponsesMax else {
                            protocolError(c, job, "more than \(Self.interimResponsesMax) interim responses")
                            return false
                        }
                        c.head.consume(consumed)
                        continue
                    }
                    c.headParsed = true
                    guard accept(h, c, job) else { return false }
                    let rest = c.head.readable
                    bytes = UnsafeRawBufferPointer(rebasing: rest[consumed...])
                }
            }
        }
        let fill = job.fill
        var extra = 0
        if c.chunked != nil {
            let r = c.chunked!.feed(bytes) { piece in
                guard piece.count <= c.bodyExpected else { return false }
                append(piece, to: fill, c)
                return true
            }
            switch r {
            case .error(let why):
                protocolError(c, job, "chunked body: \(why)")
                return false
            case .consumed(let n): extra = bytes.count - n
            }
            if c.chunked!.isDone && c.bodyExpected > 0 {
                protocolError(c, job, "chunked body shorter than its Content-Range")
                return false
            }
            if c.bodyExpected == 0 && !c.chunked!.isDone { c.keepAlive = false }   // not waiting for the last chunk: not reusable
        } else {
            let take = min(bytes.count, c.bodyExpected)
            if take > 0 { append(UnsafeRawBufferPointer(rebasing: bytes[0..<take]), to: fill, c) }
            if bytes.count > take {
                if c.bodyToDiscard > 0 {
                    c.bodyToDiscard -= min(c.bodyToDiscard, bytes.count - take)
                } else {
                    extra = bytes.count - take
                }
            }
        }
        if extra > 0 {
            // Bytes past the end of the response, which we never asked for (a second response, or
            // a body longer than announced): the slice is what the framing delimited; the
            // connection cannot be trusted for another request.
            c.keepAlive = false
            logError(
                "origin \(upstreams[c.upstream].url): \(extra) bytes past the end of the response for \(fill.key.path) slice \(fill.key.index); connection closed"
            )
        }
        if c.bodyExpected == 0 {
            counters.observe(histogram: MetricLayout.originLatency, microseconds: clock.read() - c.sentMicroseconds)
            health[c.upstream] = Health()
            listener?.fillCompleted(fill)
            c.job = nil
            if c.keepAlive && c.bodyToDiscard == 0 { release(c) } else { retire(c) }
            startQueued()
            return false
        }
        listener?.fillProgressed(fill)
        return true
    }

    static let interimResponsesMax = 8

    func append(_ bytes: UnsafeRawBufferPointer, to fill: Fill, _ c: OriginConnection) {
        guard bytes.count > 0 else { return }
        let written = fill.buffer.available.load(ordering: .relaxed)
        (fill.buffer.bytes + written).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        counters.add(MetricLayout.originBytes, bytes.count)
        fill.buffer.available.store(written + bytes.count, ordering: .releasing)
        c.bodyExpected -= bytes.count
    }

    /// The origin broke HTTP: logged with the reason, the connection closed, the fill retried on
    /// the next upstream while no byte of it has been published (502 when none is left).
    func protocolError(_ c: OriginConnection, _ job: Job, _ why: String) {
        counters.originError("protocol")
        logError(
            "origin \(upstreams[c.upstream].url): \(why) for \(job.fill.key.path) slice \(job.fill.key.index); 502")
        failed(c, status: 502, upstreamFault: true)
    }

    func failed(_ c: OriginConnection, status: Int, upstreamFault: Bool, retry: Bool = true) {
        let job = c.job
        c.job = nil
        if upstreamFault {
            health[c.upstream].failures += 1
            health[c.upstream].probing = false
            if health[c.upstream].failures >= config.failuresBeforeDown {
                health[c.upstream].downUntilMicroseconds = clock.nowMicroseconds + Int64(config.downMilliseconds) * 1000
                logError(
                    "origin \(upstreams[c.upstream].url) marked down for \(config.downMilliseconds) ms after \(health[c.upstream].failures) failures"
                )
            }
        }
        retire(c)
        if let job {
            // Retry only while nothing of the slice has been published to waiters.
            if retry && job.fill.currentPhase == .requested {
                start(job, lastStatus: status)
            } else {
                fail(job.fill, status: status)
            }
        }
        startQueued()
    }

    func fail(_ fill: Fill, status: Int) {
        fill.failureStatus = status
        fill.phase.store(Fill.Phase.failed.rawValue, ordering: .releasing)
        listener?.fillFailed(fill)
    }

    func release(_ c: OriginConnection) {
        // The origin answered before its request was all sent: the connection cannot carry another;
        // nor is one kept for an upstream a reload removed, or for an address its name lost.
        guard !c.sendPending, isActive[c.upstream], c.endpoint != Int.max else { retire(c); return }
        c.state = .idle
        c.deadlineMicroseconds = 0
        idle[c.upstream].append(c.slot)
        postRecv(c)   // notices an upstream closing the idle connection
    }

    /// Closes a connection; its slot is reused once every operation on it has completed.
    func retire(_ c: OriginConnection) {
        guard c.state != .free else { return }
        if c.state == .idle, let i = idle[c.upstream].firstIndex(of: c.slot) { idle[c.upstream].remove(at: i) }
        open[c.upstream] -= 1
        c.state = .free
        c.job = nil
        c.tls = nil
        c.sessionKept = false
        c.wire.clear()
        if c.fd >= 0 {
            c.pendingOps += 1
            ring.shutdownAndClose(fd: c.fd, UserData(kind: OpKind.originClose, slot: c.slot, generation: c.generation))
            c.fd = -1
        }
        if c.pendingOps == 0 { recycle(c) }
    }

    func onClose(_ d: UserData) {
        let c = connections[Int(d.slot)]
        c.pendingOps -= 1
        assert(c.pendingOps >= 0, "an origin completion for slot \(c.slot) with no operation in flight")
        if c.state == .free && c.pendingOps == 0 { recycle(c) }
    }

    func recycle(_ c: OriginConnection) {
        guard !freeSlots.contains(c.slot) else { return }
        c.generation = (c.generation + 1) & 0xFF_FFFF
        freeSlots.append(c.slot)
    }

    func startQueued() {
        while !queued.isEmpty {
            let before = queued.count
            let job = queued.removeFirst()
            start(job)
            if queued.count >= before { break }   // still no connection free: wait for the next release
        }
    }

    /// Timeouts, from the worker's tick.
    func tick(now: Int64) {
        for c in connections
        where (c.state == .opening || c.state == .connecting || c.state == .busy) && c.deadlineMicroseconds > 0
            && now > c.deadlineMicroseconds
        {
            if let job = c.job {
                let what =
                    c.state == .busy
                    ? (c.headParsed ? "response not complete in time" : "no response head in time")
                    : "connect timed out"
                logError(
                    "origin \(upstreams[c.upstream].url): \(what) for \(job.fill.key.path) slice \(job.fill.key.index); 504"
                )
            }
            counters.originError("timeout")
            if c.state == .busy {
                failed(c, status: c.deadlineStatus, upstreamFault: true)
            } else {
                connectFailed(c, counted: true)   // a black-holed address: the name's next one
            }
        }
    }
}
