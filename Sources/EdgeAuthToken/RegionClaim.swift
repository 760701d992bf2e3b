/// An ISO 3166-1 alpha-2 country code: two upper-case ASCII letters in 16 bits, so a connection
/// keeps its client's country in a register and a claim's list is compared without strings.
public struct CountryCode: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let packed: UInt16

    /// Two ASCII letters, either case; nil for anything else.
    public init?(_ text: some StringProtocol) {
        let u = Array(text.utf8)
        guard u.count == 2 else { return nil }
        self.init(u[0], u[1])
    }

    public init?(_ a: UInt8, _ b: UInt8) {
        let ua = a & ~0x20, ub = b & ~0x20   // upper case; a non-letter stays outside A...Z
        guard ua >= 0x41 && ua <= 0x5A && ub >= 0x41 && ub <= 0x5A else { return nil }
        packed = UInt16(ua) << 8 | UInt16(ub)
    }

    public var description: String {
        String(decoding: [UInt8(truncatingIfNeeded: packed >> 8), UInt8(truncatingIfNeeded: packed)], as: UTF8.self)
    }

    public static func < (a: CountryCode, b: CountryCode) -> Bool { a.packed < b.packed }
}

/// Where a grant may be played: the `geo` item of a token's `data` field, signed with the rest of
/// the token. `data` is a list of `name=value` items separated by `;`; items other than `geo` are
/// left to their signers. `geo=*` is anywhere; `geo=US,CA` the listed countries (ISO 3166-1
/// alpha-2, 1 to `countriesMax`).
public enum RegionClaim: Sendable, Equatable, CustomStringConvertible {
    case anywhere
    case countries([CountryCode])   // sorted, no duplicates

    /// More than there are countries: a longer list is not a licence, it is an attack on the parser.
    public static let countriesMax = 300

    public func allows(_ country: CountryCode) -> Bool {
        switch self {
        case .anywhere: return true
        case .countries(let list): return list.contains(country)
        }
    }

    /// The `data` item that carries this claim (what `playback-auth` signs).
    public var dataItem: String { "geo=" + description }

    public var description: String {
        switch self {
        case .anywhere: return "*"
        case .countries(let list): return list.map(\.description).joined(separator: ",")
        }
    }

    /// A claim's value (`*` or a comma-separated list); nil when malformed.
    public init?(value: some StringProtocol) {
        if value == "*" { self = .anywhere; return }
        // One country, the usual claim, without the split, set and sort below.
        let utf8 = value.utf8
        if utf8.count == 2 {
            guard let c = CountryCode(utf8[utf8.startIndex], utf8[utf8.index(after: utf8.startIndex)]) else {
                return nil
            }
            self = .countries([c])
            return
        }
        var codes: [CountryCode] = []
        for part in value.split(separator: ",", omittingEmptySubsequences: false) {
            guard codes.count < Self.countriesMax, let c = CountryCode(part) else { return nil }
            codes.append(c)
        }
        guard !codes.isEmpty else { return nil }
        self = .countries(Array(Set(codes)).sorted())
    }

    /// The claim in a token's `data` field: `.absent` without a `geo` item, `.malformed` when the
    /// item does not parse or appears twice (a signer that means something else by `geo` is
    /// refused rather than guessed at).
    public static func parse(data: String?) -> Parsed {
        guard let data else { return .absent }
        var found: RegionClaim? = nil
        for item in data.split(separator: ";", omittingEmptySubsequences: true) {
            guard item.hasPrefix("geo=") else { continue }
            guard found == nil, let claim = RegionClaim(value: item.dropFirst(4)) else { return .malformed }
            found = claim
        }
        return found.map(Parsed.claim) ?? .absent
    }

    public enum Parsed: Equatable, Sendable {
        case absent, malformed
        case claim(RegionClaim)
    }
}

/// How the edge treats region claims: `[geo]` in the configuration.
public struct GeoPolicy: Sendable, Equatable {
    /// Refuse tokens without a `geo` claim (other signers' tokens stop working).
    public var requireClaim: Bool
    /// Addresses the database has no country for (private ranges, new allocations).
    public var allowUnknown: Bool
    public init(requireClaim: Bool = false, allowUnknown: Bool = true) {
        self.requireClaim = requireClaim; self.allowUnknown = allowUnknown
    }

    /// `.ok` or `.geo`. `country` is asked only when the claim lists countries: the lookup is the
    /// only part that costs, and a worldwide grant needs none.
    public func check(_ claim: RegionClaim?, country: () -> CountryCode?) -> EdgeAuthVerdict {
        guard let claim else { return requireClaim ? .geo : .ok }
        guard case .countries = claim else { return .ok }
        guard let c = country() else { return allowUnknown ? .ok : .geo }
        return claim.allows(c) ? .ok : .geo
    }
}
