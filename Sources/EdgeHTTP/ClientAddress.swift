#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An IP address as 128 bits; IPv4 as its IPv4-mapped IPv6 form (`::ffff:a.b.c.d`), so one
/// comparison serves both families.
public struct IPAddress: Hashable, Sendable, CustomStringConvertible {
    public let high: UInt64
    public let low: UInt64

    /// An IPv4 or IPv6 literal (no brackets, no zone); nil for anything else.
    public init?(_ text: some StringProtocol) {
        var bytes = [UInt8](repeating: 0, count: 16)
        let s = String(text)
        guard !s.isEmpty, s.utf8.count <= 45 else { return nil }
        if bytes.withUnsafeMutableBytes({ inet_pton(AF_INET, s, $0.baseAddress! + 12) }) == 1 {
            bytes[10] = 0xFF; bytes[11] = 0xFF
        } else if bytes.withUnsafeMutableBytes({ inet_pton(AF_INET6, s, $0.baseAddress!) }) != 1 {
            return nil
        }
        var h: UInt64 = 0, l: UInt64 = 0
        for i in 0..<8 { h = h << 8 | UInt64(bytes[i]) }
        for i in 8..<16 { l = l << 8 | UInt64(bytes[i]) }
        high = h; low = l
    }

    var isIPv4: Bool { high == 0 && low >> 32 == 0xFFFF }

    public var description: String {
        if isIPv4 {
            let v = low & 0xFFFF_FFFF
            return "\(v >> 24).\(v >> 16 & 0xFF).\(v >> 8 & 0xFF).\(v & 0xFF)"
        }
        var bytes = [UInt8](repeating: 0, count: 16)
        for i in 0..<8 { bytes[i] = UInt8(truncatingIfNeeded: high >> (56 - 8 * UInt64(i))) }
        for i in 0..<8 { bytes[8 + i] = UInt8(truncatingIfNeeded: low >> (56 - 8 * UInt64(i))) }
        var out = [CChar](repeating: 0, count: 64)
        _ = bytes.withUnsafeBytes { b in inet_ntop(AF_INET6, b.baseAddress, &out, 64) }
        return String(cString: out)
    }
}

/// A network in CIDR form (`10.0.0.0/8`, `2001:db8::/32`), or one address (`192.0.2.7`, `::1`).
public struct IPNetwork: Sendable, Equatable, CustomStringConvertible {
    public let base: IPAddress
    /// In the 128-bit space: an IPv4 /8 is 104.
    let prefixBits: Int
    public let description: String

    public static func parse(_ text: String) -> IPNetwork? {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress(parts[0]) else { return nil }
        let familyBits = address.isIPv4 ? 32 : 128
        var bits = familyBits
        if parts.count == 2 {
            guard parts[1].utf8.count <= 3, parts[1].utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                let b = Int(parts[1]), b <= familyBits
            else { return nil }
            bits = b
        }
        let prefix = bits + (128 - familyBits)
        let network = IPNetwork(base: address, prefixBits: prefix, description: text)
        // Host bits set (10.0.0.1/8) most likely mean a typo: refuse rather than widen silently.
        guard network.masked(address) == address else { return nil }
        return network
    }

    private init(base: IPAddress, prefixBits: Int, description: String) {
        self.base = base; self.prefixBits = prefixBits; self.description = description
    }

    private func masked(_ a: IPAddress) -> IPAddress {
        let highMask: UInt64 = prefixBits >= 64 ? ~0 : (prefixBits == 0 ? 0 : ~0 << UInt64(64 - prefixBits))
        let lowMask: UInt64 = prefixBits <= 64 ? 0 : (prefixBits >= 128 ? ~0 : ~0 << UInt64(128 - prefixBits))
        return IPAddress(high: a.high & highMask, low: a.low & lowMask)
    }

    public func contains(_ a: IPAddress) -> Bool { masked(a) == base }
}

extension IPAddress {
    fileprivate init(high: UInt64, low: UInt64) { self.high = high; self.low = low }
}

/// Who the client is behind trusted proxies (`X-Forwarded-For`, RFC 7239's older form).
public enum ForwardedFor {
    /// The client address in an `X-Forwarded-For` value received from a trusted proxy: walking
    /// from the right (the hop nearest to us), the first address that is not itself a trusted
    /// proxy. At most `hopsMax` entries are read. When an entry is not an address, or the walk
    /// runs out, the last trusted hop read stands (nil when that is the peer itself): a client may
    /// write anything at the left of the list, so nothing left of a bad entry is believed.
    public static func client(_ header: Substring, trusted: [IPNetwork], hopsMax: Int) -> IPAddress? {
        var last: IPAddress? = nil
        var hops = 0
        var end = header.endIndex
        while end > header.startIndex && hops < hopsMax {
            let start = header[..<end].lastIndex(of: ",").map { header.index(after: $0) } ?? header.startIndex
            let entry = header[start..<end].trimmingOWS()
            hops += 1
            guard let a = IPAddress(entry) else { return last }
            if !trusted.contains(where: { $0.contains(a) }) { return a }
            last = a
            end = start > header.startIndex ? header.index(before: start) : header.startIndex
        }
        return last
    }
}

/// `http://` or `https://` at the start of a URL: whether it is TLS, and the rest (authority,
/// path). nil for another scheme.
public func splitHTTPScheme(_ url: String) -> (tls: Bool, rest: Substring)? {
    if url.hasPrefix("http://") { return (false, url.dropFirst(7)) }
    if url.hasPrefix("https://") { return (true, url.dropFirst(8)) }
    return nil
}
