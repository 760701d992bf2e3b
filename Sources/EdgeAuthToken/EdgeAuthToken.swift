import CEdgeCrypto

#if canImport(Glibc)
    import Glibc
#endif
@_exported import EdgeEncoding

/// Akamai EdgeAuth Token 2.0 (escape_early off):
/// `[ip=…~][st=…~]exp=…~acl=…|url=…[~id=…][~data=…]~hmac=<hex HMAC-SHA256>`.
///
/// For an `acl` token the HMAC covers the token bytes before `~hmac=`. For a URL token (no `acl`
/// field) the signer hashes the fields plus `~url=<path>` without putting the path in the token,
/// so the checker appends the request path the same way. Pure code: the clock is a parameter.
public enum EdgeAuthVerdict: String, Sendable, Equatable {
    case ok, missing, malformed, expired, early, scope, signature, ip, lifetime
    /// The client's country is not among the token's regions (or the token has none and they
    /// are required): see `GeoPolicy`.
    case geo
    /// A request that offered a child edge's key (`edge-child-key`) that is not the parent's.
    case childKey = "child_key"
}

public struct EdgeAuthKey: Sendable, Equatable {
    public let bytes: [UInt8]
    /// Parses a hex key; nil when it is not even-length hex or is empty.
    public init?(hex: String) {
        guard let b = Hex.decode(hex), !b.isEmpty else { return nil }
        bytes = b
    }
}

public struct EdgeAuthPolicy: Sendable {
    public var keys: [EdgeAuthKey]   // current first, then the transition key
    public var leewaySeconds: Int
    public var lifetimeSecondsMax: Int   // refuse tokens valid for longer than this
    public init(keys: [EdgeAuthKey], leewaySeconds: Int = 10, lifetimeSecondsMax: Int = 86400) {
        self.keys = keys; self.leewaySeconds = leewaySeconds; self.lifetimeSecondsMax = lifetimeSecondsMax
    }
}

public struct EdgeAuthFields: Sendable, Equatable {
    public var ip: String?
    public var startTime: Int?
    public var expiry: Int
    public var acl: [String]?
    public var url: String?
    public var sessionID: String?
    public var data: String?
    /// The `geo` item of `data`, parsed once with the token (see `RegionClaim`).
    public var regions: RegionClaim?
}

public enum EdgeAuthToken {
    static let fieldOrder = ["ip", "st", "exp", "acl", "url", "id", "data"]

    /// Signs a token. `acl` patterns are joined with `!`; pass `url` instead for a single-URL token.
    public static func sign(
        key: EdgeAuthKey, acl: [String]? = nil, url: String? = nil, startTime: Int? = nil,
        expiry: Int, ip: String? = nil, sessionID: String? = nil, data: String? = nil
    ) -> String {
        // Appended to one string: an array of interpolated fields joined twice (the signed part and
        // the token) was a third of the signing's CPU (`perf record` under `loadtest/auth_bench.py`).
        var signed = ""
        signed.reserveCapacity(160)
        func field(_ name: StaticString, _ value: String) {
            if !signed.isEmpty { signed += "~" }
            signed += name.description
            signed += "="
            signed += value
        }
        if let ip { field("ip", ip) }
        if let startTime { field("st", String(startTime)) }
        field("exp", String(expiry))
        if let acl {
            field("acl", acl.first ?? "")
            for pattern in acl.dropFirst() { signed += "!"; signed += pattern }
        }
        if let sessionID { field("id", sessionID) }
        if let data { field("data", data) }
        var message = Array(signed.utf8)
        if acl == nil, let url { message += Array("~url=\(url)".utf8) }
        return signed + "~hmac=" + hmacHex(key: key, message: message)
    }

    static func hmacHex(key: EdgeAuthKey, message: [UInt8]) -> String {
        Hex.encode(hmac(key: key, message: message))
    }

    static func hmac(key: EdgeAuthKey, message: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        key.bytes.withUnsafeBufferPointer { k in
            message.withUnsafeBufferPointer { m in
                out.withUnsafeMutableBufferPointer { o in
                    _ = edge_hmac_sha256(k.baseAddress, k.count, m.baseAddress, m.count, o.baseAddress)
                }
            }
        }
        return out
    }

    /// Splits a token into fields; nil on syntax errors, duplicate or unknown fields, or a missing `exp`.
    /// Byte-level: this runs for every request whose token is not cached yet.
    public static func parse(_ token: String) -> (fields: EdgeAuthFields, signedPrefix: Substring, mac: [UInt8])? {
        let bytes = Array(token.utf8)
        let marker: [UInt8] = Array("~hmac=".utf8)
        guard bytes.count > marker.count + 64 else { return nil }
        // The last "~hmac=" splits the signed part from the MAC.
        var at = -1
        var k = bytes.count - marker.count
        while k > 0 {
            if bytes[k] == 0x7E && bytes[k + 1] == 0x68
                && bytes[(k + 2)..<(k + marker.count)].elementsEqual(marker[2...])
            {
                at = k; break
            }
            k -= 1
        }
        guard at > 0, bytes.count - at - marker.count == 64, let mac = Hex.decode(bytes[(at + marker.count)...]) else {
            return nil
        }
        var f = EdgeAuthFields(expiry: 0)
        var seen: UInt8 = 0
        var start = 0
        while start <= at {
            var end = start
            while end < at && bytes[end] != 0x7E { end += 1 }
            guard let eq = bytes[start..<end].firstIndex(of: 0x3D) else { return nil }
            let name = bytes[start..<eq]
            let value = bytes[(eq + 1)..<end]
            let bit: UInt8
            switch name.count {
            case 2 where name.elementsEqual("ip".utf8): bit = 1; f.ip = String(decoding: value, as: UTF8.self)
            case 2 where name.elementsEqual("st".utf8):
                bit = 2; guard let v = strictInt(value) else { return nil }; f.startTime = v
            case 3 where name.elementsEqual("exp".utf8):
                bit = 4; guard let v = strictInt(value) else { return nil }; f.expiry = v
            case 3 where name.elementsEqual("acl".utf8):
                bit = 8; guard !value.isEmpty else { return nil }
                f.acl = value.split(separator: 0x21).map { String(decoding: $0, as: UTF8.self) }
            case 3 where name.elementsEqual("url".utf8):
                bit = 16; guard !value.isEmpty else { return nil }; f.url = String(decoding: value, as: UTF8.self)
            case 2 where name.elementsEqual("id".utf8): bit = 32; f.sessionID = String(decoding: value, as: UTF8.self)
            case 4 where name.elementsEqual("data".utf8):
                bit = 64; f.data = String(decoding: value, as: UTF8.self)
                switch RegionClaim.parse(data: f.data) {
                case .absent: break
                case .malformed: return nil
                case .claim(let c): f.regions = c
                }
            default: return nil
            }
            guard seen & bit == 0 else { return nil }
            seen |= bit
            start = end + 1
        }
        guard seen & 4 != 0, seen & 24 != 24 else { return nil }
        return (f, Substring(String(decoding: bytes[0..<at], as: UTF8.self)), mac)
    }

    static func strictInt(_ s: ArraySlice<UInt8>) -> Int? {
        guard !s.isEmpty, s.count <= 12 else { return nil }
        var v = 0
        for c in s { guard c >= 0x30 && c <= 0x39 else { return nil }; v = v * 10 + Int(c - 0x30) }
        return v
    }

    /// Checks `token` for a request of `path` (no query) from `clientIP` at Unix time `now`.
    public static func verify(
        _ token: String?, path: String, clientIP: String, now: Int, policy: EdgeAuthPolicy
    ) -> EdgeAuthVerdict {
        guard let token, !token.isEmpty else { return .missing }
        guard let (f, signed, mac) = parse(token) else { return .malformed }
        guard signatureValid(f, signed: signed, mac: mac, path: path, keys: policy.keys) else { return .signature }
        return checkClaims(f, path: path, clientIP: clientIP, now: now, policy: policy)
    }

    /// HMAC over the received bytes before `~hmac=` (plus `~url=<path>` for URL tokens), compared
    /// in constant time against every configured key.
    static func signatureValid(
        _ f: EdgeAuthFields, signed: Substring, mac: [UInt8], path: String, keys: [EdgeAuthKey]
    ) -> Bool {
        var message = Array(signed.utf8)
        if f.acl == nil && f.url == nil { message.append(contentsOf: Array("~url=\(path)".utf8)) }
        var ok = false
        for key in keys {
            let expected = hmac(key: key, message: message)
            let equal = expected.withUnsafeBytes { e in
                mac.withUnsafeBytes { m in edge_constant_time_equal(e.baseAddress, m.baseAddress, 32) }
            }
            if equal == 1 { ok = true }
        }
        return ok
    }

    /// Time, lifetime, client and scope checks of an authenticated token.
    static func checkClaims(
        _ f: EdgeAuthFields, path: String, clientIP: String, now: Int, policy: EdgeAuthPolicy
    ) -> EdgeAuthVerdict {
        if let v = checkTimeAndClient(f, clientIP: clientIP, now: now, policy: policy) { return v }
        if let acl = f.acl {
            guard acl.contains(where: { aclMatches(pattern: $0, path: path) }) else { return .scope }
        } else if let url = f.url {
            guard url == path else { return .scope }
        }
        return .ok
    }

    /// The time, lifetime and client checks of `checkClaims`: the verdict that fails, or nil.
    static func checkTimeAndClient(
        _ f: EdgeAuthFields, clientIP: String, now: Int, policy: EdgeAuthPolicy
    ) -> EdgeAuthVerdict? {
        if let st = f.startTime, now + policy.leewaySeconds < st { return .early }
        if now - policy.leewaySeconds >= f.expiry { return .expired }
        if f.expiry - (f.startTime ?? now) > policy.lifetimeSecondsMax { return .lifetime }
        if let ip = f.ip, ip != clientIP { return .ip }
        return nil
    }

    /// `*` matches any run of characters (including `/`), `?` exactly one; everything else literally.
    public static func aclMatches(pattern: String, path: String) -> Bool {
        var pattern = pattern, path = path
        return pattern.withUTF8 { p in path.withUTF8 { s in globMatch(p, s) } }
    }

    static func globMatch(_ p: UnsafeBufferPointer<UInt8>, _ s: UnsafeBufferPointer<UInt8>) -> Bool {
        var pi = 0, si = 0, starP = -1, starS = 0
        while si < s.count {
            if pi < p.count && (p[pi] == UInt8(ascii: "?") || p[pi] == s[si]) {
                pi += 1; si += 1
            } else if pi < p.count && p[pi] == UInt8(ascii: "*") {
                starP = pi; starS = si; pi += 1
            } else if starP >= 0 {
                pi = starP + 1; starS += 1; si = starS
            } else {
                return false
            }
        }
        while pi < p.count && p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.count
    }
}

/// A verifier that remembers tokens whose signature it has checked, so a player's thousands of
/// chunk requests under one token cost one HMAC. Time, scope and client checks still run on every
/// request. Bounded: when full it starts afresh. One per thread (no locking).
public final class EdgeAuthVerifier {
    public typealias Check = (verdict: EdgeAuthVerdict, expiry: Int?, regions: RegionClaim?)

    public let policy: EdgeAuthPolicy
    let entriesMax: Int
    /// `@exclusivity(unchecked)`: a verifier belongs to one worker thread, and no access to the
    /// table calls out of this class (see "Exclusivity checks" in docs/ARCHITECTURE.md).
    @exclusivity(unchecked) private var remembered: RememberedTokens
    public private(set) var hmacCount = 0

    public init(policy: EdgeAuthPolicy, entriesMax: Int = 8192) {
        self.policy = policy
        self.entriesMax = entriesMax
        remembered = RememberedTokens(entriesMax: entriesMax)
    }

    public func verify(_ token: String?, path: String, clientIP: String, now: Int) -> EdgeAuthVerdict {
        check(token, path: path, clientIP: clientIP, now: now).verdict
    }

    /// The verdict and, for a token whose signature verified, its expiry (Unix seconds): a
    /// response it authorises must not be cached downstream past it; and its region claim.
    public func check(_ token: String?, path: String, clientIP: String, now: Int) -> Check {
        guard var token, !token.isEmpty else { return (.missing, nil, nil) }
        let t = token
        return token.withUTF8 {
            check(
                t, receivedAs: UnsafeRawBufferPointer($0), percentEncoded: false, path: path, clientIP: clientIP,
                now: now)
        }
    }

    /// The check of a token this verifier remembers, found by the bytes the request carried it as
    /// (`received`): no decoding, parsing or copy of its fields. nil when it is not remembered: the
    /// caller decodes it and calls `check(_:receivedAs:...)`. `percentEncoded`: the bytes are a
    /// query's, to be percent-decoded, not a cookie's or a header's text; the same bytes in the
    /// other form are another token (a cookie's `%3D` is not `=`).
    public func remembered(
        _ received: UnsafeRawBufferPointer, percentEncoded: Bool, path: String, clientIP: String, now: Int
    ) -> Check? {
        guard let entry = remembered.find(received, percentEncoded: percentEncoded) else { return nil }
        return (
            entry.claims(path: path, clientIP: clientIP, now: now, policy: policy), entry.fields.expiry,
            entry.fields.regions
        )
    }

    /// Checks `token`, decoded from `received`: it is remembered by the bytes it was received as
    /// and their form, which decode to it alone.
    public func check(
        _ token: String, receivedAs received: UnsafeRawBufferPointer, percentEncoded: Bool, path: String,
        clientIP: String, now: Int
    ) -> Check {
        guard !token.isEmpty else { return (.missing, nil, nil) }
        if let known = remembered(
            received, percentEncoded: percentEncoded, path: path, clientIP: clientIP, now: now)
        {
            return known
        }
        guard let (f, signed, mac) = EdgeAuthToken.parse(token) else { return (.malformed, nil, nil) }
        hmacCount += 1
        guard EdgeAuthToken.signatureValid(f, signed: signed, mac: mac, path: path, keys: policy.keys) else {
            return (.signature, nil, nil)
        }
        // URL tokens sign the path outside the token: only ACL tokens are path-independent.
        if f.acl != nil {
            let entry = RememberedTokens.Entry(received: received, percentEncoded: percentEncoded, fields: f)
            remembered.insert(entry)
            return (entry.claims(path: path, clientIP: clientIP, now: now, policy: policy), f.expiry, f.regions)
        }
        return (
            EdgeAuthToken.checkClaims(f, path: path, clientIP: clientIP, now: now, policy: policy), f.expiry, f.regions
        )
    }

    /// How many tokens are remembered (tests).
    var rememberedCount: Int { remembered.count }
}

/// An ACL pattern compiled once, when its token is remembered: most are a literal prefix and one
/// trailing `*` (`/audio/t1/*`), matched with one `memcmp`; the glob walk of `aclMatches` cost
/// about 10 instructions a path byte on every request (`loadtest/instructions.py`).
enum ACLPattern {
    case prefix([UInt8])
    case glob([UInt8])

    init(_ pattern: String) {
        let bytes = Array(pattern.utf8)
        let wildcards = bytes.lazy.filter { $0 == UInt8(ascii: "*") || $0 == UInt8(ascii: "?") }.count
        if wildcards == 1 && bytes.last == UInt8(ascii: "*") {
            self = .prefix(Array(bytes.dropLast()))
        } else {
            self = .glob(bytes)
        }
    }

    func matches(_ path: UnsafeBufferPointer<UInt8>) -> Bool {
        switch self {
        case .prefix(let p):
            guard !p.isEmpty else { return true }
            return p.count <= path.count
                && p.withUnsafeBufferPointer { memcmp($0.baseAddress!, path.baseAddress!, $0.count) == 0 }
        case .glob(let p):
            return p.withUnsafeBufferPointer { EdgeAuthToken.globMatch($0, path) }
        }
    }
}

/// Tokens whose signature verified, found by the bytes they were received as: open addressing
/// with linear probing in a power-of-two table kept at most half full; when `entriesMax` are held
/// it starts afresh. A `[String: EdgeAuthFields]` cost a String made from the query per request,
/// about 600 instructions of hashing and comparing, and a copy of the fields with a retain of each
/// of their strings (`loadtest/instructions.py`).
///
/// Hashed on the last 16 bytes only: a token ends with its HMAC, whose hex spreads the keys as
/// well as the whole token would. Collisions cannot be forced: only tokens whose signature
/// verified are stored, and a match compares every byte.
struct RememberedTokens {
    final class Entry {
        let bytes: [UInt8]
        let percentEncoded: Bool
        let hash: UInt64
        let fields: EdgeAuthFields
        let acl: [ACLPattern]

        init(received: UnsafeRawBufferPointer, percentEncoded: Bool, fields: EdgeAuthFields) {
            bytes = Array(received)
            self.percentEncoded = percentEncoded
            hash = RememberedTokens.hash(received, percentEncoded: percentEncoded)
            self.fields = fields
            acl = (fields.acl ?? []).map(ACLPattern.init)
        }

        /// `EdgeAuthToken.checkClaims` with the compiled ACL.
        func claims(path: String, clientIP: String, now: Int, policy: EdgeAuthPolicy) -> EdgeAuthVerdict {
            if let v = EdgeAuthToken.checkTimeAndClient(fields, clientIP: clientIP, now: now, policy: policy) {
                return v
            }
            var path = path
            let inScope = path.withUTF8 { p in acl.contains { $0.matches(p) } }
            return inScope ? .ok : .scope
        }
    }

    static let hashedBytes = 16
    let entriesMax: Int
    private var slots: [Entry?]
    private(set) var count = 0

    init(entriesMax: Int) {
        self.entriesMax = max(1, entriesMax)
        var capacity = 16
        while capacity < 2 * self.entriesMax { capacity *= 2 }
        slots = Array(repeating: nil, count: capacity)
    }

    /// The last 16 bytes as two words (fewer: FNV-1a over them), with the length and the form,
    /// mixed.
    static func hash(_ b: UnsafeRawBufferPointer, percentEncoded: Bool) -> UInt64 {
        var h = (UInt64(truncatingIfNeeded: b.count) << 1 | (percentEncoded ? 1 : 0)) &* 0x9E37_79B9_7F4A_7C15
        if b.count >= hashedBytes {
            h ^= b.loadUnaligned(fromByteOffset: b.count - 16, as: UInt64.self)
            h = (h ^ (h >> 29)) &* 0xBF58_476D_1CE4_E5B9
            h ^= b.loadUnaligned(fromByteOffset: b.count - 8, as: UInt64.self)
        } else {
            var f = FNV1a()
            for byte in b { f.add(byte) }
            h ^= f.value
        }
        h = (h ^ (h >> 32)) &* 0x94D0_49BB_1331_11EB
        return h ^ (h >> 29)
    }

    func find(_ received: UnsafeRawBufferPointer, percentEncoded: Bool) -> Entry? {
        guard count > 0, received.count > 0 else { return nil }
        let h = Self.hash(received, percentEncoded: percentEncoded)
        let mask = slots.count - 1
        var i = Int(truncatingIfNeeded: h) & mask
        while let e = slots[i] {
            if e.hash == h && e.bytes.count == received.count && e.percentEncoded == percentEncoded
                && e.bytes.withUnsafeBytes({ memcmp($0.baseAddress!, received.baseAddress!, received.count) }) == 0
            {
                return e
            }
            i = (i + 1) & mask
        }
        return nil
    }

    mutating func insert(_ entry: Entry) {
        if count >= entriesMax {
            for i in slots.indices { slots[i] = nil }
            count = 0
        }
        let mask = slots.count - 1
        var i = Int(truncatingIfNeeded: entry.hash) & mask
        while let e = slots[i] {
            if e.hash == entry.hash && e.percentEncoded == entry.percentEncoded && e.bytes == entry.bytes {
                slots[i] = entry
                return
            }
            i = (i + 1) & mask
        }
        slots[i] = entry
        count += 1
    }
}
