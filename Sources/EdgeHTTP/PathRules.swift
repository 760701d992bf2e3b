import EdgeEncoding
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
        return target.withUTF8 { check(bytes: $0) }
    }

    static func check(bytes t: UnsafeBufferPointer<UInt8>) -> Verdict {
        guard t.first == UInt8(ascii: "/") else { return .reject("not origin-form") }
        var pathEnd = t.count
        for k in 0..<t.count {
            if t[k] == UInt8(ascii: "?") { pathEnd = k; break }
            if t[k] == UInt8(ascii: "#") { return .reject("fragment") }
        }
        var needsCopy = false
        var k = 0
        while k < pathEnd {
            let c = t[k]
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
        let query =
            pathEnd < t.count
            ? Substring(String(decoding: UnsafeBufferPointer(rebasing: t[(pathEnd + 1)...]), as: UTF8.self))
            : Substring("")
        guard needsCopy else {
            return .ok(
                path: String(decoding: UnsafeBufferPointer(rebasing: t[0..<pathEnd]), as: UTF8.self), query: query)
        }
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
        return .ok(path: String(decoding: decoded, as: UTF8.self), query: query)
    }

    /// Percent-decodes a query parameter value (no '+' folding: tokens use '~' and '=' literally).
    public static func percentDecode(_ s: Substring) -> String? {
        if let plain = s.utf8.withContiguousStorageIfAvailable({ !$0.contains(UInt8(ascii: "%")) }), plain {
            return String(s)
        }
        var out: [UInt8] = []
        var it = s.utf8.makeIterator()
        while let c = it.next() {
            if c == UInt8(ascii: "%") {
                guard let h = it.next(), let l = it.next(), let hv = Hex.value(h), let lv = Hex.value(l) else {
                    return nil
                }
                out.append(hv << 4 | lv)
            } else {
                out.append(c)
            }
        }
        return String(validating: out, as: UTF8.self)
    }

    /// The value of query parameter `name`, percent-decoded; nil when absent, .some(nil) when
    /// present but badly escaped. Scans contiguous UTF-8: this runs on every request.
    public static func queryValue(_ query: Substring, name: String) -> String?? {
        var name = name
        let found: (Int, Int)?? = name.withUTF8 { n in
            query.utf8.withContiguousStorageIfAvailable { q -> (Int, Int)? in
                var i = 0
                while i < q.count {
                    var end = i
                    while end < q.count && q[end] != UInt8(ascii: "&") { end += 1 }
                    if end - i >= n.count && (0..<n.count).allSatisfy({ q[i + $0] == n[$0] }) {
                        let k = i + n.count
                        if k == end { return (k, k) }
                        if q[k] == UInt8(ascii: "=") { return (k + 1, end) }
                    }
                    i = end + 1
                }
                return nil
            }
        }
        guard let found else { return slowQueryValue(query, name: name) }   // non-contiguous storage (bridged strings)
        guard let (a, b) = found else { return nil }
        let u = query.utf8
        return .some(
            percentDecode(Substring(u[u.index(u.startIndex, offsetBy: a)..<u.index(u.startIndex, offsetBy: b)])))
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
