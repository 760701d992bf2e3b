import Foundation
import Synchronization
import EdgeAuthToken
import EdgeCatalog
import EdgeEncoding

/// Published tracks never change (re-ingesting a source is a no-op), so the decoded track, its
/// unwrapped key and its manifest JSON per tier are kept for a few seconds instead of being read
/// and encoded per request. Unknown tracks are not cached: a new release appears at once.
/// Bounded: beyond `entriesMax` the cache starts afresh.
final class TrackCache: Sendable {
    struct Entry {
        var track: Track
        var key: [UInt8]
        var manifestJSON: [Int: String]   // by tier ceiling (kb/s)
        var loaded: Double
    }
    let ttlSeconds: Double
    let entriesMax: Int
    let entries = Mutex<[String: Entry]>([:])
    init(ttlSeconds: Double = 5, entriesMax: Int = 100_000) {
        self.ttlSeconds = ttlSeconds; self.entriesMax = entriesMax
    }

    func get(_ id: String, now: Double, load: () throws -> Entry?) rethrows -> Entry? {
        if let e = entries.withLock({ $0[id] }), now - e.loaded < ttlSeconds { return e }
        guard let e = try load() else { return nil }
        entries.withLock { m in
            if m.count >= entriesMax { m.removeAll(keepingCapacity: true) }
            m[id] = e
        }
        return e
    }
}

/// A user as the identity provider vouches for them.
public struct Identity: Sendable, Equatable {
    public enum Tier: String, Sendable { case free, premium }
    public var subject: String
    public var tier: Tier
    public var country: String
    public init(subject: String, tier: Tier, country: String) {
        self.subject = subject; self.tier = tier; self.country = country
    }
}

/// Why a request is refused; each maps to a status and a message that says what to fix.
public enum GrantError: Error, Equatable {
    case notFound(String)
    case notLicensed(String)
    case notReleased(String)
    case badRequest(String)

    public var status: Int {
        switch self {
        case .notFound: return 404
        case .notLicensed, .notReleased: return 403
        case .badRequest: return 400
        }
    }
    public var message: String {
        switch self {
        case .notFound(let m), .notLicensed(let m), .notReleased(let m), .badRequest(let m): return m
        }
    }
}

public struct PlaybackRequest: Decodable, Sendable {
    public var track_id: String
    public var quality: String?
    public var next: [String]?
}

public struct Prefetch: Encodable, Sendable, Equatable {
    public var track_id: String
    public var base_url: String
    public var url: String
    public var token: String
    public var range: String
}

/// A granted playback. Serialised by hand: the manifest is spliced in as the JSON cached with
/// the track, so a grant costs no manifest encoding.
public struct Grant: Sendable {
    public var track_id: String
    public var base_url: String
    public var token_name: String
    public var token: String
    public var expires_at: Int
    public var quality: String
    public var bitrate_kbps: Int
    /// Why the quality is lower than asked; always present (null otherwise): a stable contract.
    public var quality_reason: String?
    public var manifestJSON: String
    public var key_hex: String
    public var prefetch: [Prefetch]

    public func json() -> String {
        var o =
            "{\"base_url\":\(q(base_url)),\"bitrate_kbps\":\(bitrate_kbps),\"expires_at\":\(expires_at),\"key_hex\":\(q(key_hex)),"
        o += "\"manifest\":\(manifestJSON),\"prefetch\":["
        o += prefetch.map {
            "{\"base_url\":\(q($0.base_url)),\"range\":\(q($0.range)),\"token\":\(q($0.token)),\"track_id\":\(q($0.track_id)),\"url\":\(q($0.url))}"
        }
        .joined(separator: ",")
        o += "],\"quality\":\(q(quality)),\"quality_reason\":\(quality_reason.map(q) ?? "null"),\"token\":\(q(token)),"
        o += "\"token_name\":\(q(token_name)),\"track_id\":\(q(track_id))}"
        return o
    }

    private func q(_ s: String) -> String { JSONText.quoted(s) }
}

/// Decides who may play what, at which quality, and signs the edge token. Pure apart from the
/// catalog read; the clock is a parameter.
public struct GrantService: Sendable {
    public static let qualities: [(name: String, kbps: Int)] = [
        ("low", 24), ("normal", 96), ("high", 160), ("very_high", 320),
    ]
    public static func maxKbps(_ tier: Identity.Tier) -> Int { tier == .premium ? 320 : 160 }

    let catalog: Catalog
    let signingKey: EdgeAuthKey
    let masterKey: [UInt8]
    let edges: [String]
    let edgesDown: Set<String>
    let ttlSeconds: Int
    let tokenName: String
    let prefetchMax: Int
    /// A worldwide track's grant is bound to the user's country (else it plays anywhere).
    let worldwideBoundToCountry: Bool
    let cache = TrackCache()

    public init(
        catalog: Catalog, signingKey: EdgeAuthKey, masterKey: [UInt8], edges: [String], edgesDown: [String],
        ttlSeconds: Int, tokenName: String, prefetchMax: Int, worldwideBoundToCountry: Bool = false
    ) {
        self.catalog = catalog; self.signingKey = signingKey; self.masterKey = masterKey
        self.edges = edges; self.edgesDown = Set(edgesDown); self.ttlSeconds = ttlSeconds; self.tokenName = tokenName;
        self.prefetchMax = prefetchMax
        self.worldwideBoundToCountry = worldwideBoundToCountry
    }

    /// Where a grant of this track to this user plays: the track's licensed countries, so the edge
    /// refuses the signed URL elsewhere; for a worldwide licence anywhere, or the user's country
    /// when the operator binds worldwide grants. A licence list that is not country codes (the
    /// catalog predates the check) narrows to the user's country, which the grant was checked for.
    func regionClaim(_ t: Track, _ user: Identity) -> RegionClaim {
        // The user's own country is parsed only where it is needed.
        if t.regions.contains("*") {
            return worldwideBoundToCountry ? (RegionClaim(value: user.country) ?? .anywhere) : .anywhere
        }
        return RegionClaim(value: t.regions.joined(separator: ",")) ?? RegionClaim(value: user.country) ?? .anywhere
    }

    /// The track if this user may play it now.
    public func entitled(_ id: String, _ user: Identity, now: Int) throws -> Track {
        try entry(id, user, now: now).track
    }

    func entry(_ id: String, _ user: Identity, now: Int) throws -> TrackCache.Entry {
        guard Self.validID(id) else { throw GrantError.badRequest("track_id must be 1-64 letters, digits, '-' or '_'") }
        let loaded = try cache.get(id, now: Double(now)) { () -> TrackCache.Entry? in
            guard let t = try catalog.track(id: id) else { return nil }
            let key = try KeyWrap.unwrap(t.wrappedKeyHex, master: masterKey)
            var json: [Int: String] = [:]
            let e = JSONEncoder()
            e.outputFormatting = [.sortedKeys]
            for ceiling in [Self.maxKbps(.free), Self.maxKbps(.premium)] {
                var m = t.manifest
                let allowed = m.renditions.filter { $0.bitrate_kbps <= ceiling }
                m.renditions = allowed.isEmpty ? Array(m.renditions.prefix(1)) : allowed
                json[ceiling] = String(decoding: try e.encode(m), as: UTF8.self)
            }
            return TrackCache.Entry(track: t, key: key, manifestJSON: json, loaded: Double(now))
        }
        guard let loaded else { throw GrantError.notFound("no track \(id)") }
        let t = loaded.track
        guard t.regions.contains("*") || t.regions.contains(user.country) else {
            throw GrantError.notLicensed("track \(id) is not licensed in \(user.country)")
        }
        guard Int64(now) >= t.releaseAt else { throw GrantError.notReleased("track \(id) is not released yet") }
        return loaded
    }

    static func validID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 64
            && id.utf8.allSatisfy {
                ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || $0 == 0x2D || $0 == 0x5F
            }
    }

    public func grant(_ req: PlaybackRequest, for user: Identity, now: Int) throws -> Grant {
        let cached = try entry(req.track_id, user, now: now)
        let track = cached.track
        var requested = Self.maxKbps(user.tier)
        if let q = req.quality {
            guard let k = Self.qualities.first(where: { $0.name == q })?.kbps else {
                throw GrantError.badRequest("quality must be one of low, normal, high, very_high")
            }
            requested = k
        }
        if let next = req.next, next.count > 50 { throw GrantError.badRequest("next: at most 50 track ids") }
        let allowedMax = Self.maxKbps(user.tier)
        let allowed = track.manifest.renditions.filter { $0.bitrate_kbps <= allowedMax }
        guard let lowest = track.manifest.renditions.first else {
            throw GrantError.notFound("track \(track.id) has no renditions")
        }
        let target = min(requested, allowedMax)
        let chosen = allowed.last(where: { $0.bitrate_kbps <= target }) ?? allowed.first ?? lowest
        var reason: String? = nil
        if requested > allowedMax {
            reason = "the \(user.tier.rawValue) tier allows at most \(allowedMax) kb/s"
        } else if chosen.bitrate_kbps < requested {
            reason = "\(requested) kb/s is not available for this track"
        }
        let expires = now + ttlSeconds
        let token = Self.token(
            for: track, renditions: allowed.isEmpty ? [lowest] : allowed, key: signingKey, now: now, expires: expires,
            regions: regionClaim(track, user))
        let key = cached.key
        var prefetch: [Prefetch] = []
        for id in (req.next ?? []).prefix(prefetchMax) {
            // Prefetch only what this user may play; others are skipped silently.
            guard let t = try? entitled(id, user, now: now) else { continue }
            let rs = t.manifest.renditions.filter { $0.bitrate_kbps <= allowedMax }
            guard let r = rs.last(where: { $0.bitrate_kbps <= chosen.bitrate_kbps }) ?? rs.first,
                let first = r.chunks.first
            else { continue }
            let base = edge(for: t.id)
            let tok = Self.token(
                for: t, renditions: rs, key: signingKey, now: now, expires: expires, regions: regionClaim(t, user))
            prefetch.append(
                Prefetch(
                    track_id: t.id, base_url: base, url: "\(base)\(r.path)?\(tokenName)=\(tok)", token: tok,
                    range: "bytes=0-\(first.offset + first.length - 1)"))
        }
        let quality = Self.qualities.last(where: { $0.kbps <= chosen.bitrate_kbps })?.name ?? "low"
        return Grant(
            track_id: track.id, base_url: edge(for: track.id), token_name: tokenName, token: token, expires_at: expires,
            quality: quality, bitrate_kbps: chosen.bitrate_kbps, quality_reason: reason,
            manifestJSON: cached.manifestJSON[allowedMax]!, key_hex: Hex.encode(key), prefetch: prefetch)
    }

    /// EdgeAuth 2.0 token whose ACL lists exactly the files this user may fetch: the manifest and
    /// the renditions up to their tier's ceiling (so a free user's token cannot open 320 kb/s), and
    /// the region claim the edge enforces (`data=geo=…`).
    static func token(
        for t: Track, renditions: [Rendition], key: EdgeAuthKey, now: Int, expires: Int, regions: RegionClaim
    ) -> String {
        let acl = ["/audio/\(t.id)/manifest.json"] + renditions.map(\.path)
        return EdgeAuthToken.sign(key: key, acl: acl, startTime: now, expiry: expires, data: regions.dataItem)
    }

    /// Rendezvous (highest-random-weight) hashing: a track always maps to the same edge, so its
    /// chunks concentrate in one cache; an edge marked down hands its tracks to the next best.
    public func edge(for trackID: String) -> String {
        let up = edges.filter { !edgesDown.contains($0) }
        let pool = up.isEmpty ? edges : up
        return pool.max { Rendezvous.weight(node: $0, key: trackID) < Rendezvous.weight(node: $1, key: trackID) }!
    }
}
