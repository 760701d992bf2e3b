import CEdgeRing
import EdgeClient
import EdgeIO
import Glibc

/// One request target: every URL of a run shares the scheme, host and port (one server).
public struct ReplayTarget: Equatable, Sendable {
    public var tls: Bool
    public var host: String
    public var port: Int
    public var path: String
    public var authority: String

    /// `http://IP:port/path?query` or `https://…`; the host is an IP literal (no DNS on the load
    /// generator's loop either).
    public static func parse(_ url: String) -> ReplayTarget? {
        let tls: Bool
        var rest: Substring
        if url.hasPrefix("http://") {
            tls = false; rest = url.dropFirst(7)
        } else if url.hasPrefix("https://") {
            tls = true; rest = url.dropFirst(8)
        } else {
            return nil
        }
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = String(rest[..<slash])
        rest = rest[slash...]
        let path = rest.isEmpty ? "/" : String(rest)
        var host = authority
        var port = tls ? 443 : 80
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") { guard let p = Int(after.dropFirst()) else { return nil }; port = p }
        } else if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            guard let p = Int(authority[authority.index(after: colon)...]) else { return nil }
            port = p
        }
        guard (1...65535).contains(port), !host.isEmpty else { return nil }
        return ReplayTarget(tls: tls, host: host, port: port, path: path, authority: authority)
    }
}

public struct ReplayOptions: Sendable {
    public var urls: [String]
    public var connections = 8
    /// Streams in flight per connection (at most the server's SETTINGS_MAX_CONCURRENT_STREAMS).
    public var streams = 8
    /// Requests per second, as an open model (Poisson-free constant rate); 0: closed loop, each
    /// stream sends its next request when its last one ends.
    public var rate = 0.0
    public var durationSeconds = 10.0
    /// A request without its whole response by then is a failure ("timeout").
    public var timeoutMilliseconds = 10_000
    /// The generator's own loop waking later than this behind its timer stops the run
    /// (`ReplayOutcome.generatorBehind`): its figures would measure itself.
    public var lagLimitMilliseconds = 200
    public var caFile: String? = nil
    /// Bounds the requests due but not yet sent (a server far too slow for the rate).
    public var backlogMax = 1_000_000
    public init(urls: [String]) { self.urls = urls }
}

public enum ReplayOutcome: Equatable, Sendable { case completed, generatorBehind }

public struct ReplayError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

private enum Op {
    static let socket: UInt8 = 1, connect: UInt8 = 2, send: UInt8 = 3, recv: UInt8 = 4, tick: UInt8 = 5,
        close: UInt8 = 6
}

/// `loadtest replay`: one io_uring loop driving `connections` HTTP/2 connections (h2c by prior
/// knowledge, or TLS with ALPN h2) through the project's own client session, replaying a URL list.
public final class ReplayEngine {
    let options: ReplayOptions
    let targets: [ReplayTarget]
    let ring: Ring
    let tlsContext: ClientTLS.Context?
    var connections: [ClientConnection] = []
    public internal(set) var recorder = Recorder()
    private var nextURL = 0
    private var nextConnection = 0
    /// Intended send times of requests due and not yet sent (open model), oldest first.
    private var backlog: [Int64] = []
    private var backlogHead = 0
    private var scheduled = 0
    private var startMicroseconds: Int64 = 0
    private var endMicroseconds: Int64 = 0
    private var expectedTickMicroseconds: Int64 = 0
    private let tickStorage = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 8)
    static let tickMilliseconds = 1
    private var stopping = false
    private var behind = false

    public init(options: ReplayOptions) throws {
        guard !options.urls.isEmpty else { throw ReplayError("no URL to replay") }
        var targets: [ReplayTarget] = []
        for u in options.urls {
            guard let t = ReplayTarget.parse(u), Self.isIPAddress(t.host) else {
                throw ReplayError("\(u): not an http:// or https:// URL with an IP host")
            }
            if let first = targets.first, first.tls != t.tls || first.host != t.host || first.port != t.port {
                throw ReplayError("\(u): every URL must name the same server as the first (\(first.authority))")
            }
            targets.append(t)
        }
        guard (1...100_000).contains(options.connections) else { throw ReplayError("connections: 1 to 100000") }
        guard (1...10_000).contains(options.streams) else { throw ReplayError("streams: 1 to 10000") }
        guard options.rate >= 0 && options.rate <= 10_000_000 else {
            throw ReplayError("rate: 0 to 10000000 per second")
        }
        guard options.durationSeconds > 0 && options.durationSeconds <= 86_400 else {
            throw ReplayError("duration: more than 0, at most 86400 seconds")
        }
        self.options = options
        self.targets = targets
        ring = try Ring(entries: max(256, min(32768, options.connections * 4 + 64)))
        tlsContext = targets[0].tls ? try ClientTLS.Context(caFile: options.caFile, alpn: ["h2"]) : nil
    }

    deinit { tickStorage.deallocate() }

    /// No name resolution on the loop: hosts are IPv4 or IPv6 literals.
    static func isIPAddress(_ host: String) -> Bool {
        withUnsafeTemporaryAllocation(byteCount: 128, alignment: 8) { edge_make_sockaddr(host, 1, $0.baseAddress) > 0 }
    }

    public var now: Int64 { ring.monotonicMicroseconds() }

    /// Runs the whole replay; returns whether it completed or the generator fell behind.
    public func run() throws -> (outcome: ReplayOutcome, seconds: Double) {
        startMicroseconds = now
        endMicroseconds = startMicroseconds + Int64(options.durationSeconds * 1_000_000)
        for i in 0..<options.connections {
            let c = ClientConnection(slot: UInt32(i), engine: self)
            connections.append(c)
            open(c)
        }
        armTick()
        let graceMicroseconds = Int64(options.timeoutMilliseconds) * 1000
        while true {
            let n = try ring.submitAndWait()
            for i in 0..<n {
                let c = ring.completion(at: i)
                dispatch(c.data, c.result)
            }
            let t = now
            if !stopping && t >= endMicroseconds { stopping = true }
            if stopping && (inFlight == 0 || t >= endMicroseconds + graceMicroseconds || behind) { break }
        }
        let seconds = Double(min(now, endMicroseconds) - startMicroseconds) / 1_000_000
        finish()
        return (behind ? .generatorBehind : .completed, seconds)
    }

    var inFlight: Int { connections.reduce(0) { $0 + $1.timings.count } }

    private func dispatch(_ d: UserData, _ result: Int32) {
        if d.kind == Op.tick { onTick(); return }
        let c = connections[Int(d.slot)]
        switch d.kind {
        case Op.socket: c.onSocket(result)
        case Op.connect: c.onConnect(result)
        case Op.send: c.onSend(result)
        case Op.recv: c.onRecv(result)
        case Op.close: c.onClosed()
        default: break
        }
        issue()
    }

    private func armTick() {
        expectedTickMicroseconds = now + Int64(Self.tickMilliseconds) * 1000
        ring.timeout(milliseconds: Self.tickMilliseconds, storage: tickStorage, UserData(kind: Op.tick, slot: 0))
    }

    private func onTick() {
        let t = now
        let lag = t - expectedTickMicroseconds
        recorder.generatorLag.record(microseconds: lag)
        if lag > Int64(options.lagLimitMilliseconds) * 1000 { behind = true }
        for c in connections {
            c.expireStreams(now: t, timeoutMicroseconds: Int64(options.timeoutMilliseconds) * 1000)
            if c.state == .closed && !stopping && t >= c.reopenAtMicroseconds { open(c) }
        }
        issue()
        armTick()
    }

    func open(_ c: ClientConnection) {
        let t = targets[0]
        c.reset(tls: tlsContext.map { ctx in { try ClientTLS(context: ctx, serverName: t.host) } })
        c.addressLength = edge_make_sockaddr(t.host, Int32(t.port), c.address)
        guard c.addressLength > 0 else { recorder.error("connect"); c.failed(kind: "connect", now: now); return }
        c.state = .opening
        c.pendingOps += 1
        ring.socket(ipv6: t.host.contains(":"), UserData(kind: Op.socket, slot: c.slot, generation: 0))
    }

    /// Sends what is due: in the open model every intended time up to now, in the closed model
    /// one request per free stream.
    func issue() {
        guard !stopping else { return }
        let t = now
        if options.rate > 0 {
            let interval = 1_000_000 / options.rate
            while true {
                let intended = startMicroseconds + Int64(Double(scheduled) * interval)
                guard intended <= t, intended < endMicroseconds else { break }
                scheduled += 1
                recorder.requests += 1
                if backlog.count - backlogHead >= options.backlogMax {
                    recorder.error("backlog_full")
                    continue
                }
                backlog.append(intended)
            }
            while backlogHead < backlog.count, let c = freeConnection() {
                send(on: c, intended: backlog[backlogHead], now: t)
                backlogHead += 1
            }
            if backlogHead > 4096 && backlogHead * 2 > backlog.count {
                backlog.removeFirst(backlogHead); backlogHead = 0
            }
        } else {
            while let c = freeConnection() {
                scheduled += 1
                recorder.requests += 1
                send(on: c, intended: t, now: t)
            }
        }
    }

    private func freeConnection() -> ClientConnection? {
        for _ in 0..<connections.count {
            let c = connections[nextConnection]
            nextConnection = (nextConnection + 1) % connections.count
            if c.canStart(streamsMax: options.streams) { return c }
        }
        return nil
    }

    private func send(on c: ClientConnection, intended: Int64, now t: Int64) {
        let target = targets[nextURL]
        nextURL = (nextURL + 1) % targets.count
        guard
            let stream = c.h2?.request(
                scheme: target.tls ? "https" : "http", authority: target.authority, path: target.path,
                headers: [("user-agent", "edge-loadtest")])
        else {
            recorder.error("protocol")
            return
        }
        c.timings[stream] = ClientConnection.Timing(intended: intended, sent: t)
        c.flush()
    }

    /// Requests never sent (no connection could take them) and those still in flight are failures.
    private func finish() {
        let unsent = backlog.count - backlogHead
        if unsent > 0 { recorder.error("not_sent", count: unsent) }
        for c in connections {
            if !c.timings.isEmpty { recorder.error("timeout", count: c.timings.count) }
            c.timings.removeAll()
            if c.fd >= 0 { Glibc.close(c.fd); c.fd = -1 }   // the run is over: no loop to block
        }
    }

    // MARK: what connections report

    func completed(_ timing: ClientConnection.Timing, status: Int, bytes: Int, hit: Bool?, now t: Int64) {
        recorder.responses += 1
        recorder.statuses[status, default: 0] += 1
        recorder.bytes += bytes
        if let head = timing.head {
            recorder.ttfbHeadCorrected.record(microseconds: head - timing.intended)
            recorder.ttfbHeadUncorrected.record(microseconds: head - timing.sent)
            if let hit {
                if hit {
                    recorder.hits += 1; recorder.hitTTFB.record(microseconds: head - timing.intended)
                } else {
                    recorder.misses += 1; recorder.missTTFB.record(microseconds: head - timing.intended)
                }
            }
        }
        if let first = timing.firstBodyByte {
            recorder.ttfbBodyCorrected.record(microseconds: first - timing.intended)
            recorder.ttfbBodyUncorrected.record(microseconds: first - timing.sent)
        }
        recorder.totalCorrected.record(microseconds: t - timing.intended)
        if status >= 500 { recorder.error("status_5xx") } else if status >= 400 { recorder.error("status_4xx") }
    }
}
