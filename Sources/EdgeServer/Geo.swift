import CEdgeGeo
import EdgeAuthToken
import EdgeConfig
import EdgeHTTP
import Glibc

/// A MaxMind DB, opened and checked whole on a control thread (`edge_geo_open`), then shared
/// read-only by the workers: a lookup is a walk of the locked mapping, with no system call and
/// no allocation. Closed when the last worker lets go of it after a reload.
public final class GeoDatabase: @unchecked Sendable {
    let handle: OpaquePointer
    public let path: String
    /// The file the mapping came from (device, inode, size, modification time): a reload reopens
    /// the database only when this changed.
    let identity: FileIdentity?

    struct FileIdentity: Equatable {
        var device: UInt64, inode: UInt64, bytes: Int64, modifiedNanoseconds: Int64
        init?(path: String) {
            var st = stat()
            guard stat(path, &st) == 0 else { return nil }
            device = UInt64(st.st_dev); inode = UInt64(st.st_ino); bytes = Int64(st.st_size)
            modifiedNanoseconds = Int64(st.st_mtim.tv_sec) &* 1_000_000_000 &+ Int64(st.st_mtim.tv_nsec)
        }
    }

    public struct OpenError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Opens and checks `path`; the error says what is wrong with the file.
    public static func open(path: String, bytesMax: Int) -> Result<GeoDatabase, OpenError> {
        let identity = FileIdentity(path: path)
        var message = [CChar](repeating: 0, count: 512)
        guard let h = edge_geo_open(path, Int64(bytesMax), &message, message.count) else {
            let text = message.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }
            return .failure(OpenError(description: String(decoding: text, as: UTF8.self)))
        }
        return .success(GeoDatabase(handle: h, path: path, identity: identity))
    }

    private init(handle: OpaquePointer, path: String, identity: FileIdentity?) {
        self.handle = handle; self.path = path; self.identity = identity
    }
    deinit { edge_geo_close(handle) }

    /// Whether the file at `path` is still the one this mapping was made from.
    func isCurrent(path: String) -> Bool {
        path == self.path && identity != nil && FileIdentity(path: path) == identity
    }

    public enum Answer: Equatable, Sendable {
        case country(CountryCode)
        /// Not in the database, or in it without a country.
        case unknown
        /// Not an IP address.
        case notAnAddress
        /// The lookup met damage the check at open did not (counted; treated as unknown).
        case damaged
    }

    public func lookup(_ ip: String) -> Answer {
        var code: (CChar, CChar) = (0, 0)
        let rc = withUnsafeMutableBytes(of: &code) { out in
            edge_geo_country(handle, ip, out.baseAddress!.assumingMemoryBound(to: CChar.self))
        }
        switch rc {
        case 1:
            guard let c = CountryCode(UInt8(bitPattern: code.0), UInt8(bitPattern: code.1)) else { return .unknown }
            return .country(c)
        case 0: return .unknown
        case -1: return .notAnAddress
        default: return .damaged
        }
    }

    public var databaseType: String { String(cString: edge_geo_database_type(handle)) }
    public var buildEpochSeconds: UInt64 { edge_geo_build_epoch(handle) }
    public var nodeCount: UInt32 { edge_geo_node_count(handle) }
    public var ipVersion: Int { Int(edge_geo_ip_version(handle)) }
    public var fileBytes: Int64 { edge_geo_file_bytes(handle) }
    public var countryRecords: UInt32 { edge_geo_country_records(handle) }

    /// One line for the log: what was loaded.
    public var summary: String {
        "\(path): \(databaseType), IPv\(ipVersion), built at \(buildEpochSeconds) (Unix), \(nodeCount) nodes, \(countryRecords) records with a country, \(fileBytes) bytes"
    }
}

/// The `[geo]` settings a worker applies: the policy, the database and the proxies whose
/// `X-Forwarded-For` is believed. Immutable; a reload hands workers a new one with their router.
public final class GeoGate: @unchecked Sendable {
    public let policy: GeoPolicy
    public let database: GeoDatabase
    let trustedProxies: [IPNetwork]
    let forwardedHopsMax: Int

    public init(_ config: GeoConfig, database: GeoDatabase) {
        policy = GeoPolicy(requireClaim: config.requireClaim, allowUnknown: config.allowUnknown)
        self.database = database
        trustedProxies = config.trustedProxies
        forwardedHopsMax = config.forwardedHopsMax
    }

    /// The gate of a configuration's `[geo]` section, its database opened and checked; nil when
    /// the section is off. The error names the key and what is wrong with the file.
    public static func open(_ config: GeoConfig) throws(ConfigError) -> GeoGate? {
        guard config.enabled else { return nil }
        switch GeoDatabase.open(path: config.database, bytesMax: config.databaseBytesMax) {
        case .success(let d): return GeoGate(config, database: d)
        case .failure(let e): throw ConfigError(key: "geo.database", reason: e.description)
        }
    }

    /// Whether a peer's `X-Forwarded-For` is believed.
    public func isTrustedProxy(_ peer: String) -> Bool {
        guard !trustedProxies.isEmpty, let a = IPAddress(peer) else { return false }
        return trustedProxies.contains { $0.contains(a) }
    }

    /// The address whose country decides: the peer, or for a trusted proxy the client its
    /// `X-Forwarded-For` names (nil: the peer, too).
    public func clientAddress(peer: String, forwardedFor: String?) -> String {
        guard let forwardedFor, isTrustedProxy(peer),
            let a = ForwardedFor.client(Substring(forwardedFor), trusted: trustedProxies, hopsMax: forwardedHopsMax)
        else { return peer }
        return a.description
    }

    /// The country of an address; nil when unknown (a damaged record counts as unknown).
    public func country(_ ip: String) -> CountryCode? {
        if case .country(let c) = database.lookup(ip) { return c }
        return nil
    }
}

extension GeoGate {
    /// What the edge decides for a request from `peer` (with this `X-Forwarded-For`, if any) under
    /// a token whose region claim is `claim` (nil: a token without one): the operators' view
    /// (`GET /admin/geo`, `edgectl geo`), through the same code the workers run.
    public struct Explanation: Sendable {
        public var addressUsed: String
        public var trustedProxy: Bool
        public var answer: GeoDatabase.Answer
        public var verdict: EdgeAuthVerdict
        public var reason: String
    }

    public func explain(peer: String, forwardedFor: String?, claim: RegionClaim?) -> Explanation {
        let trusted = isTrustedProxy(peer)
        let address = clientAddress(peer: peer, forwardedFor: forwardedFor)
        let answer = database.lookup(address)
        var country: CountryCode? = nil
        if case .country(let c) = answer { country = c }
        let verdict = policy.check(claim, country: { country })
        let reason: String
        switch (claim, country) {
        case (nil, _):
            reason =
                policy.requireClaim ? "the token has no region claim and geo.require_claim is on" : "no region claim"
        case (.some(.anywhere), _): reason = "the claim allows anywhere"
        case (.some(let c), nil):
            reason = "no country for \(address); geo.unknown = \(policy.allowUnknown ? "allow" : "deny") (claim \(c))"
        case (.some(let c), .some(let k)):
            reason = c.allows(k) ? "\(k) is in the claim \(c)" : "\(k) is not in the claim \(c)"
        }
        return Explanation(
            addressUsed: address, trustedProxy: trusted, answer: answer, verdict: verdict, reason: reason)
    }
}
