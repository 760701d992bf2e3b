import CEdgeRing
import EdgeClient
import EdgeHTTP
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
        guard case (let tls, var rest)? = splitHTTPScheme(url) else { return nil }
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
    /// Sent with every request (besides user-agent), names in lower case.
    public var headers: [(name: String, value: String)] = []
    /// Bounds the requests due but not yet sent (a server far too slow for the rate).
    public var backlogMax = 1_000_000
    public init(urls: [String]) { self.urls = urls }

    /// A URL file's lines: blanks and `#` comments skipped, spaces, tabs and CRs around each URL
    /// trimmed. Over bytes: Foundation's trimming took a tenth of a short run's CPU.
    public static func urlList(_ text: String) -> [String] {
        var text = text
        return text.withUTF8 { bytes in
            bytes.split(separator: UInt8(ascii: "\n")).compactMap { line in
                var lo = line.startIndex
                var hi = line.endIndex
                func blank(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0D }
                while lo < hi, blank(line[lo]) { lo += 1 }
                while hi > lo, blank(line[hi - 1]) { hi -= 1 }
                guard lo < hi, line[lo] != UInt8(ascii: "#") else { return nil }
                return String(decoding: line[lo..<hi], as: UTF8.self)
            }
        }
    }
}

public enum ReplayOutcome: Equatable, Sendable { case completed, generatorBehind }

public typealias ReplayError = LoadError

/// `loadtest replay`: one io_uring loop driving `connections` HTTP/2 connections (h2c by prior
/// knowledge, or TLS with ALPN h2) through the project's own client session, replaying a URL list.
/// A run on several threads is one engine per thread, each with its share of the connections
/// and of the rate.
public final class ReplayEngine: LoadLoop {
    let options: ReplayOptions
    /// The server every URL names (the first URL's), and each URL's path and query.
    let server: ReplayTarget
    let paths: [String]
    private var nextURL = 0
    /// Connections that had room when last seen (each at most once: `ClientConnection.roomy`).
    private var roomy: [ClientConnection] = []
    /// Intended send times of requests due and not yet sent (open model), oldest first.
    private var backlog: [Int64] = []
    private var backlogHead = 0
    private var scheduled = 0
    private var endMicroseconds: Int64 = 0
    private var stopping = false
    /// This engine's share of a run on `threads` threads: the `index`-th of every `threads` requests.
    let share: (index: Int, threads: Int)

    public init(
        options: ReplayOptions, share: (index: Int, threads: Int) = (0, 1), progress: Progress = Progress()
    ) throws {
        guard !options.urls.isEmpty else { throw ReplayError("no URL to replay") }
        guard let first = ReplayTarget.parse(options.urls[0]), Self.isIPAddress(first.host) else {
            throw ReplayError("\(options.urls[0]): not an http:// or https:// URL with an IP host")
        }
        // A URL spelling the first one's scheme and authority needs no parse of its own (a run
        // reads its whole list before it starts: 20,000 full parses took 50 ms of CPU).
        let prefix = (first.tls ? "https://" : "http://") + first.authority
        var paths: [String] = []
        paths.reserveCapacity(options.urls.count)
        for u in options.urls {
            if u.hasPrefix(prefix) {
                let rest = u.utf8.dropFirst(prefix.utf8.count)
                if rest.isEmpty { paths.append("/"); continue }
                if rest.first == UInt8(ascii: "/") { paths.append(String(Substring(rest))); continue }
            }
            guard let t = ReplayTarget.parse(u), Self.isIPAddress(t.host) else {
                throw ReplayError("\(u): not an http:// or https:// URL with an IP host")
            }
            guard first.tls == t.tls, first.host == t.host, first.port == t.port else {
                throw ReplayError("\(u): every URL must name the same server as the first (\(first.authority))")
            }
            paths.append(t.path)
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
        self.server = first
        self.paths = paths
        self.share = share
        try super.init(
            ringEntries: options.connections * 4 + 64, bufferBytes: 262_144, caFile: options.caFile,
            timeoutMilliseconds: options.timeoutMilliseconds, lagLimitMilliseconds: options.lagLimitMilliseconds,
            progress: progress)
        if first.tls {
            // Fail now on a CA file that cannot be read, not as a TLS error per connection.
            _ = try ClientTLS.Context(caFile: options.caFile, alpn: ["h2"])
        }
    }

    /// No name resolution on the loop: hosts are IPv4 or IPv6 literals.
    static func isIPAddress(_ host: String) -> Bool {
        withUnsafeTemporaryAllocation(byteCount: 128, alignment: 8) { edge_make_sockaddr(host, 1, $0.baseAddress) > 0 }
    }

    /// Runs the whole replay; returns whether it completed or the generator fell behind.
    public func run() throws -> (outcome: ReplayOutcome, seconds: Double) {
        let t0 = now
        endMicroseconds = t0 + Int64(options.durationSeconds * 1_000_000)
        let t = server
        let endpoint = Endpoint(host: t.host, port: t.port, tls: t.tls, http2: true, authority: t.authority)
        let mine = (0..<options.connections).filter { $0 % share.threads == share.index }.count
        for _ in 0..<max(1, mine) { makeConnection(endpoint, pool: nil).open() }
        let grace = timeoutMicroseconds
        try loop {
            let t = now
            if !stopping && t >= endMicroseconds { stopping = true }
            return stopping && (inFlight == 0 || t >= endMicroseconds + grace || behind)
        }
        let seconds = Double(min(now, endMicroseconds) - startMicroseconds) / 1_000_000
        finish()
        return (behind ? .generatorBehind : .completed, seconds)
    }

    var inFlight: Int { connections.reduce(0) { $0 + $1.exchanges.count } }

    override func tick(now t: Int64) {
        for c in connections {
            c.expire(now: t, timeoutMicroseconds: timeoutMicroseconds)
            if c.state == .closed && !stopping && t >= c.reopenAtMicroseconds { c.open() }
        }
    }

    override func afterEvent(_ c: ClientConnection) { issue(on: c) }
    override func afterTick() { issue(on: nil) }
    override func connectionReady(_ c: ClientConnection) {}
    override func connectionClosed(_ c: ClientConnection) {}
    override func exchangeCompleted(_ e: Exchange, on c: ClientConnection, now t: Int64) { record(e, now: t) }

    /// Sends what is due: in the open model every intended time up to now, in the closed model
    /// one request per free stream. After a completion only its connection (`only`) can have
    /// gained room; the others with room wait in `roomy`, and the tick adds any that gained room
    /// otherwise (a reconnect, a peer's SETTINGS). Scanning every connection after every
    /// completion, as before, cost more CPU than the requests themselves.
    func issue(on only: ClientConnection?) {
        guard !stopping else { return }
        if only == nil {
            for c in connections where !c.roomy && c.canStart(streamsMax: options.streams) {
                c.roomy = true; roomy.append(c)
            }
        }
        defer {
            if let only, !only.roomy, only.canStart(streamsMax: options.streams) {
                only.roomy = true; roomy.append(only)
            }
        }
        let t = now
        if options.rate > 0 {
            let interval = 1_000_000 / options.rate
            while true {
                let k = scheduled * share.threads + share.index
                let intended = startMicroseconds + Int64(Double(k) * interval)
                guard intended <= t, intended < endMicroseconds else { break }
                scheduled += 1
                recorder.requests += 1
                progress.requests.add(1)
                if backlog.count - backlogHead >= options.backlogMax {
                    recorder.error("backlog_full")
                    continue
                }
                backlog.append(intended)
            }
            while backlogHead < backlog.count, let c = freeConnection(only) {
                send(on: c, intended: backlog[backlogHead], now: t)
                backlogHead += 1
            }
            if backlogHead > 4096 && backlogHead * 2 > backlog.count {
                backlog.removeFirst(backlogHead); backlogHead = 0
            }
        } else {
            while let c = freeConnection(only) {
                scheduled += 1
                recorder.requests += 1
                progress.requests.add(1)
                send(on: c, intended: t, now: t)
            }
        }
    }

    /// `only` while it has room, then the connections known to have room.
    private func freeConnection(_ only: ClientConnection?) -> ClientConnection? {
        if let only, only.canStart(streamsMax: options.streams) { return only }
        while let c = roomy.popLast() {
            c.roomy = false
            if c.canStart(streamsMax: options.streams) { return c }
        }
        return nil
    }

    private func send(on c: ClientConnection, intended: Int64, now t: Int64) {
        let path = paths[nextURL]
        nextURL = nextURL + 1 == paths.count ? 0 : nextURL + 1
        if !c.start(path: path, headers: headers, exchange: Exchange(intended: intended, sent: t)) {
            recorder.error("protocol")
        }
    }
    private lazy var headers = [(name: "user-agent", value: "edge-loadtest")] + options.headers

    /// Requests never sent (no connection could take them) and those still in flight are failures.
    private func finish() {
        let unsent = backlog.count - backlogHead
        if unsent > 0 { recorder.error("not_sent", count: unsent) }
        for c in connections {
            let open = c.exchanges.values.filter { !$0.timedOut }.count
            if open > 0 { recorder.error("timeout", count: open) }
            c.exchanges.removeAll()
        }
        closeAll()
    }
}
