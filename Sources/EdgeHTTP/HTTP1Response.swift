import EdgeEncoding
/// A response head from an origin, parsed strictly (RFC 9112 §4), its message framing (§6), and
/// `Content-Range` (RFC 9110 §14.4). Pure code, used by the origin client; an origin is outside
/// input like any client, so every number is bounded and every ambiguity is an error.
public struct OriginResponseHead: Sendable, Equatable {
    public var status: Int
    public var headers: [HeaderField]
    public init(status: Int, headers: [HeaderField]) { self.status = status; self.headers = headers }
    public func header(_ name: String) -> String? {
        for h in headers where h.name == name { return h.value }
        return nil
    }
    /// Every value of a field, in order.
    public func values(_ name: String) -> [String] { headers.filter { $0.name == name }.map(\.value) }

    /// 1xx other than 101: an interim response the client skips (RFC 9110 §15.2).
    public var isInterim: Bool { status >= 100 && status < 200 && status != 101 }

    /// How the body of this response is delimited.
    public enum Framing: Sendable, Equatable {
        case length(Int)
        case chunked
        /// Neither: the body runs to the connection's close (RFC 9112 §6.3 rule 8).
        case untilClose
        case error(String)
    }

    public var framing: Framing {
        let te = values("transfer-encoding")
        let cl = values("content-length")
        if !te.isEmpty {
            // Both present "ought to be handled as an error" (RFC 9112 §6.3 rule 3): it is how
            // responses are split and caches poisoned.
            guard cl.isEmpty else { return .error("both Transfer-Encoding and Content-Length") }
            let codings = te.flatMap { $0.split(separator: ",") }.map { $0.trimmingOWS().lowercased() }
            guard codings == ["chunked"] else {
                return .error("unsupported Transfer-Encoding \(te.joined(separator: ", "))")
            }
            return .chunked
        }
        guard !cl.isEmpty else { return .untilClose }
        var length: Int? = nil
        for v in cl {
            for part in v.split(separator: ",", omittingEmptySubsequences: false) {
                guard let n = ContentRange.strictInt(part.trimmingOWS()) else { return .error("bad Content-Length") }
                if let length, length != n { return .error("conflicting Content-Length values") }
                length = n
            }
        }
        return .length(length!)
    }

    /// Content codings the edge cannot store as the representation's bytes: anything but identity.
    public var contentEncodingError: String? {
        for v in values("content-encoding") {
            for c in v.split(separator: ",") where c.trimmingOWS().lowercased() != "identity" {
                return "unsupported Content-Encoding \(v)"
            }
        }
        return nil
    }
}

public enum HTTP1ResponseParseResult: Equatable {
    case needMore
    case head(OriginResponseHead, consumed: Int)
    case error(String)
}

public enum HTTP1ResponseParser {
    public static func parse(
        _ bytes: UnsafeRawBufferPointer, headerBytesMax: Int = 32768, headerCountMax: Int = 128
    ) -> HTTP1ResponseParseResult {
        let n = bytes.count
        // Find the end of the head, within the bound.
        var end = -1
        var i = 0
        let scan = min(n, headerBytesMax)
        while i + 3 < scan {
            if bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 { end = i; break }
            i += 1
        }
        if end < 0 {
            if n >= 5 && !bytes.prefix(5).elementsEqual("HTTP/".utf8) { return .error("bad status line") }
            return n >= headerBytesMax ? .error("response head too large") : .needMore
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[0..<end]), as: UTF8.self)
        var lines = text.split(separator: "\r\n", omittingEmptySubsequences: false).makeIterator()
        guard let statusLine = lines.next() else { return .error("empty response") }
        let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, parts[0] == "HTTP/1.1" || parts[0] == "HTTP/1.0", parts[1].utf8.count == 3,
            parts[1].utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let status = Int(parts[1]), status >= 100,
            status <= 599
        else {
            return .error("bad status line")
        }
        var headers: [HeaderField] = []
        while let line = lines.next() {
            guard headers.count < headerCountMax else { return .error("too many header fields") }
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex else {
                return .error("bad header line")
            }
            let name = line[..<colon]
            guard name.utf8.allSatisfy({ HTTP1Parser.isTchar($0) }) else { return .error("bad header name") }
            let value = line[line.index(after: colon)...].trimmingOWS()
            guard value.utf8.allSatisfy({ HTTP1Parser.isFieldValueChar($0) }) else { return .error("bad header value") }
            headers.append(HeaderField(name.lowercased(), String(value)))
        }
        return .head(OriginResponseHead(status: status, headers: headers), consumed: end + 4)
    }
}

/// An incremental decoder of the chunked transfer coding (RFC 9112 §7.1): chunk sizes, extensions
/// and trailers are consumed and dropped, data is handed on. Bounded: a size of at most 15 hex
/// digits (no overflow), extension and trailer lines of bounded length.
public struct ChunkedDecoder: Sendable {
    enum State: Sendable {
        case size, ext, sizeLF, data, dataCR, dataLF, trailerStart, trailerLine, trailerLF, finalLF, done
    }
    var state = State.size
    var remaining = 0
    var sizeDigits = 0
    var lineBytes = 0
    var trailerBytes = 0
    public let lineBytesMax: Int
    public let trailerBytesMax: Int

    public init(lineBytesMax: Int = 4096, trailerBytesMax: Int = 8192) {
        self.lineBytesMax = lineBytesMax
        self.trailerBytesMax = trailerBytesMax
    }

    /// The last chunk and the trailer section have been read.
    public var isDone: Bool { state == .done }

    public enum Result: Sendable, Equatable {
        /// Bytes of the input consumed (all of them, unless the message ended inside it).
        case consumed(Int)
        case error(String)
    }

    /// Decodes `input`, calling `data` for each run of body bytes; `data` returns false to stop
    /// (the caller refuses the bytes), which ends decoding with an error.
    public mutating func feed(_ input: UnsafeRawBufferPointer, data: (UnsafeRawBufferPointer) -> Bool) -> Result {
        var i = 0
        let n = input.count
        while i < n {
            let c = input[i]
            switch state {
            case .size:
                if let v = Hex.value(c) {
                    guard sizeDigits < 15 else { return .error("chunk size too large") }
                    remaining = remaining << 4 | Int(v)
                    sizeDigits += 1
                } else if sizeDigits > 0 && c == UInt8(ascii: ";") {
                    state = .ext; lineBytes = 0
                } else if sizeDigits > 0 && c == 13 {
                    state = .sizeLF
                } else {
                    return .error("bad chunk size")
                }
                i += 1
            case .ext:
                if c == 13 {
                    state = .sizeLF
                } else {
                    lineBytes += 1
                    guard lineBytes <= lineBytesMax else { return .error("chunk extension too long") }
                    guard c == 9 || (c >= 0x20 && c != 0x7F) else { return .error("bad chunk extension") }
                }
                i += 1
            case .sizeLF:
                guard c == 10 else { return .error("bad chunk size line") }
                i += 1
                sizeDigits = 0
                state = remaining == 0 ? .trailerStart : .data
            case .data:
                let take = min(remaining, n - i)
                guard data(UnsafeRawBufferPointer(rebasing: input[i..<(i + take)])) else {
                    return .error("more data than expected")
                }
                remaining -= take
                i += take
                if remaining == 0 { state = .dataCR }
            case .dataCR:
                guard c == 13 else { return .error("chunk data longer than its size") }
                state = .dataLF; i += 1
            case .dataLF:
                guard c == 10 else { return .error("bad chunk terminator") }
                state = .size; i += 1
            case .trailerStart:
                if c == 13 { state = .finalLF } else { state = .trailerLine; lineBytes = 0; continue }
                i += 1
            case .trailerLine:
                if c == 13 {
                    state = .trailerLF
                } else {
                    trailerBytes += 1
                    guard trailerBytes <= trailerBytesMax else { return .error("trailer section too large") }
                    guard c == 9 || (c >= 0x20 && c != 0x7F) || c >= 0x80 else { return .error("bad trailer field") }
                }
                i += 1
            case .trailerLF:
                guard c == 10 else { return .error("bad trailer line") }
                state = .trailerStart; i += 1
            case .finalLF:
                guard c == 10 else { return .error("bad end of chunked body") }
                state = .done; i += 1
                return .consumed(i)
            case .done:
                return .consumed(i)
            }
        }
        return .consumed(i)
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
            first <= last, last < complete
        else { return nil }
        return ContentRange(first: first, last: last, complete: complete)
    }

    /// Decimal digits only, nil past `Int.max`: overflow-checked, never traps.
    public static func strictInt(_ s: Substring) -> Int? {
        guard !s.isEmpty, s.utf8.count <= 19 else { return nil }
        var v = 0
        for c in s.utf8 {
            guard c >= 0x30 && c <= 0x39 else { return nil }
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(Int(c - 0x30))
            guard !o1 && !o2 else { return nil }
            v = a
        }
        return v
    }
}
