import CEdgeRing
import EdgeClient
import EdgeConfig
import Foundation
import Synchronization

/// One address an upstream's name resolved to: a sockaddr ready for `connect`.
struct Endpoint: Sendable, Equatable {
    let storage: [UInt8]   // 128 bytes (sockaddr_storage)
    let length: Int32
    /// sa_family, the first 16 bits of the sockaddr, in the machine's byte order.
    var ipv6: Bool { storage.withUnsafeBytes { $0.load(as: UInt16.self) } == UInt16(AF_INET6) }
    var text: String {
        var out = [CChar](repeating: 0, count: 64)
        _ = storage.withUnsafeBytes { edge_sockaddr_text($0.baseAddress, &out, 64) }
        return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// An IP literal's endpoint (no resolver involved).
    static func literal(_ host: String, port: Int) -> Endpoint? {
        var bytes = [UInt8](repeating: 0, count: 128)
        let n = bytes.withUnsafeMutableBytes { edge_make_sockaddr(host, Int32(port), $0.baseAddress) }
        return n > 0 ? Endpoint(storage: bytes, length: n) : nil
    }
}

/// The addresses of every upstream named by a host name, as last resolved. Immutable: the
/// resolver hands workers a new one when anything changed.
final class AddressBook: Sendable {
    /// By "name:port".
    let endpoints: [String: [Endpoint]]
    init(_ endpoints: [String: [Endpoint]]) { self.endpoints = endpoints }
    static func key(_ u: Upstream) -> String { "\(u.host):\(u.port)" }
}

/// Resolves the upstreams' host names off the data path: at start-up, at a reload, and every
/// `origin.resolve_interval_seconds` on its own thread (getaddrinfo blocks; no worker ever calls
/// it). Workers get a new `AddressBook` by mail when an answer changed. A name that stops
/// resolving keeps its last good addresses, and that is logged.
final class OriginResolver: @unchecked Sendable {
    private struct State {
        var upstreams: [Upstream] = []
        var intervalSeconds = 30
        var book = AddressBook([:])
        /// What was logged last per name, so a steady failure is logged once, not every interval.
        var lastReport: [String: String] = [:]
    }
    private let state = Mutex(State())
    private let publish: @Sendable (AddressBook) -> Void
    private let log: @Sendable (String) -> Void
    private var started = false

    /// At most this many addresses per name are kept (a name with hundreds is a misconfiguration).
    static let addressesPerNameMax = 16

    init(log: @escaping @Sendable (String) -> Void, publish: @escaping @Sendable (AddressBook) -> Void) {
        self.log = log; self.publish = publish
    }

    var book: AddressBook { state.withLock { $0.book } }

    /// The upstreams to resolve (a reload's); resolves their names now, on the caller's thread
    /// (the main thread at start-up, the reload's), and publishes what changed.
    func update(_ origin: OriginConfig) {
        state.withLock {
            $0.upstreams = origin.upstreams.filter { !$0.isIPLiteral }
            $0.intervalSeconds = origin.resolveIntervalSeconds
        }
        resolveAll()
    }

    /// Starts the periodic re-resolution (only when some upstream is named by a host name).
    func start() {
        guard !started, !state.withLock({ $0.upstreams.isEmpty }) else { return }
        started = true
        let thread = Thread { [self] in
            while true {
                Thread.sleep(forTimeInterval: TimeInterval(state.withLock { $0.intervalSeconds }))
                resolveAll()
            }
        }
        thread.name = "edge-resolver"
        thread.start()
    }

    func resolveAll() {
        let (upstreams, old) = state.withLock { ($0.upstreams, $0.book) }
        var next: [String: [Endpoint]] = [:]
        var reports: [(String, String)] = []
        for u in upstreams {
            let key = AddressBook.key(u)
            guard next[key] == nil else { continue }
            switch Self.resolve(u.host, port: u.port) {
            case .success(let endpoints):
                next[key] = endpoints
                reports.append((key, "\(u.host) resolves to \(endpoints.map(\.text).joined(separator: ", "))"))
            case .failure(let why):
                if let kept = old.endpoints[key], !kept.isEmpty {
                    next[key] = kept
                    reports.append(
                        (
                            key,
                            "origin \(u.url): \(u.host) does not resolve (\(why.description)); keeping its last addresses \(kept.map(\.text).joined(separator: ", "))"
                        ))
                } else {
                    reports.append(
                        (
                            key,
                            "origin \(u.url): \(u.host) does not resolve (\(why.description)); its fetches fail until it does"
                        ))
                }
            }
        }
        let changed = state.withLock { s -> Bool in
            let changed = s.book.endpoints != next
            if changed { s.book = AddressBook(next) }
            for (key, text) in reports where s.lastReport[key] != text {
                s.lastReport[key] = text
                log("edge: " + text)
            }
            return changed
        }
        if changed { publish(book) }
    }

    struct ResolveError: Error, CustomStringConvertible { let description: String }

    /// getaddrinfo's answer for `host`: blocking, so only ever on a control thread.
    static func resolve(_ host: String, port: Int) -> Result<[Endpoint], ResolveError> {
        var storage = [UInt8](repeating: 0, count: 128 * addressesPerNameMax)
        var lengths = [Int32](repeating: 0, count: addressesPerNameMax)
        var error = [CChar](repeating: 0, count: 256)
        let n = storage.withUnsafeMutableBytes { s in
            edge_resolve(host, Int32(port), s.baseAddress, &lengths, Int32(addressesPerNameMax), &error, 256)
        }
        guard n > 0 else {
            return .failure(
                ResolveError(
                    description: String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                ))
        }
        return .success(
            (0..<Int(n)).map { i in Endpoint(storage: Array(storage[(128 * i)..<(128 * i + 128)]), length: lengths[i]) }
        )
    }
}

/// The origin side's TLS settings, checked on the control plane (start-up, `--check`, reload)
/// so that a worker never meets a CA file that does not load.
enum OriginTLS {
    /// Why HTTPS upstreams could not be reached with these settings; nil when they can (or
    /// there are none).
    static func problem(_ config: OriginConfig) -> ConfigError? {
        do {
            _ = try context(config)
            return nil
        } catch {
            return ConfigError(key: config.caFile == nil ? "origin.urls" : "origin.ca_file", reason: "\(error)")
        }
    }

    /// The client context for HTTPS upstreams (ALPN http/1.1); nil without any.
    static func context(_ config: OriginConfig) throws -> ClientTLS.Context? {
        guard config.upstreams.contains(where: \.tls) else { return nil }
        return try ClientTLS.Context(caFile: config.caFile, alpn: ["http/1.1"], verify: !config.insecureSkipVerify)
    }
}
