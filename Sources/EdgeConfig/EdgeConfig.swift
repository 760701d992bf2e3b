import EdgeHTTP
import Foundation
import TOMLKit

/// Reads and parses a configuration file; an unreadable file is a `ConfigError` too, so every
/// tool reports both the same way.
public func loadConfigFile<T>(_ path: String, _ parse: (String) throws -> T) throws -> T {
    guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
        throw ConfigError(key: "", reason: "cannot read \(path)")
    }
    return try parse(text)
}

/// A configuration error that names the key and says why.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let key: String
    public let reason: String
    public init(key: String, reason: String) { self.key = key; self.reason = reason }
    public var description: String { key.isEmpty ? reason : "\(key): \(reason)" }
}

public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Parses `127.0.0.1:8080` or `[::1]:8080`.
    public static func parse(_ s: String) -> ListenAddress? {
        var host: Substring, portText: Substring
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]"), s[s.index(after: close)...].hasPrefix(":") else { return nil }
            host = s[s.index(after: s.startIndex)..<close]
            portText = s[s.index(close, offsetBy: 2)...]
        } else {
            guard let colon = s.lastIndex(of: ":") else { return nil }
            host = s[..<colon]; portText = s[s.index(after: colon)...]
            if host.contains(":") { return nil }
        }
        guard isIPLiteral(host), let port = Int(portText), (1...65535).contains(port) else { return nil }
        return ListenAddress(host: String(host), port: port)
    }

    /// IPv4 dotted quad or IPv6 text form (inet_pton's, through `IPAddress`).
    static func isIPLiteral(_ h: Substring) -> Bool { IPAddress(h) != nil }
}

public struct ServerConfig: Sendable, Equatable {
    public var listen: [ListenAddress] = []
    public var listenTLS: [ListenAddress] = []
    public var tlsCertificate = ""
    public var tlsPrivateKey = ""
    /// 0 = one worker per online CPU.
    public var workers = 0
    /// Access log: a file path, "-" for standard output, "" for none.
    public var accessLog = "-"
    /// Serve HTTP/2 (h2 by ALPN, h2c by prior knowledge).
    public var http2 = true
    /// This cache's name in Cache-Status (RFC 9211): distinct names tell a parent's entry from a child's.
    public var cacheName = "edge"
}

public struct TokenConfig: Sendable, Equatable {
    public var name = "hdnts"
    public var keyHex = ""
    public var transitionKeyHex = ""
    public var leewaySeconds = 10
    public var lifetimeSecondsMax = 86400
    /// When false, /audio is served without a token (for a private network behind another gate).
    public var required = true
    /// A parent edge's key for its children (`edge-child-key`): their requests need no player
    /// token. "" : no children.
    public var childKey = ""
}

/// One HTTP/1.1 upstream: `http[s]://host[:port][/prefix]`. The host is an IP literal (IPv6 in
/// brackets) or a DNS name, which the edge resolves off the data path (`OriginResolver`); the
/// port defaults to the scheme's.
public struct Upstream: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var prefix: String
    public var url: String
    public var tls = false
    /// A parent edge (`origin.parents`), asked with the child key instead of the object store.
    public var isParent = false

    public init(host: String, port: Int, prefix: String, url: String, tls: Bool = false, isParent: Bool = false) {
        self.host = host; self.port = port; self.prefix = prefix; self.url = url; self.tls = tls
        self.isParent = isParent
    }

    /// Whether `host` is an address: nothing to resolve.
    public var isIPLiteral: Bool { ListenAddress.isIPLiteral(Substring(host)) }

    /// The request's `Host` (and what SigV4 signs): the name, or the literal (IPv6 in brackets),
    /// with the port unless it is the scheme's default.
    public var authority: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return port == (tls ? 443 : 80) ? h : "\(h):\(port)"
    }

    public static func parse(_ u: String) -> Upstream? { try? parseOrExplain(u).get() }

    /// The upstream, or why `u` is not one.
    public static func parseOrExplain(_ u: String) -> Result<Upstream, ConfigError> {
        guard let (tls, rest) = splitHTTPScheme(u) else {
            return .failure(
                ConfigError(
                    key: "origin.urls", reason: "\(u): unsupported scheme (http://, https:// or file:// expected)"))
        }
        let bad = { (why: String) in
            Result<Upstream, ConfigError>.failure(ConfigError(key: "origin.urls", reason: "\(u): \(why)"))
        }
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<slash]
        guard !authority.contains("@") else { return bad("credentials in the URL are not supported (see origin.auth)") }
        var host: Substring, portText: Substring? = nil
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return bad("an IPv6 address needs its closing ]") }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return bad("expected :port after the IPv6 address") }
                portText = after.dropFirst()
            }
            guard host.contains(":"), ListenAddress.isIPLiteral(host) else {
                return bad("[\(host)] is not an IPv6 address")
            }
        } else {
            if let colon = authority.lastIndex(of: ":") {
                host = authority[..<colon]; portText = authority[authority.index(after: colon)...]
            } else {
                host = authority
            }
            guard !host.contains(":") else { return bad("an IPv6 address goes in brackets: http://[::1]:8080") }
            guard ListenAddress.isIPLiteral(host) || isHostName(host) else {
                return bad("\"\(host)\" is neither an IP address nor a host name")
            }
        }
        var port = tls ? 443 : 80
        if let portText {
            guard portText.utf8.count <= 5, portText.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                let p = Int(portText),
                (1...65535).contains(p)
            else { return bad("the port must be 1...65535") }
            port = p
        }
        var prefix = String(rest[slash...])
        while prefix.hasSuffix("/") { prefix.removeLast() }
        guard !prefix.contains("?"), !prefix.contains("#") else { return bad("no query or fragment in an origin URL") }
        return .success(Upstream(host: String(host).lowercased(), port: port, prefix: prefix, url: u, tls: tls))
    }

    /// A DNS name (RFC 1123): labels of letters, digits and inner hyphens, 1 to 63 bytes each,
    /// 253 in all; not all digits (that would be a mistyped address).
    static func isHostName(_ h: Substring) -> Bool {
        guard !h.isEmpty, h.utf8.count <= 253 else { return false }
        var allDigits = true
        for label in h.split(separator: ".", omittingEmptySubsequences: false) {
            guard (1...63).contains(label.utf8.count), label.first != "-", label.last != "-" else { return false }
            for c in label.utf8 {
                let digit = c >= 0x30 && c <= 0x39
                guard digit || (c | 0x20 >= 0x61 && c | 0x20 <= 0x7A) || c == 0x2D else { return false }
                if !digit { allDigits = false }
            }
        }
        return !allDigits
    }
}

/// What signs origin requests for a private bucket (S3, GCS's XML API with HMAC keys, MinIO,
/// Ceph RGW). The secret never reaches a log: `description` leaves it out.
public struct SigV4Credentials: Sendable, Equatable, CustomStringConvertible {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var region: String
    public var service: String
    public init(accessKeyID: String, secretAccessKey: String, region: String, service: String) {
        self.accessKeyID = accessKeyID; self.secretAccessKey = secretAccessKey; self.region = region
        self.service = service
    }
    public var description: String { "s3-sigv4(\(accessKeyID), \(region), \(service))" }
}

public struct OriginConfig: Sendable, Equatable {
    public var urls: [String] = []
    public var upstreams: [Upstream] = []
    public var connectTimeoutMilliseconds = 2000
    public var firstByteTimeoutMilliseconds = 10_000
    public var idleReadTimeoutMilliseconds = 10_000
    /// Upstreams tried for one fill (the first, then the next ones in order).
    public var attemptsMax = 2
    /// Open connections per upstream per worker (idle ones kept for reuse).
    public var connectionsPerUpstreamMax = 64
    /// Consecutive failures after which an upstream is skipped for `down_milliseconds`, then probed.
    public var failuresBeforeDown = 3
    public var downMilliseconds = 10_000
    /// Whole time for one slice response, head and body: a slow-loris origin trickling bytes
    /// under the idle-read timeout is cut here.
    public var responseTimeoutMilliseconds = 60_000
    /// Response head bound (status line and fields); larger heads are a 502.
    public var responseHeadBytesMax = 32768
    /// Fetches waiting per worker for a free upstream connection; beyond it clients get 503.
    public var queueMax = 1024
    /// Trusted certificates for https:// upstreams (PEM); nil: the system's store.
    public var caFile: String? = nil
    /// Accept any certificate from https:// upstreams (logged at start-up): for a test rig only.
    public var insecureSkipVerify = false
    /// Upstream host names are resolved again this often (and at start-up and reload).
    public var resolveIntervalSeconds = 30
    /// Origin requests signed with AWS Signature Version 4 (`auth = "s3-sigv4"`); nil: unsigned.
    public var sigV4: SigV4Credentials? = nil
    /// Parent edges (a shield tier): a miss asks the parent that rendezvous hashing of the object's
    /// path picks (they are in `upstreams` too, first, marked `isParent`).
    public var parentURLs: [String] = []
    /// Sent to the parents in `edge-child-key` (their `token.child_key`).
    public var parentKey = ""
    /// When a parent fails: the next parent in the object's order, or the origin (`urls`).
    public var parentsFallbackToOrigin = false
    public var parents: [Upstream] { upstreams.filter(\.isParent) }
    /// The directory of the `file://` origin, if that is the origin.
    public var directory: String? {
        for u in urls where u.hasPrefix("file://") { return String(u.dropFirst("file://".count)) }
        return nil
    }
}

public struct CacheConfig: Sendable, Equatable {
    /// Where cached slices live; survives restarts. Required with HTTP origins.
    public var directory = ""
    public var diskBytesLimit = 10 * 1024 * 1024 * 1024
    public var ramBytesLimit = 512 * 1024 * 1024
    /// Objects are cached as slices of this size (the unit of origin fetches).
    public var sliceBytes = 262_144
    /// Origin fills in progress at once, all workers together.
    public var fillsMax = 1024
    /// Largest object an origin may claim (Content-Range complete length, or Content-Length of a
    /// 200): a bigger claim is a 502 and nothing of it is stored.
    public var objectBytesMax = 4 * 1024 * 1024 * 1024
    /// Slice files being written per worker; completed fills beyond it wait for a write.
    public var diskWritesInFlightMax = 64
    /// Completed fills waiting for a slice write per worker; beyond it a slice stays in RAM only.
    public var diskWriteQueueMax = 1024
    /// Bytes the disk tier may hold pinned (pre-warmed release content); 0: no pins.
    public var pinnedBytesMax = 0
}

/// Every bound the server enforces. Names end in their unit.
/// The operators' API: its own listener, never a player-facing port.
public struct AdminConfig: Sendable, Equatable {
    /// Nil: no admin API.
    public var listen: ListenAddress? = nil
    /// The bearer token every admin request must carry (from `admin.token` or `admin.token_file`).
    public var token = ""
    /// Pre-warm jobs, persisted here (default: `prewarm.sqlite` in the cache directory).
    public var prewarmDatabase = ""
    /// Pre-warm jobs kept (finished ones are forgotten oldest first beyond this).
    public var prewarmJobsMax = 256
    /// Objects one pre-warm job may name (paths, or the files of its tracks' manifests).
    public var prewarmObjectsPerJobMax = 100_000
    /// The ceiling on a job's `origin_concurrency` (and its default when absent: 4).
    public var prewarmOriginConcurrencyMax = 64
    /// Request bodies larger than this are refused with 413.
    public var requestBodyBytesMax = 4 * 1024 * 1024
    public init() {}
}

public struct LimitsConfig: Sendable, Equatable {
    public var connectionsPerWorkerMax = 10_000
    public var ringEntries = 1024
    public var listenBacklog = 1024
    public var requestLineBytesMax = 8192
    public var headerBytesMax = 16384
    public var headerCountMax = 64
    public var requestBodyBytesMax = 0
    public var rangesMax = 16
    public var requestsPerConnectionMax = 10_000
    public var recvBufferBytes = 16384
    public var outputBufferBytesMax = 262_144
    public var readChunkBytes = 65536
    /// Origin-directory files up to this size are sent on cleartext from a read-only mapping
    /// (page cache to socket, no read into a buffer); larger ones, and TLS, are read. 0: never.
    public var mappedFileBytesMax = 268_435_456
    /// How long a mapped file of at most 1 MiB, found wholly in the page cache, is trusted to
    /// stay there before it is checked again (0: every chunk is checked).
    public var pageCacheCheckMilliseconds = 100
    public var openFilesMax = 4096
    public var openFileRevalidateMilliseconds = 5000
    public var headerTimeoutMilliseconds = 10_000
    public var keepAliveTimeoutMilliseconds = 60_000
    public var sendTimeoutMilliseconds = 30_000
    public var requestTimeoutMilliseconds = 300_000
    public var drainTimeoutMilliseconds = 10_000
    public var h2ConcurrentStreamsMax = 128
    public var h2HeaderListBytesMax = 16384
    public var h2ContinuationsMax = 8
    public var h2StreamResetBurst = 1000
    public var h2StreamResetsPerSecond = 33
    public var h2ServerResetsPerConnectionMax = 200
    public var accessLogBufferBytesMax = 1_048_576
    /// Requests and response bodies waiting per worker (on an origin fill or a file open);
    /// beyond it requests get 503 and bodies are cut.
    public var waitingPerWorkerMax = 16384
    /// Time from an HTTP/2 stream's first HEADERS to the end of its request (END_STREAM); a stream
    /// that stays incomplete longer is reset and its memory released.
    public var h2StreamRequestTimeoutMilliseconds = 10_000
}

/// Regional licensing at the edge: `[geo]`. Off unless `database` is set.
public struct GeoConfig: Sendable, Equatable {
    /// A MaxMind DB with a country field (GeoLite2/GeoIP2 Country or City, or any such MMDB).
    public var database = ""
    /// Refuse tokens that carry no `geo` claim.
    public var requireClaim = false
    /// Addresses the database has no country for: allowed unless "deny".
    public var allowUnknown = true
    /// Peers whose `X-Forwarded-For` names the client (CIDR or single addresses).
    public var trustedProxies: [IPNetwork] = []
    /// `X-Forwarded-For` entries read from the right, at most.
    public var forwardedHopsMax = 8
    /// A larger database file is refused (it is locked in memory).
    public var databaseBytesMax = 512 * 1024 * 1024
    public var enabled: Bool { !database.isEmpty }
}

public struct EdgeConfig: Sendable {
    public var server = ServerConfig()
    public var token = TokenConfig()
    public var origin = OriginConfig()
    public var cache = CacheConfig()
    public var limits = LimitsConfig()
    public var admin = AdminConfig()
    public var geo = GeoConfig()

    public init() {}

    /// Parses and validates; throws `ConfigError` naming the first bad key.
    public static func parse(_ text: String) throws -> EdgeConfig {
        let root = try Reader.parse(text)
        var c = EdgeConfig()
        var r = Reader(root: root)
        // [catalog], [packager] and [auth] belong to the other services: one file may serve all.
        try r.allowOnly(
            ["server", "token", "origin", "cache", "limits", "admin", "geo", "catalog", "packager", "auth"], in: "")

        let s = try r.table("server")
        try r.allowOnly(
            [
                "listen", "listen_tls", "tls_certificate", "tls_private_key", "workers", "access_log", "http2",
                "cache_name",
            ], in: "server")
        c.server.listen = try r.addresses(s, "server.listen") ?? []
        c.server.listenTLS = try r.addresses(s, "server.listen_tls") ?? []
        c.server.tlsCertificate = try r.string(s, "server.tls_certificate") ?? ""
        c.server.tlsPrivateKey = try r.string(s, "server.tls_private_key") ?? ""
        c.server.workers = try r.int(s, "server.workers", 0...256) ?? 0
        c.server.accessLog = try r.string(s, "server.access_log") ?? "-"
        c.server.http2 = try r.bool(s, "server.http2") ?? true
        c.server.cacheName = try r.string(s, "server.cache_name") ?? "edge"
        guard (1...64).contains(c.server.cacheName.utf8.count),
            c.server.cacheName.utf8.allSatisfy({
                ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || $0 == 0x2D || $0 == 0x2E
                    || $0 == 0x5F
            })
        else {
            throw ConfigError(
                key: "server.cache_name", reason: "1 to 64 letters, digits, '-', '.' or '_' (an RFC 9211 token)")
        }
        if c.server.listen.isEmpty && c.server.listenTLS.isEmpty {
            throw ConfigError(
                key: "server.listen", reason: "at least one of server.listen and server.listen_tls must be set")
        }
        try Self.refuseOverlappingListeners(cleartext: c.server.listen, tls: c.server.listenTLS)
        if !c.server.listenTLS.isEmpty {
            if c.server.tlsCertificate.isEmpty {
                throw ConfigError(key: "server.tls_certificate", reason: "required when server.listen_tls is set")
            }
            if c.server.tlsPrivateKey.isEmpty {
                throw ConfigError(key: "server.tls_private_key", reason: "required when server.listen_tls is set")
            }
        }

        let t = try r.table("token")
        try r.allowOnly(
            [
                "name", "key_hex", "transition_key_hex", "leeway_seconds", "max_lifetime_seconds", "required",
                "child_key", "child_key_file",
            ], in: "token"
        )
        c.token.name = try r.string(t, "token.name") ?? "hdnts"
        guard !c.token.name.isEmpty,
            c.token.name.utf8.allSatisfy({
                ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || $0 == 0x5F || $0 == 0x2D
            })
        else {
            throw ConfigError(key: "token.name", reason: "must be a non-empty name of letters, digits, '_' or '-'")
        }
        c.token.keyHex = try r.string(t, "token.key_hex") ?? ""
        c.token.transitionKeyHex = try r.string(t, "token.transition_key_hex") ?? ""
        c.token.leewaySeconds = try r.int(t, "token.leeway_seconds", 0...3600) ?? 10
        c.token.lifetimeSecondsMax = try r.int(t, "token.max_lifetime_seconds", 1...31_536_000) ?? 86400
        c.token.required = try r.bool(t, "token.required") ?? true
        c.token.childKey = try r.inlineOrFile(t, "token.child_key") ?? ""
        if !c.token.childKey.isEmpty
            && !(c.token.childKey.utf8.count >= 16 && c.token.childKey.utf8.count <= 256
                && c.token.childKey.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }))
        {
            throw ConfigError(key: "token.child_key", reason: "16 to 256 printable characters")
        }
        if c.token.required && c.token.keyHex.isEmpty {
            throw ConfigError(key: "token.key_hex", reason: "required (hex HMAC key) unless token.required = false")
        }
        for (key, value) in [("token.key_hex", c.token.keyHex), ("token.transition_key_hex", c.token.transitionKeyHex)]
        where !value.isEmpty {
            guard value.utf8.count % 2 == 0,
                value.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x66) })
            else {
                throw ConfigError(key: key, reason: "must be hex digits, an even count")
            }
            guard value.utf8.count >= 32 else {
                throw ConfigError(key: key, reason: "too short: at least 16 bytes (32 hex digits)")
            }
        }

        let o = try r.table("origin")
        try r.allowOnly(
            [
                "urls", "connect_timeout_milliseconds", "first_byte_timeout_milliseconds",
                "idle_read_timeout_milliseconds",
                "attempts_max", "connections_per_upstream_max", "failures_before_down", "down_milliseconds",
                "response_timeout_milliseconds", "response_head_bytes_max", "queue_max", "ca_file",
                "insecure_skip_verify", "resolve_interval_seconds", "auth", "access_key_id", "secret_access_key",
                "secret_access_key_file", "region", "service", "parents", "parent_key", "parent_key_file",
                "parents_fallback",
            ], in: "origin")
        c.origin.urls = try r.strings(o, "origin.urls") ?? []
        if c.origin.urls.isEmpty { throw ConfigError(key: "origin.urls", reason: "at least one origin is required") }
        var files = 0
        for u in c.origin.urls {
            if u.hasPrefix("file://") {
                guard u.dropFirst(7).hasPrefix("/") else {
                    throw ConfigError(
                        key: "origin.urls", reason: "\(u): a file origin needs an absolute path (file:///dir)")
                }
                files += 1
            } else {
                c.origin.upstreams.append(try Upstream.parseOrExplain(u).get())
            }
        }
        if files > 0 && (files > 1 || !c.origin.upstreams.isEmpty) {
            throw ConfigError(
                key: "origin.urls", reason: "either one file:// origin or one or more http:// or https:// origins")
        }
        c.origin.connectTimeoutMilliseconds = try r.int(o, "origin.connect_timeout_milliseconds", 10...600_000) ?? 2000
        c.origin.firstByteTimeoutMilliseconds =
            try r.int(o, "origin.first_byte_timeout_milliseconds", 10...600_000) ?? 10_000
        c.origin.idleReadTimeoutMilliseconds =
            try r.int(o, "origin.idle_read_timeout_milliseconds", 10...600_000) ?? 10_000
        c.origin.attemptsMax = try r.int(o, "origin.attempts_max", 1...16) ?? 2
        c.origin.connectionsPerUpstreamMax = try r.int(o, "origin.connections_per_upstream_max", 1...10_000) ?? 64
        c.origin.failuresBeforeDown = try r.int(o, "origin.failures_before_down", 1...1000) ?? 3
        c.origin.downMilliseconds = try r.int(o, "origin.down_milliseconds", 100...3_600_000) ?? 10_000
        c.origin.responseTimeoutMilliseconds =
            try r.int(o, "origin.response_timeout_milliseconds", 100...3_600_000) ?? 60_000
        c.origin.responseHeadBytesMax = try r.int(o, "origin.response_head_bytes_max", 1024...1_048_576) ?? 32768
        c.origin.queueMax = try r.int(o, "origin.queue_max", 1...1_000_000) ?? 1024
        c.origin.caFile = try r.string(o, "origin.ca_file")
        if let f = c.origin.caFile, !FileManager.default.isReadableFile(atPath: f) {
            throw ConfigError(key: "origin.ca_file", reason: "cannot read \(f)")
        }
        c.origin.insecureSkipVerify = try r.bool(o, "origin.insecure_skip_verify") ?? false
        if c.origin.insecureSkipVerify && c.origin.caFile != nil {
            throw ConfigError(
                key: "origin.insecure_skip_verify", reason: "set origin.ca_file or skip verification, not both")
        }
        c.origin.resolveIntervalSeconds = try r.int(o, "origin.resolve_interval_seconds", 1...86400) ?? 30
        try Self.parseParents(r, o, &c.origin)
        c.origin.sigV4 = try Self.parseSigV4(r, o)
        if c.origin.sigV4 != nil && c.origin.upstreams.isEmpty {
            throw ConfigError(
                key: "origin.auth", reason: "signs requests to http(s):// origins; a file:// origin has none")
        }

        let k = try r.table("cache")
        try r.allowOnly(
            [
                "dir", "disk_bytes_limit", "ram_bytes_limit", "slice_bytes", "fills_max", "object_bytes_max",
                "disk_writes_in_flight_max", "disk_write_queue_max", "pinned_bytes_max",
            ], in: "cache")
        c.cache.directory = try r.string(k, "cache.dir") ?? ""
        c.cache.diskBytesLimit = try r.int(k, "cache.disk_bytes_limit", 0...(1 << 50)) ?? c.cache.diskBytesLimit
        c.cache.ramBytesLimit = try r.int(k, "cache.ram_bytes_limit", 0...(1 << 42)) ?? c.cache.ramBytesLimit
        c.cache.sliceBytes = try r.int(k, "cache.slice_bytes", 16384...(64 << 20)) ?? c.cache.sliceBytes
        c.cache.fillsMax = try r.int(k, "cache.fills_max", 1...1_000_000) ?? c.cache.fillsMax
        c.cache.objectBytesMax = try r.int(k, "cache.object_bytes_max", 1...(1 << 44)) ?? c.cache.objectBytesMax
        c.cache.diskWritesInFlightMax =
            try r.int(k, "cache.disk_writes_in_flight_max", 1...100_000) ?? c.cache.diskWritesInFlightMax
        c.cache.diskWriteQueueMax =
            try r.int(k, "cache.disk_write_queue_max", 0...1_000_000) ?? c.cache.diskWriteQueueMax
        c.cache.pinnedBytesMax = try r.int(k, "cache.pinned_bytes_max", 0...(1 << 50)) ?? 0
        if c.cache.pinnedBytesMax > c.cache.diskBytesLimit / 2 {
            throw ConfigError(
                key: "cache.pinned_bytes_max",
                reason: "must be at most half of cache.disk_bytes_limit (pins must leave room for everything else)")
        }
        if !c.origin.upstreams.isEmpty && c.cache.directory.isEmpty {
            throw ConfigError(key: "cache.dir", reason: "required with http:// origins")
        }
        if c.cache.sliceBytes % 4096 != 0 {
            throw ConfigError(key: "cache.slice_bytes", reason: "must be a multiple of 4096")
        }

        let l = try r.table("limits")
        var lim = LimitsConfig()
        let limitKeys: [(String, WritableKeyPath<LimitsConfig, Int>, ClosedRange<Int>)] = [
            ("connections_per_worker_max", \.connectionsPerWorkerMax, 1...1_000_000),
            ("ring_entries", \.ringEntries, 64...32768),
            ("listen_backlog", \.listenBacklog, 1...65535),
            ("request_line_bytes_max", \.requestLineBytesMax, 64...1_048_576),
            ("header_bytes_max", \.headerBytesMax, 256...1_048_576),
            ("header_count_max", \.headerCountMax, 4...1000),
            ("request_body_bytes_max", \.requestBodyBytesMax, 0...1_048_576),
            ("ranges_max", \.rangesMax, 1...1000),
            ("requests_per_connection_max", \.requestsPerConnectionMax, 1...100_000_000),
            ("recv_buffer_bytes", \.recvBufferBytes, 1024...1_048_576),
            ("output_buffer_bytes_max", \.outputBufferBytesMax, 16384...67_108_864),
            ("read_chunk_bytes", \.readChunkBytes, 4096...4_194_304),
            ("mapped_file_bytes_max", \.mappedFileBytesMax, 0...(1 << 40)),
            ("page_cache_check_milliseconds", \.pageCacheCheckMilliseconds, 0...10_000),
            ("open_files_max", \.openFilesMax, 1...1_000_000),
            ("open_file_revalidate_milliseconds", \.openFileRevalidateMilliseconds, 0...3_600_000),
            ("header_timeout_milliseconds", \.headerTimeoutMilliseconds, 100...3_600_000),
            ("keepalive_timeout_milliseconds", \.keepAliveTimeoutMilliseconds, 100...3_600_000),
            ("send_timeout_milliseconds", \.sendTimeoutMilliseconds, 100...3_600_000),
            ("request_timeout_milliseconds", \.requestTimeoutMilliseconds, 100...86_400_000),
            ("drain_timeout_milliseconds", \.drainTimeoutMilliseconds, 0...3_600_000),
            ("h2_concurrent_streams_max", \.h2ConcurrentStreamsMax, 1...10000),
            ("h2_header_list_bytes_max", \.h2HeaderListBytesMax, 256...1_048_576),
            ("h2_continuations_max", \.h2ContinuationsMax, 1...1000),
            ("h2_stream_reset_burst", \.h2StreamResetBurst, 1...1_000_000),
            ("h2_stream_resets_per_second", \.h2StreamResetsPerSecond, 1...1_000_000),
            ("h2_server_resets_per_connection_max", \.h2ServerResetsPerConnectionMax, 1...1_000_000),
            ("access_log_buffer_bytes_max", \.accessLogBufferBytesMax, 4096...268_435_456),
            ("waiting_per_worker_max", \.waitingPerWorkerMax, 1...10_000_000),
            ("h2_stream_request_timeout_milliseconds", \.h2StreamRequestTimeoutMilliseconds, 100...3_600_000),
        ]
        try r.allowOnly(limitKeys.map { $0.0 }, in: "limits")
        for (key, path, range) in limitKeys {
            if let v = try r.int(l, "limits.\(key)", range) { lim[keyPath: path] = v }
        }
        if lim.readChunkBytes > lim.outputBufferBytesMax {
            throw ConfigError(key: "limits.read_chunk_bytes", reason: "must not exceed limits.output_buffer_bytes_max")
        }
        if lim.requestLineBytesMax > lim.headerBytesMax {
            throw ConfigError(key: "limits.request_line_bytes_max", reason: "must not exceed limits.header_bytes_max")
        }
        c.limits = lim
        c.admin = try Self.parseAdmin(&r, cacheDirectory: c.cache.directory)
        c.geo = try Self.parseGeo(&r)
        if c.geo.enabled && !c.token.required {
            throw ConfigError(
                key: "geo.database", reason: "regions are claims in tokens: [geo] needs token.required = true")
        }
        if let a = c.admin.listen {
            try Self.refuseOverlappingListeners(cleartext: c.server.listen, tls: c.server.listenTLS, admin: a)
        }
        return c
    }

    static func parseParents(_ r: Reader, _ o: TOMLTable?, _ origin: inout OriginConfig) throws {
        origin.parentURLs = try r.strings(o, "origin.parents") ?? []
        guard !origin.parentURLs.isEmpty else {
            for k in ["parent_key", "parent_key_file", "parents_fallback"] where try r.string(o, "origin.\(k)") != nil {
                throw ConfigError(key: "origin.\(k)", reason: "only with origin.parents")
            }
            return
        }
        guard origin.parentURLs.count <= 64 else {
            throw ConfigError(key: "origin.parents", reason: "at most 64 parents (\(origin.parentURLs.count) given)")
        }
        guard !origin.upstreams.isEmpty else {
            throw ConfigError(
                key: "origin.parents", reason: "a file:// origin has no parents (they need http(s):// urls)")
        }
        var parents: [Upstream] = []
        for u in origin.parentURLs {
            var p = try Upstream.parseOrExplain(u).mapError { ConfigError(key: "origin.parents", reason: $0.reason) }
                .get()
            guard !origin.upstreams.contains(where: { $0.url == u }), !parents.contains(where: { $0.url == u }) else {
                throw ConfigError(key: "origin.parents", reason: "\(u) is listed twice (parents and urls are distinct)")
            }
            p.isParent = true
            parents.append(p)
        }
        origin.upstreams = parents + origin.upstreams
        origin.parentKey = try r.inlineOrFile(o, "origin.parent_key") ?? ""
        guard origin.parentKey.utf8.count >= 16, origin.parentKey.utf8.count <= 256,
            origin.parentKey.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F })
        else {
            throw ConfigError(
                key: "origin.parent_key",
                reason: "required with origin.parents: 16 to 256 printable characters (the parents' token.child_key)")
        }
        switch try r.string(o, "origin.parents_fallback") ?? "next" {
        case "next": origin.parentsFallbackToOrigin = false
        case "origin": origin.parentsFallbackToOrigin = true
        case let other:
            throw ConfigError(key: "origin.parents_fallback", reason: "\"\(other)\": expected \"next\" or \"origin\"")
        }
    }

    static func parseSigV4(_ r: Reader, _ o: TOMLTable?) throws -> SigV4Credentials? {
        let auth = try r.string(o, "origin.auth") ?? "none"
        let keys = ["access_key_id", "secret_access_key", "secret_access_key_file", "region", "service"]
        guard auth == "s3-sigv4" else {
            guard auth == "none" else {
                throw ConfigError(key: "origin.auth", reason: "\"\(auth)\": expected \"none\" or \"s3-sigv4\"")
            }
            for k in keys where try r.string(o, "origin.\(k)") != nil {
                throw ConfigError(key: "origin.\(k)", reason: "only with origin.auth = \"s3-sigv4\"")
            }
            return nil
        }
        guard let id = try r.string(o, "origin.access_key_id"), !id.isEmpty, id.utf8.count <= 128,
            id.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != 0x2F && $0 != 0x2C })
        else {
            throw ConfigError(
                key: "origin.access_key_id", reason: "required: 1 to 128 printable characters, no '/' or ','")
        }
        let secret = try r.inlineOrFile(o, "origin.secret_access_key")
        // The reason never quotes the secret.
        guard let secret, !secret.isEmpty, secret.utf8.count <= 256, secret.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F })
        else {
            throw ConfigError(
                key: "origin.secret_access_key",
                reason: "required (or secret_access_key_file): 1 to 256 printable characters")
        }
        let token = { (key: String, fallback: String?) throws -> String in
            guard let v = try r.string(o, "origin.\(key)") ?? fallback, !v.isEmpty, v.utf8.count <= 64,
                v.utf8.allSatisfy({
                    ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || $0 == 0x2D || $0 == 0x5F
                })
            else {
                throw ConfigError(
                    key: "origin.\(key)", reason: "required: letters, digits, '-' or '_' (e.g. us-east-1)")
            }
            return v
        }
        return SigV4Credentials(
            accessKeyID: id, secretAccessKey: secret, region: try token("region", nil),
            service: try token("service", "s3"))
    }

    static func parseGeo(_ r: inout Reader) throws -> GeoConfig {
        var g = GeoConfig()
        let t = try r.table("geo")
        try r.allowOnly(
            ["database", "require_claim", "unknown", "trusted_proxies", "forwarded_hops_max", "database_bytes_max"],
            in: "geo")
        guard t != nil else { return g }
        g.database = try r.string(t, "geo.database") ?? ""
        guard !g.database.isEmpty else {
            throw ConfigError(key: "geo.database", reason: "required in [geo]: the path of a MaxMind DB (.mmdb)")
        }
        g.requireClaim = try r.bool(t, "geo.require_claim") ?? false
        switch try r.string(t, "geo.unknown") ?? "allow" {
        case "allow": g.allowUnknown = true
        case "deny": g.allowUnknown = false
        case let other: throw ConfigError(key: "geo.unknown", reason: "\"\(other)\": expected \"allow\" or \"deny\"")
        }
        let proxies = try r.strings(t, "geo.trusted_proxies") ?? []
        guard proxies.count <= 1024 else {
            throw ConfigError(key: "geo.trusted_proxies", reason: "at most 1024 entries (\(proxies.count) given)")
        }
        g.trustedProxies = try proxies.map {
            guard let n = IPNetwork.parse($0) else {
                throw ConfigError(
                    key: "geo.trusted_proxies",
                    reason: "\"\($0)\" is not an address or a network (10.0.0.0/8, 2001:db8::/32; no host bits)")
            }
            return n
        }
        g.forwardedHopsMax = try r.int(t, "geo.forwarded_hops_max", 1...64) ?? g.forwardedHopsMax
        g.databaseBytesMax = try r.int(t, "geo.database_bytes_max", 1024...(4 << 30)) ?? g.databaseBytesMax
        return g
    }

    static func parseAdmin(_ r: inout Reader, cacheDirectory: String) throws -> AdminConfig {
        var a = AdminConfig()
        let t = try r.table("admin")
        try r.allowOnly(
            [
                "listen", "token", "token_file", "prewarm_database", "prewarm_jobs_max",
                "prewarm_objects_per_job_max", "prewarm_origin_concurrency_max", "request_body_bytes_max",
            ], in: "admin")
        guard t != nil else { return a }
        guard let listen = try r.addresses(t, "admin.listen"), listen.count == 1 else {
            throw ConfigError(key: "admin.listen", reason: "required in [admin]: one address, e.g. \"127.0.0.1:9090\"")
        }
        a.listen = listen[0]
        a.token = try r.inlineOrFile(t, "admin.token") ?? ""
        guard a.token.utf8.count >= 16 else {
            throw ConfigError(
                key: "admin.token", reason: "required, at least 16 characters (admin.token or admin.token_file)")
        }
        guard a.token.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw ConfigError(key: "admin.token", reason: "printable ASCII without spaces")
        }
        a.prewarmDatabase = try r.string(t, "admin.prewarm_database") ?? ""
        if a.prewarmDatabase.isEmpty && !cacheDirectory.isEmpty {
            a.prewarmDatabase = cacheDirectory + "/prewarm.sqlite"
        }
        a.prewarmJobsMax = try r.int(t, "admin.prewarm_jobs_max", 1...100_000) ?? a.prewarmJobsMax
        a.prewarmObjectsPerJobMax =
            try r.int(t, "admin.prewarm_objects_per_job_max", 1...10_000_000) ?? a.prewarmObjectsPerJobMax
        a.prewarmOriginConcurrencyMax =
            try r.int(t, "admin.prewarm_origin_concurrency_max", 1...4096) ?? a.prewarmOriginConcurrencyMax
        a.requestBodyBytesMax =
            try r.int(t, "admin.request_body_bytes_max", 1024...(256 << 20)) ?? a.requestBodyBytesMax
        return a
    }
}

/// Typed access to TOML values that turns every mismatch into a `ConfigError` naming the key.
/// Typed, bounded reads of a TOML file whose errors name the key (shared with `loadtest`'s scenarios).
public struct Reader {
    public let root: TOMLTable
    public init(root: TOMLTable) { self.root = root }

    /// TOML text → table; a syntax error names its line and column.
    public static func parse(_ text: String) throws -> TOMLTable {
        try checkTableHeaders(text)
        try checkArrayValues(text)
        do { return try TOMLTable(string: text) } catch let e as TOMLParseError {
            throw ConfigError(
                key: "",
                reason:
                    "TOML syntax error at line \(e.source.begin.line), column \(e.source.begin.column): \(e.description)"
            )
        }
    }

    /// toml++ (under TOMLKit) aborts the process on a table header whose key starts with a
    /// character that cannot start a key (`[@x]`), instead of reporting an error (found by the
    /// configuration fuzzer). Such lines are refused here first, with the line number. Outside
    /// multi-line strings, a line that starts with `[` must start a table header's key.
    static func checkTableHeaders(_ text: String) throws {
        var inMultiline: UInt8? = nil   // the quote character of an open multi-line string
        var lineNumber = 0
        for line in text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            var bytes = Array(line)
            if lineNumber == 1 && bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }   // toml++ skips a BOM
            var i = 0
            if inMultiline == nil {
                while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x09 { i += 1 }
                if i < bytes.count, bytes[i] == UInt8(ascii: "[") {
                    i += 1
                    while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x09 { i += 1 }
                    if i < bytes.count, bytes[i] == UInt8(ascii: "[") { i += 1 }
                    while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x09 { i += 1 }
                    let c: UInt8 = i < bytes.count ? bytes[i] : 0x0A
                    let keyStart =
                        (c >= 0x30 && c <= 0x39) || (c | 0x20 >= 0x61 && c | 0x20 <= 0x7A) || c == 0x5F || c == 0x2D
                        || c == 0x22 || c == 0x27 || c == 0x5D
                    guard keyStart else {
                        throw ConfigError(
                            key: "",
                            reason:
                                "TOML syntax error at line \(lineNumber): a table header's name must start with a letter, digit, '_', '-' or a quote"
                        )
                    }
                }
            }
            // Where this line leaves us: inside a multi-line string or not. Comments and one-line
            // strings are skipped so that quotes inside them do not count.
            var k = 0
            while k < bytes.count {
                let q = bytes[k]
                if let open = inMultiline {
                    if q == UInt8(ascii: "\\") && open == 0x22 { k += 2; continue }
                    if q == open && k + 2 < bytes.count && bytes[k + 1] == q && bytes[k + 2] == q {
                        inMultiline = nil; k += 3; continue
                    }
                    k += 1
                } else if q == UInt8(ascii: "#") {
                    break
                } else if q == 0x22 || q == 0x27 {
                    if k + 2 < bytes.count && bytes[k + 1] == q && bytes[k + 2] == q {
                        inMultiline = q; k += 3; continue
                    }
                    k += 1
                    while k < bytes.count && bytes[k] != q {   // a one-line string
                        if q == 0x22 && bytes[k] == UInt8(ascii: "\\") { k += 1 }
                        k += 1
                    }
                    k += 1
                } else {
                    k += 1
                }
            }
        }
    }

    /// toml++ also aborts on an array whose next value starts with `}` (`a = [}`, `a = [1, }`),
    /// found by the configuration fuzzer. Outside strings and comments, a `}` may not follow a
    /// `[` or a `,` with only blanks, line breaks and comments between: such text is refused here,
    /// with its line (it is invalid TOML either way: TOML 1.0 has no trailing comma in inline tables).
    static func checkArrayValues(_ text: String) throws {
        let b = Array(text.utf8)
        var i = 0, line = 1
        var afterOpener = false
        while i < b.count {
            let c = b[i]
            switch c {
            case 0x0A:
                line += 1; i += 1
            case 0x20, 0x09, 0x0D:
                i += 1
            case UInt8(ascii: "#"):
                while i < b.count && b[i] != 0x0A { i += 1 }
            case 0x22, 0x27:   // a string: skipped whole (multi-line ones count their lines)
                afterOpener = false
                let multi = i + 2 < b.count && b[i + 1] == c && b[i + 2] == c
                i += multi ? 3 : 1
                while i < b.count {
                    if b[i] == 0x0A { line += 1; if !multi { break } }
                    if c == 0x22 && b[i] == UInt8(ascii: "\\") { i += 2; continue }
                    if b[i] == c && (!multi || (i + 2 < b.count && b[i + 1] == c && b[i + 2] == c)) {
                        i += multi ? 3 : 1
                        break
                    }
                    i += 1
                }
            case UInt8(ascii: "}") where afterOpener:
                throw ConfigError(
                    key: "", reason: "TOML syntax error at line \(line): '}' where an array value or ']' was expected")
            default:
                afterOpener = c == UInt8(ascii: "[") || c == UInt8(ascii: ",")
                i += 1
            }
        }
    }

    public func table(_ name: String) throws -> TOMLTable? {
        guard let v = root[name] else { return nil }
        guard let t = v.table else { throw ConfigError(key: name, reason: "must be a table ([\(name)])") }
        return t
    }

    public func allowOnly(_ keys: [String], in section: String) throws {
        let t: TOMLTable? = section.isEmpty ? root : try table(section)
        guard let t else { return }
        for k in t.keys where !keys.contains(k) {
            throw ConfigError(key: section.isEmpty ? k : "\(section).\(k)", reason: "unknown key")
        }
    }

    private func value(_ t: TOMLTable?, _ key: String) -> TOMLValueConvertible? {
        guard let t, let leaf = key.split(separator: ".").last else { return nil }
        return t[String(leaf)]
    }
    public func string(_ t: TOMLTable?, _ key: String) throws -> String? {
        guard let v = value(t, key) else { return nil }
        guard let s = v.string else { throw ConfigError(key: key, reason: "must be a string") }
        return s
    }
    /// A secret given in the file (`key`) or in a file of its own (`key_file`: its contents,
    /// blanks trimmed); nil when neither is set. Both set, or an unreadable file, is an error.
    public func inlineOrFile(_ t: TOMLTable?, _ key: String) throws -> String? {
        let inline = try string(t, key)
        guard let file = try string(t, key + "_file") else { return inline }
        guard inline == nil else {
            throw ConfigError(key: key + "_file", reason: "set \(key) or \(key)_file, not both")
        }
        guard let data = FileManager.default.contents(atPath: file), let text = String(data: data, encoding: .utf8)
        else {
            throw ConfigError(key: key + "_file", reason: "cannot read \(file)")
        }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public func bool(_ t: TOMLTable?, _ key: String) throws -> Bool? {
        guard let v = value(t, key) else { return nil }
        guard let b = v.bool else { throw ConfigError(key: key, reason: "must be true or false") }
        return b
    }
    public func int(_ t: TOMLTable?, _ key: String, _ range: ClosedRange<Int>) throws -> Int? {
        guard let v = value(t, key) else { return nil }
        guard let i = v.int else { throw ConfigError(key: key, reason: "must be an integer") }
        guard range.contains(i) else {
            throw ConfigError(key: key, reason: "\(i) is out of range \(range.lowerBound)...\(range.upperBound)")
        }
        return i
    }
    public func strings(_ t: TOMLTable?, _ key: String) throws -> [String]? {
        guard let v = value(t, key) else { return nil }
        guard let a = v.array else { throw ConfigError(key: key, reason: "must be an array of strings") }
        var out: [String] = []
        for e in a {
            guard let s = e.string else { throw ConfigError(key: key, reason: "must be an array of strings") }
            out.append(s)
        }
        return out
    }
    public func ints(_ t: TOMLTable?, _ key: String) throws -> [Int]? {
        guard let v = value(t, key) else { return nil }
        guard let a = v.array else { throw ConfigError(key: key, reason: "must be an array of integers") }
        var out: [Int] = []
        for e in a {
            guard let i = e.int else { throw ConfigError(key: key, reason: "must be an array of integers") }
            out.append(i)
        }
        return out
    }
    public func double(_ t: TOMLTable?, _ key: String) throws -> Double? {
        guard let v = value(t, key) else { return nil }
        if let d = v.double { return d }
        if let i = v.int { return Double(i) }
        throw ConfigError(key: key, reason: "must be a number")
    }
    public func addresses(_ t: TOMLTable?, _ key: String) throws -> [ListenAddress]? {
        guard let list = try strings(t, key) else { return nil }
        return try list.map {
            guard let a = ListenAddress.parse($0) else {
                throw ConfigError(key: key, reason: "\"\($0)\" is not IP:port (IPv6 as [addr]:port)")
            }
            return a
        }
    }
}

/// `packager`'s settings: `[catalog]` (shared with playback-auth) and `[packager]`.
public struct PackagerConfig: Sendable {
    public var masterKeyHex = ""
    public var bitratesKbps = [24, 96, 160, 320]
    public var targetLUFS = -14.0
    public var truePeakDBTP = -1.0
    public var chunkSeconds = 10.0
    public var sampleRate = 48000

    public init() {}

    public static func parse(_ text: String) throws -> PackagerConfig {
        let root = try Reader.parse(text)
        let r = Reader(root: root)
        var c = PackagerConfig()
        let cat = try r.table("catalog")
        try r.allowOnly(["master_key_hex"], in: "catalog")
        c.masterKeyHex = try r.string(cat, "catalog.master_key_hex") ?? ""
        guard c.masterKeyHex.utf8.count == 64,
            c.masterKeyHex.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x66) })
        else {
            throw ConfigError(
                key: "catalog.master_key_hex",
                reason: "required: 32 bytes as 64 hex digits (AES-256 key that wraps content keys)")
        }
        let p = try r.table("packager")
        try r.allowOnly(
            ["bitrates_kbps", "target_lufs", "true_peak_dbtp", "chunk_seconds", "sample_rate"], in: "packager")
        if let list = try r.ints(p, "packager.bitrates_kbps") {
            guard !list.isEmpty, list.allSatisfy({ (8...512).contains($0) }), Set(list).count == list.count else {
                throw ConfigError(key: "packager.bitrates_kbps", reason: "distinct bitrates between 8 and 512 kb/s")
            }
            c.bitratesKbps = list.sorted()
        }
        if let v = try r.double(p, "packager.target_lufs") {
            guard (-40.0 ... -5.0).contains(v) else {
                throw ConfigError(key: "packager.target_lufs", reason: "between -40 and -5")
            }; c.targetLUFS = v
        }
        if let v = try r.double(p, "packager.true_peak_dbtp") {
            guard (-9.0...0.0).contains(v) else {
                throw ConfigError(key: "packager.true_peak_dbtp", reason: "between -9 and 0")
            }; c.truePeakDBTP = v
        }
        if let v = try r.double(p, "packager.chunk_seconds") {
            guard (2.0...60.0).contains(v) else {
                throw ConfigError(key: "packager.chunk_seconds", reason: "between 2 and 60")
            }; c.chunkSeconds = v
        }
        if let v = try r.int(p, "packager.sample_rate", 8000...96000) {
            guard [44100, 48000].contains(v) else {
                throw ConfigError(key: "packager.sample_rate", reason: "44100 or 48000")
            }; c.sampleRate = v
        }
        return c
    }
}

/// `playback-auth`'s settings: `[auth]`, the signing keys in `[token]` (shared with the edges)
/// and the catalog master key in `[catalog]`.
public struct PlaybackAuthConfig: Sendable {
    public var listen = ListenAddress(host: "127.0.0.1", port: 8081)
    public var catalogPath = ""
    public var jwtHS256Secret = ""
    public var jwksFile = ""
    public var edges: [String] = []
    public var edgesDown: [String] = []
    public var grantTTLSeconds = 3600
    public var rateLimitPerMinute = 100
    public var prefetchMax = 5
    /// Verified bearer tokens remembered (`VerifiedBearers`); when full, it starts afresh.
    public var bearerTokensMax = 65_536
    public var tokenName = "hdnts"
    public var tokenKeyHex = ""
    public var transitionKeyHex = ""
    public var masterKeyHex = ""
    /// Expected `iss` and `aud` of identity tokens ("" = not checked).
    public var jwtIssuer = ""
    public var jwtAudience = ""
    /// Bearer token for /metrics ("" = /metrics is not served).
    public var metricsToken = ""
    /// The region claim of a worldwide track's grant: false signs `geo=*`, true the user's
    /// country (`auth.worldwide_regions = "anywhere" | "country"`).
    public var worldwideBoundToCountry = false

    public init() {}

    public static func parse(_ text: String) throws -> PlaybackAuthConfig {
        let root = try Reader.parse(text)
        let r = Reader(root: root)
        var c = PlaybackAuthConfig()
        let a = try r.table("auth")
        try r.allowOnly(
            [
                "listen", "catalog", "jwt_hs256_secret", "jwks_file", "edges", "edges_down", "grant_ttl_seconds",
                "rate_limit_per_minute", "prefetch_max", "jwt_issuer", "jwt_audience", "metrics_token",
                "metrics_token_file", "worldwide_regions", "bearer_tokens_max",
            ], in: "auth")
        if let l = try r.string(a, "auth.listen") {
            guard let addr = ListenAddress.parse(l) else {
                throw ConfigError(key: "auth.listen", reason: "\"\(l)\" is not IP:port")
            }
            c.listen = addr
        }
        c.catalogPath = try r.string(a, "auth.catalog") ?? ""
        if c.catalogPath.isEmpty {
            throw ConfigError(key: "auth.catalog", reason: "required: the SQLite catalog packager writes")
        }
        c.jwtHS256Secret = try r.string(a, "auth.jwt_hs256_secret") ?? ""
        c.jwksFile = try r.string(a, "auth.jwks_file") ?? ""
        if c.jwtHS256Secret.isEmpty == c.jwksFile.isEmpty {
            throw ConfigError(
                key: "auth.jwt_hs256_secret", reason: "set exactly one of auth.jwt_hs256_secret and auth.jwks_file")
        }
        if !c.jwtHS256Secret.isEmpty && c.jwtHS256Secret.utf8.count < 32 {
            throw ConfigError(key: "auth.jwt_hs256_secret", reason: "too short: at least 32 bytes")
        }
        c.edges = try r.strings(a, "auth.edges") ?? []
        if c.edges.isEmpty { throw ConfigError(key: "auth.edges", reason: "at least one edge base URL") }
        for e in c.edges where !(e.hasPrefix("http://") || e.hasPrefix("https://")) || e.hasSuffix("/") {
            throw ConfigError(
                key: "auth.edges", reason: "\"\(e)\" must be an http(s) base URL without a trailing slash")
        }
        c.edgesDown = try r.strings(a, "auth.edges_down") ?? []
        for e in c.edgesDown where !c.edges.contains(e) {
            throw ConfigError(key: "auth.edges_down", reason: "\"\(e)\" is not in auth.edges")
        }
        c.grantTTLSeconds = try r.int(a, "auth.grant_ttl_seconds", 10...86400) ?? 3600
        c.rateLimitPerMinute = try r.int(a, "auth.rate_limit_per_minute", 1...1_000_000) ?? 100
        c.prefetchMax = try r.int(a, "auth.prefetch_max", 0...50) ?? 5
        c.bearerTokensMax = try r.int(a, "auth.bearer_tokens_max", 1...10_000_000) ?? 65_536
        switch try r.string(a, "auth.worldwide_regions") ?? "anywhere" {
        case "anywhere": c.worldwideBoundToCountry = false
        case "country": c.worldwideBoundToCountry = true
        case let other:
            throw ConfigError(
                key: "auth.worldwide_regions", reason: "\"\(other)\": expected \"anywhere\" or \"country\"")
        }
        c.jwtIssuer = try r.string(a, "auth.jwt_issuer") ?? ""
        c.jwtAudience = try r.string(a, "auth.jwt_audience") ?? ""
        c.metricsToken = try r.inlineOrFile(a, "auth.metrics_token") ?? ""
        if !c.metricsToken.isEmpty && c.metricsToken.utf8.count < 16 {
            throw ConfigError(key: "auth.metrics_token", reason: "too short: at least 16 characters")
        }
        let t = try r.table("token")
        c.tokenName = try r.string(t, "token.name") ?? "hdnts"
        c.tokenKeyHex = try r.string(t, "token.key_hex") ?? ""
        c.transitionKeyHex = try r.string(t, "token.transition_key_hex") ?? ""
        guard c.tokenKeyHex.utf8.count >= 32, c.tokenKeyHex.utf8.count % 2 == 0 else {
            throw ConfigError(key: "token.key_hex", reason: "required: the edges' HMAC key, hex, at least 16 bytes")
        }
        let cat = try r.table("catalog")
        c.masterKeyHex = try r.string(cat, "catalog.master_key_hex") ?? ""
        guard c.masterKeyHex.utf8.count == 64 else {
            throw ConfigError(key: "catalog.master_key_hex", reason: "required: 64 hex digits")
        }
        return c
    }
}

extension EdgeConfig {
    /// Every listener is bound with SO_REUSEPORT (one per worker), so the kernel would accept a second
    /// listener on an address already in use and split connections between the two: cleartext clients
    /// would land on the TLS listener at random. Two addresses overlap when their ports match and
    /// their hosts match or either is a wildcard.
    static func refuseOverlappingListeners(
        cleartext: [ListenAddress], tls: [ListenAddress], admin: ListenAddress? = nil
    ) throws {
        let all =
            cleartext.map { ($0, "server.listen") } + tls.map { ($0, "server.listen_tls") }
            + (admin.map { [($0, "admin.listen")] } ?? [])
        for (index, (address, key)) in all.enumerated() {
            for (earlier, earlierKey) in all[..<index] where address.overlaps(earlier) {
                throw ConfigError(key: key, reason: "\(address) overlaps \(earlier) in \(earlierKey)")
            }
        }
    }
}

extension ListenAddress {
    var isWildcard: Bool { host == "0.0.0.0" || host == "::" }

    func overlaps(_ other: ListenAddress) -> Bool {
        port == other.port && (host == other.host || isWildcard || other.isWildcard)
    }
}
