/// Limits the HTTP/1.1 parser enforces; each maps to a status code when exceeded.
public struct HTTP1Limits: Sendable {
    /// Longest request line (method, target, version) before 414.
    public var requestLineBytesMax: Int
    /// Largest header section (request line included) before 431.
    public var headerBytesMax: Int
    /// Most header fields before 431.
    public var headerCountMax: Int

    public init(requestLineBytesMax: Int = 8192, headerBytesMax: Int = 16384, headerCountMax: Int = 64) {
        self.requestLineBytesMax = requestLineBytesMax
        self.headerBytesMax = headerBytesMax
        self.headerCountMax = headerCountMax
    }
}

/// What the parser made of the bytes at the front of the buffer.
public enum HTTP1ParseResult: Equatable {
    /// Not a whole header section yet; call again with more bytes.
    case needMore
    /// A whole request head, `consumed` bytes long, followed by `bodyLength` bytes of body.
    case request(EdgeRequest, consumed: Int, bodyLength: Int)
    /// A protocol error: answer `status` with the short `reason` and close the connection.
    case error(status: Int, reason: String)

    public static func == (a: HTTP1ParseResult, b: HTTP1ParseResult) -> Bool {
        switch (a, b) {
        case (.needMore, .needMore): return true
        case let (.error(s1, r1), .error(s2, r2)): return s1 == s2 && r1 == r2
        case let (.request(q1, c1, b1), .request(q2, c2, b2)):
            return q1.method == q2.method && q1.target == q2.target && q1.fields == q2.fields && c1 == c2 && b1 == b2
        default: return false
        }
    }
}

/// Strict RFC 9112 request-head parser. Pure: bytes in, a verdict out; no state between calls
/// (the caller keeps unconsumed bytes and calls again when more arrive).
public struct HTTP1Parser {
    public var limits: HTTP1Limits
    public init(limits: HTTP1Limits = HTTP1Limits()) { self.limits = limits }

    private static let CR: UInt8 = 13, LF: UInt8 = 10, SP: UInt8 = 32, HT: UInt8 = 9, COLON: UInt8 = 58

    @inline(__always) static func isTchar(_ c: UInt8) -> Bool {
        switch c {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: return true
        case 0x21, 0x23, 0x24, 0x25, 0x26, 0x27, 0x2A, 0x2B, 0x2D, 0x2E, 0x5E, 0x5F, 0x60, 0x7C, 0x7E: return true
        default: return false
        }
    }
    @inline(__always) static func isFieldValueChar(_ c: UInt8) -> Bool {
        c == HT || (c >= 0x20 && c != 0x7F)   // VCHAR, SP, HTAB, obs-text
    }
    @inline(__always) static func isTargetChar(_ c: UInt8) -> Bool {
        c > 0x20 && c < 0x7F   // visible ASCII; finer checks happen in path validation
    }

    public func parse(_ bytes: UnsafeRawBufferPointer) -> HTTP1ParseResult {
        let n = bytes.count
        var i = 0
        // RFC 9112 §2.2: ignore at least one empty line before the request line.
        var emptyLines = 0
        while i + 1 < n, bytes[i] == Self.CR, bytes[i + 1] == Self.LF {
            i += 2; emptyLines += 1
            if emptyLines > 4 { return .error(status: 400, reason: "empty lines before request") }
        }
        if i < n, bytes[i] == Self.LF { return .error(status: 400, reason: "bare LF") }
        // Request line.
        let lineStart = i
        var lineEnd = -1
        while i < n {
            let c = bytes[i]
            if c == Self.CR {
                if i + 1 >= n { break }
                guard bytes[i + 1] == Self.LF else { return .error(status: 400, reason: "bare CR") }
                lineEnd = i; break
            }
            if c == Self.LF { return .error(status: 400, reason: "bare LF") }
            i += 1
            if i - lineStart > limits.requestLineBytesMax {
                return .error(status: 414, reason: "request line too long")
            }
        }
        if lineEnd < 0 {
            if n - lineStart > limits.requestLineBytesMax {
                return .error(status: 414, reason: "request line too long")
            }
            return .needMore
        }
        // method SP target SP version, exactly one space each.
        var p = lineStart
        while p < lineEnd, Self.isTchar(bytes[p]) { p += 1 }
        guard p > lineStart, p < lineEnd, bytes[p] == Self.SP else { return .error(status: 400, reason: "bad method") }
        let method = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[lineStart..<p]), as: UTF8.self)
        p += 1
        let targetStart = p
        while p < lineEnd, bytes[p] != Self.SP {
            guard Self.isTargetChar(bytes[p]) else { return .error(status: 400, reason: "bad character in target") }
            p += 1
        }
        guard p > targetStart, p < lineEnd else { return .error(status: 400, reason: "bad request line") }
        var target = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[targetStart..<p]), as: UTF8.self)
        p += 1
        let versionBytes = UnsafeRawBufferPointer(rebasing: bytes[p..<lineEnd])
        let version: HTTPVersion
        if versionBytes.elementsEqual("HTTP/1.1".utf8) {
            version = .http1_1
        } else if versionBytes.elementsEqual("HTTP/1.0".utf8) {
            version = .http1_0
        } else if versionBytes.count == 8, versionBytes.starts(with: "HTTP/".utf8),
            versionBytes[5] >= 0x30, versionBytes[5] <= 0x39, versionBytes[6] == 0x2E, versionBytes[7] >= 0x30,
            versionBytes[7] <= 0x39
        {
            return .error(status: 505, reason: "unsupported HTTP version")
        } else {
            return .error(status: 400, reason: "bad HTTP version")
        }

        // Header fields.
        i = lineEnd + 2
        var fields = HeaderBlock()
        fields.reserveCapacity(bytes: 512)
        // Message framing and host rules (RFC 9112 §6, §3.2), checked as each field arrives.
        var contentLength: Int? = nil
        var hostCount = 0
        while true {
            if i - lineStart > limits.headerBytesMax { return .error(status: 431, reason: "header section too large") }
            guard i < n else { return .needMore }
            if bytes[i] == Self.CR {
                guard i + 1 < n else { return .needMore }
                guard bytes[i + 1] == Self.LF else { return .error(status: 400, reason: "bare CR") }
                i += 2
                break
            }
            if bytes[i] == Self.SP || bytes[i] == Self.HT {
                return .error(status: 400, reason: "obsolete line folding")
            }
            let nameStart = i
            while i < n, Self.isTchar(bytes[i]) { i += 1 }
            guard i < n else {
                return i - lineStart > limits.headerBytesMax
                    ? .error(status: 431, reason: "header section too large") : .needMore
            }
            guard i > nameStart, bytes[i] == Self.COLON else { return .error(status: 400, reason: "bad header name") }
            let nameEnd = i
            i += 1
            var valueStart = -1, valueEnd = -1, lineDone = false
            while i < n {
                let c = bytes[i]
                if c == Self.CR {
                    guard i + 1 < n else { break }
                    guard bytes[i + 1] == Self.LF else { return .error(status: 400, reason: "bare CR") }
                    lineDone = true; break
                }
                if c == Self.LF { return .error(status: 400, reason: "bare LF") }
                guard Self.isFieldValueChar(c) else {
                    return .error(status: 400, reason: "bad character in header value")
                }
                if c != Self.SP && c != Self.HT {
                    if valueStart < 0 { valueStart = i }
                    valueEnd = i + 1
                }
                i += 1
            }
            guard lineDone else {
                return i - lineStart > limits.headerBytesMax
                    ? .error(status: 431, reason: "header section too large") : .needMore
            }
            if fields.count == limits.headerCountMax { return .error(status: 431, reason: "too many header fields") }
            let name = UnsafeRawBufferPointer(rebasing: bytes[nameStart..<nameEnd])
            let value =
                valueStart < 0
                ? UnsafeRawBufferPointer(rebasing: bytes[nameStart..<nameStart])
                : UnsafeRawBufferPointer(rebasing: bytes[valueStart..<valueEnd])
            if Self.name(name, is: "content-length") {
                if contentLength != nil { return .error(status: 400, reason: "duplicate Content-Length") }
                // At most 18 digits: no overflow, and nothing an Int cannot hold.
                guard value.count > 0, value.count <= 18, value.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
                    return .error(status: 400, reason: "bad Content-Length")
                }
                contentLength = value.reduce(0) { $0 * 10 + Int($1 - 0x30) }
            } else if Self.name(name, is: "transfer-encoding") {
                // This edge takes no request bodies in chunked form; TE on a GET is a smuggling vector.
                return .error(status: 400, reason: "Transfer-Encoding not accepted")
            } else if Self.name(name, is: "host") {
                hostCount += 1
            }
            fields.append(lowercasingName: name, value: value)
            i += 2
        }
        if i - lineStart > limits.headerBytesMax { return .error(status: 431, reason: "header section too large") }
        if hostCount > 1 { return .error(status: 400, reason: "duplicate Host") }
        if version == .http1_1 && hostCount == 0 { return .error(status: 400, reason: "missing Host") }

        // Target forms (RFC 9112 §3.2): origin-form, absolute-form (path taken from it), asterisk-form for OPTIONS.
        if target.utf8.first == UInt8(ascii: "/") {
            // origin-form
        } else if target == "*" {
            guard method == "OPTIONS" else { return .error(status: 400, reason: "asterisk-form outside OPTIONS") }
        } else if let path = Self.pathOfAbsoluteForm(target) {
            target = path
        } else {
            return .error(status: 400, reason: "bad request target")
        }
        let request = EdgeRequest(method: method, target: target, version: version, fields: fields)
        return .request(request, consumed: i, bodyLength: contentLength ?? 0)
    }

    /// Whether a field name is `lower` (lower-case ASCII), ignoring the name's case.
    @inline(__always) static func name(_ name: UnsafeRawBufferPointer, is lower: StaticString) -> Bool {
        guard name.count == lower.utf8CodeUnitCount else { return false }
        let l = lower.utf8Start
        for k in 0..<name.count {
            let c = name[k]
            if (c >= 0x41 && c <= 0x5A ? c | 0x20 : c) != l[k] { return false }
        }
        return true
    }

    /// `http://authority/path?q` → `/path?q`; nil when the form is anything else.
    static func pathOfAbsoluteForm(_ target: String) -> String? {
        let lower = target.lowercased()
        let schemeLength: Int
        if lower.hasPrefix("http://") {
            schemeLength = 7
        } else if lower.hasPrefix("https://") {
            schemeLength = 8
        } else {
            return nil
        }
        let rest = target.dropFirst(schemeLength)
        guard let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) else { return rest.isEmpty ? nil : "/" }
        guard slash != rest.startIndex else { return nil }   // empty authority
        let path = rest[slash...]
        return path.first == "?" ? "/" + path : String(path)
    }
}
