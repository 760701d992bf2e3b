import EdgeEncoding

#if canImport(Glibc)
    import Glibc
#endif
/// Request-target checks done before any token, cache or disk work. Pure.
public enum PathRules {
    public enum Verdict: Equatable, Sendable {
        /// The decoded path (no query) and the query string (may be empty).
        case ok(path: String, query: Substring)
        case reject(String)
    }

    /// Splits the target into path and query and rejects what a strict edge should not normalise:
    /// dot segments, empty segments (`//`), encoded slash / dot / NUL, backslashes, non-ASCII and
    /// control bytes, and `;` raw or encoded (path parameters: several origin frameworks read
    /// `..;` as `..`, and audio paths never carry one). Other `%XX` escapes are decoded (and must
    /// decode to a safe character).
    public static func check(_ target: String) -> Verdict {
        var target = target
        // The query shares the target's storage, and so does the path when there is no query:
        // a String of each, made from the bytes, cost two allocations per request.
        let scanned: (Scan, String?) = target.withUTF8 { t in
            let s = Self.scan(t)
            guard case .plain(let pathEnd) = s, pathEnd < t.count else { return (s, nil) }
            return (s, String(decoding: UnsafeBufferPointer(rebasing: t[..<pathEnd]), as: UTF8.self))
        }
        switch scanned.0 {
        case .reject(let why): return .reject(why)
        case .plain(let pathEnd): return .ok(path: scanned.1 ?? target, query: query(target, after: pathEnd))
        case .escaped(let pathEnd, let path): return .ok(path: path, query: query(target, after: pathEnd))
        }
    }

    private static func query(_ target: String, after pathEnd: Int) -> Substring {
        let u = target.utf8
        guard pathEnd < u.count else { return Substring("") }
        return Substring(u[u.index(u.startIndex, offsetBy: pathEnd + 1)...])
    }

    private enum Scan {
        case reject(String)
        /// No escape in the path, which ends at this offset (a `?`, or the end).
        case plain(pathEnd: Int)
        /// The decoded path, and where it ends in the target.
        case escaped(pathEnd: Int, path: String)
    }

    /// Printable ASCII that needs no check of its own in a path: not `%`, `/`, `;`, `\` or `#`.
    /// Bit `c` of the first word for bytes below 64, bit `c - 64` of the second.
    private static let ordinaryLow: UInt64 = {
        var m: UInt64 = 0
        for c in 0x21..<0x40 where ![0x23, 0x25, 0x2F, 0x3B].contains(c) { m |= 1 << UInt64(c) }
        return m
    }()
    private static let ordinaryHigh: UInt64 = {
        var m: UInt64 = 0
        for c in 0x40..<0x7F where c != 0x5C { m |= 1 << UInt64(c - 0x40) }
        return m
    }()

    @inline(__always) private static func isOrdinary(_ c: UInt8, low: UInt64, high: UInt64) -> Bool {
        c < 0x80 && ((c < 0x40 ? low : high) >> UInt64(c & 0x3F)) & 1 == 1
    }

    private static func scan(_ t: UnsafeBufferPointer<UInt8>) -> Scan {
        guard let base = t.baseAddress, t.first == UInt8(ascii: "/") else { return .reject("not origin-form") }
        // memchr: the query (a token: most of the target) is never walked byte by byte here.
        let pathEnd =
            memchr(base, Int32(UInt8(ascii: "?")), t.count).map { UnsafeRawPointer($0) - UnsafeRawPointer(base) }
            ?? t.count
        if memchr(base, Int32(UInt8(ascii: "#")), pathEnd) != nil { return .reject("fragment") }
        var needsCopy = false
        var k = 0
        let low = ordinaryLow, high = ordinaryHigh
        while k < pathEnd {
            let c = base[k]
            // Most bytes are ordinary: one test each, the checks below only for the rest.
            if isOrdinary(c, low: low, high: high) { k += 1; continue }
            if c == UInt8(ascii: "%") {
                guard k + 2 < pathEnd, let hv = Hex.value(t[k + 1]), let lv = Hex.value(t[k + 2]) else {
                    return .reject("bad escape")
                }
                let v = hv << 4 | lv
                if v == UInt8(ascii: "/") || v == UInt8(ascii: ".") || v == 0 || v == UInt8(ascii: "\\")
                    || v == UInt8(ascii: ";")
                {
                    return .reject("encoded separator")
                }
                guard v > 0x20, v < 0x7F, v != UInt8(ascii: "%") else { return .reject("encoded unsafe byte") }
                needsCopy = true
                k += 3
                continue
            }
            if c == UInt8(ascii: "\\") { return .reject("backslash") }
            if c == UInt8(ascii: ";") { return .reject("path parameter") }
            guard c > 0x20, c < 0x7F else { return .reject("non-ASCII or control byte") }
            if c == UInt8(ascii: "/") && k + 1 < pathEnd {
                let n = t[k + 1]
                if n == UInt8(ascii: "/") { return .reject("empty segment") }
                if n == UInt8(ascii: ".") {
                    let a = k + 2 < pathEnd ? t[k + 2] : UInt8(ascii: "/")
                    if a == UInt8(ascii: "/") { return .reject("dot segment") }
                    if a == UInt8(ascii: ".") && (k + 3 >= pathEnd || t[k + 3] == UInt8(ascii: "/")) {
                        return .reject("dot segment")
                    }
                }
            }
            k += 1
        }
        guard needsCopy else { return .plain(pathEnd: pathEnd) }
        // Escapes never decode to '/' or '.' (rejected above), so the segment checks made on the raw
        // bytes hold for the decoded path too.
        var decoded: [UInt8] = []
        decoded.reserveCapacity(pathEnd)
        k = 0
        while k < pathEnd {
            if t[k] == UInt8(ascii: "%") {
                decoded.append(Hex.value(t[k + 1])! << 4 | Hex.value(t[k + 2])!); k += 3
            } else {
                decoded.append(t[k]); k += 1
            }
        }
        return .escaped(pathEnd: pathEnd, path: String(decoding: decoded, as: UTF8.self))
    }

    /// Percent-decodes a query parameter value (no '+' folding: tokens use '~' and '=' literally).
    public static func percentDecode(_ s: Substring) -> String? {
        if let decoded = s.utf8.withContiguousStorageIfAvailable({ percentDecode(bytes: $0) }) { return decoded }
        return percentDecode(bytes: Array(s.utf8))
    }

    static func percentDecode(bytes: [UInt8]) -> String? { bytes.withUnsafeBufferPointer { percentDecode(bytes: $0) } }

    public static func percentDecode(bytes s: UnsafeBufferPointer<UInt8>) -> String? {
        guard s.count > 0, memchr(s.baseAddress!, Int32(UInt8(ascii: "%")), s.count) != nil else {
            return String(decoding: s, as: UTF8.self)
        }
        var out: [UInt8] = []
        out.reserveCapacity(s.count)
        var k = 0
        while k < s.count {
            if s[k] == UInt8(ascii: "%") {
                guard k + 2 < s.count, let hv = Hex.value(s[k + 1]), let lv = Hex.value(s[k + 2]) else { return nil }
                out.append(hv << 4 | lv)
                k += 3
            } else {
                out.append(s[k])
                k += 1
            }
        }
        return String(validating: out, as: UTF8.self)
    }

    /// The value of query parameter `name`, percent-decoded; nil when absent, .some(nil) when
    /// present but badly escaped. Scans contiguous UTF-8 with `memchr`, and decodes the value
    /// from those bytes: this runs on every request.
    public static func queryValue(_ query: Substring, name: String) -> String?? {
        var name = name
        let found: String??? = name.withUTF8 { n in
            query.utf8.withContiguousStorageIfAvailable { q -> String?? in
                guard let v = rawQueryValue(q, name: n) else { return nil }
                return .some(percentDecode(bytes: v))
            }
        }
        guard let found else { return slowQueryValue(query, name: name) }   // non-contiguous storage (bridged strings)
        return found
    }

    /// The bytes of query parameter `name`'s value as received (not decoded), within `query`;
    /// nil when absent. The value of `name` alone (no `=`) is empty.
    public static func rawQueryValue(
        _ q: UnsafeBufferPointer<UInt8>, name n: UnsafeBufferPointer<UInt8>
    ) -> UnsafeBufferPointer<UInt8>? {
        guard n.count > 0, let base = q.baseAddress else { return nil }
        var i = 0
        while i < q.count {
            let end =
                memchr(base + i, Int32(UInt8(ascii: "&")), q.count - i).map {
                    UnsafePointer<UInt8>($0.assumingMemoryBound(to: UInt8.self)) - base
                } ?? q.count
            if end - i >= n.count && memcmp(base + i, n.baseAddress!, n.count) == 0 {
                let k = i + n.count
                if k == end { return UnsafeBufferPointer(start: base + k, count: 0) }
                if q[k] == UInt8(ascii: "=") { return UnsafeBufferPointer(rebasing: q[(k + 1)..<end]) }
            }
            i = end + 1
        }
        return nil
    }

    static func slowQueryValue(_ query: Substring, name: String) -> String?? {
        for part in query.split(separator: "&") {
            if let eq = part.firstIndex(of: "=") {
                if part[..<eq] == name { return .some(percentDecode(part[part.index(after: eq)...])) }
            } else if part == name {
                return .some("")
            }
        }
        return nil
    }

    /// The value of cookie `name` from a Cookie header.
    public static func cookieValue(_ header: String, name: String) -> String? {
        for part in header.split(separator: ";") {
            let trimmed = part.trimmingOWS()
            if let eq = trimmed.firstIndex(of: "="), trimmed[trimmed.startIndex..<eq] == name {
                var v = trimmed[trimmed.index(after: eq)...]
                if v.hasPrefix("\"") && v.hasSuffix("\"") && v.count >= 2 { v = v.dropFirst().dropLast() }
                return String(v)
            }
        }
        return nil
    }
}

public enum MediaTypes {
    /// Content-Type by file extension; audio formats first, a safe default otherwise.
    public static func type(forPath path: String) -> String {
        guard let dot = path.lastIndex(of: "."), path[dot...].count <= 8 else { return "application/octet-stream" }
        switch path[path.index(after: dot)...].lowercased() {
        case "m4a", "mp4", "m4s": return "audio/mp4"
        case "aac": return "audio/aac"
        case "mp3": return "audio/mpeg"
        case "ogg", "oga": return "audio/ogg"
        case "opus": return "audio/ogg; codecs=opus"
        case "webm": return "audio/webm"
        case "flac": return "audio/flac"
        case "wav": return "audio/wav"
        case "ts": return "video/mp2t"
        case "m3u8": return "application/vnd.apple.mpegurl"
        case "mpd": return "application/dash+xml"
        case "json": return "application/json"
        case "enc", "bin": return "application/octet-stream"
        default: return "application/octet-stream"
        }
    }
}
