/// A response head from an origin, parsed strictly (RFC 9112 §4), and `Content-Range` (RFC 9110
/// §14.4). Pure code, used by the origin client.
public struct OriginResponseHead: Sendable, Equatable {
    public var status: Int
    public var headers: [HeaderField]
    public func header(_ name: String) -> String? {
        for h in headers where h.name == name { return h.value }
        return nil
    }
}

public enum HTTP1ResponseParseResult: Equatable {
    case needMore
    case head(OriginResponseHead, consumed: Int)
    case error(String)
}

public enum HTTP1ResponseParser {
    public static func parse(_ bytes: UnsafeRawBufferPointer, headerBytesMax: Int = 32768) -> HTTP1ResponseParseResult {
        let n = bytes.count
        // Find the end of the head.
        var end = -1
        var i = 0
        while i + 3 < n {
            if bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 { end = i; break }
            i += 1
        }
        if end < 0 { return n > headerBytesMax ? .error("response head too large") : .needMore }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[0..<end]), as: UTF8.self)
        var lines = text.split(separator: "\r\n", omittingEmptySubsequences: false).makeIterator()
        guard let statusLine = lines.next() else { return .error("empty response") }
        let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, parts[0] == "HTTP/1.1" || parts[0] == "HTTP/1.0", parts[1].count == 3, let status = Int(parts[1]), status >= 100 else {
            return .error("bad status line")
        }
        var headers: [HeaderField] = []
        while let line = lines.next() {
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex else { return .error("bad header line") }
            let name = line[..<colon]
            guard name.utf8.allSatisfy({ HTTP1Parser.isTchar($0) }) else { return .error("bad header name") }
            let value = line[line.index(after: colon)...].trimmingOWS()
            guard value.utf8.allSatisfy({ HTTP1Parser.isFieldValueChar($0) }) else { return .error("bad header value") }
            headers.append(HeaderField(name.lowercased(), String(value)))
        }
        return .head(OriginResponseHead(status: status, headers: headers), consumed: end + 4)
    }
}

/// `Content-Range: bytes first-last/complete` (complete may be `*` only for 416, refused here).
public struct ContentRange: Sendable, Equatable {
    public var first: Int
    public var last: Int
    public var complete: Int

    public static func parse(_ value: String) -> ContentRange? {
        guard value.hasPrefix("bytes ") else { return nil }
        let rest = value.dropFirst(6)
        guard let dash = rest.firstIndex(of: "-"), let slash = rest.firstIndex(of: "/"), dash < slash,
              let first = strictInt(rest[..<dash]), let last = strictInt(rest[rest.index(after: dash)..<slash]),
              let complete = strictInt(rest[rest.index(after: slash)...]),
              first <= last, last < complete else { return nil }
        return ContentRange(first: first, last: last, complete: complete)
    }

    static func strictInt(_ s: Substring) -> Int? {
        guard !s.isEmpty, s.count <= 18, s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int(s)
    }
}
