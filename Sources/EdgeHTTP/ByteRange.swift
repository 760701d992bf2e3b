/// One satisfiable byte range of a representation: `first...last`, both inclusive (RFC 9110 §14.1.1).
public struct ByteRange: Sendable, Equatable {
    public var first: Int
    public var last: Int
    public init(_ first: Int, _ last: Int) { self.first = first; self.last = last }
    public var length: Int { last - first + 1 }
    public var contentRange: String { "bytes \(first)-\(last)" }
}

/// What to send for a GET given its `Range` header and the representation's length.
public enum RangeDecision: Sendable, Equatable {
    /// 200 with the whole representation (no Range, a Range this server ignores, or a failed If-Range).
    case whole
    /// 206 with one range, or `multipart/byteranges` for several.
    case partial([ByteRange])
    /// 416 with `Content-Range: bytes */length`.
    case unsatisfiable
}

/// Range evaluation (RFC 9110 §14.2). Pure code: no I/O, no allocation beyond the result.
public enum RangeEvaluator {
    /// One `range-spec` as written: `first-[last]`, or a suffix `-length` (`first == nil`).
    /// Values too large for an `Int` saturate at `Int.max` (past any representation).
    public struct Spec: Sendable, Equatable {
        public var first: Int?
        public var last: Int?
    }

    /// Parses `bytes=...` against a representation of `length` bytes.
    ///
    /// Rules: invalid syntax or another unit → `.whole` (the RFC's "ignore the header");
    /// more than `maxRanges` specs → `.whole` (the CVE-2011-3192 "Range DoS" answer nginx gives too);
    /// overlapping or adjacent ranges are coalesced in ascending order, so no byte is sent twice
    /// (RFC 9110 §14.3 allows it); when none is satisfiable → `.unsatisfiable`.
    public static func evaluate(_ header: String, length: Int, maxRanges: Int) -> RangeDecision {
        guard let specs = parse(header, maxRanges: maxRanges) else { return .whole }
        return resolve(specs, length: length)
    }

    /// The first byte a response will need when the representation's length is not known yet
    /// (a cache miss): the first spec's first byte, or nil when that depends on the length
    /// (a suffix range) or the header is ignored (the whole representation: byte 0).
    /// The same parser as `evaluate`, so a miss and a hit read a header the same way.
    public static func firstByteBeforeLength(_ header: String, maxRanges: Int) -> Int? {
        guard let specs = parse(header, maxRanges: maxRanges), let first = specs.first else { return 0 }
        return first.first
    }

    /// The syntax of a Range header (RFC 9110 §14.1.1): nil when it is to be ignored.
    public static func parse(_ header: String, maxRanges: Int) -> [Spec]? {
        var header = header
        return header.withUTF8 { parse(bytes: $0, maxRanges: maxRanges) }
    }

    static func parse(bytes utf8: UnsafeBufferPointer<UInt8>, maxRanges: Int) -> [Spec]? {
        // Unit, case-insensitive, then '='.
        guard utf8.count > 6, utf8[0] | 0x20 == UInt8(ascii: "b"), utf8[1] | 0x20 == UInt8(ascii: "y"),
            utf8[2] | 0x20 == UInt8(ascii: "t"), utf8[3] | 0x20 == UInt8(ascii: "e"),
            utf8[4] | 0x20 == UInt8(ascii: "s"), utf8[5] == UInt8(ascii: "=")
        else { return nil }
        var specs: [Spec] = []
        var i = 6
        let n = utf8.count
        @inline(__always) func skipOWS() { while i < n, utf8[i] == 0x20 || utf8[i] == 0x09 { i += 1 } }
        /// nil: no digits. Saturates at Int.max instead of overflowing.
        @inline(__always) func number() -> Int? {
            let start = i
            var v = 0
            while i < n, utf8[i] >= 0x30, utf8[i] <= 0x39 {
                let (m, o1) = v.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(Int(utf8[i] - 0x30))
                v = (o1 || o2) ? Int.max : a
                i += 1
            }
            return i == start ? nil : v
        }
        while i < n {
            skipOWS()
            if i < n, utf8[i] == UInt8(ascii: ",") { i += 1; continue }   // empty list elements are allowed
            if i >= n { break }
            if specs.count == maxRanges { return nil }
            if utf8[i] == UInt8(ascii: "-") {
                i += 1
                guard let suffix = number() else { return nil }
                specs.append(Spec(first: nil, last: suffix))   // a huge suffix means "the whole thing"
            } else {
                guard let first = number(), i < n, utf8[i] == UInt8(ascii: "-") else { return nil }
                i += 1
                let last = number()
                if let last, last < first { return nil }   // invalid range-spec: ignore the header
                specs.append(Spec(first: first, last: last))
            }
            skipOWS()
            if i < n {
                guard utf8[i] == UInt8(ascii: ",") else { return nil }
                i += 1
            }
        }
        return specs.isEmpty ? nil : specs
    }

    /// Satisfiable ranges of parsed specs against a representation of `length` bytes.
    public static func resolve(_ specs: [Spec], length: Int) -> RangeDecision {
        var ranges: [ByteRange] = []
        ranges.reserveCapacity(specs.count)
        for spec in specs {
            if let first = spec.first {
                guard first < length else { continue }
                let last = min(spec.last ?? (length - 1), length - 1)
                ranges.append(ByteRange(first, last))
            } else if let suffix = spec.last {
                guard suffix > 0, length > 0 else { continue }
                ranges.append(ByteRange(max(0, length - suffix), length - 1))
            }
        }
        if ranges.isEmpty { return .unsatisfiable }
        if ranges.count > 1 { ranges = coalesceIfOverlapping(ranges) }
        return .partial(ranges)
    }

    /// Keeps the client's order when no two ranges overlap or touch; otherwise sorts and merges,
    /// so the response never carries a byte twice.
    static func coalesceIfOverlapping(_ ranges: [ByteRange]) -> [ByteRange] {
        let sorted = ranges.sorted { $0.first < $1.first }
        var overlapping = false
        for k in 1..<sorted.count where sorted[k].first <= sorted[k - 1].last &+ 1 { overlapping = true; break }
        guard overlapping else { return ranges }
        var merged: [ByteRange] = [sorted[0]]
        for r in sorted.dropFirst() {
            if r.first <= merged[merged.count - 1].last &+ 1 {
                merged[merged.count - 1].last = max(merged[merged.count - 1].last, r.last)
            } else {
                merged.append(r)
            }
        }
        return merged
    }

    /// If-Range (RFC 9110 §13.1.5): the Range applies only when the validator matches — a strong
    /// ETag compared strongly, or an HTTP-date equal to Last-Modified. Weak tags never match.
    public static func ifRangeAllows(_ ifRange: String?, etag: String, lastModified: String) -> Bool {
        guard let value = ifRange?.trimmingOWS(), !value.isEmpty else { return true }
        if value.hasPrefix("W/") { return false }
        if value.hasPrefix("\"") { return value == etag }
        return value == lastModified
    }
}

/// The layout of a `multipart/byteranges` body: part headers and file ranges in order, with the
/// exact total length known before the first byte is sent.
public struct MultipartLayout: Sendable {
    public let boundary: String
    public let segments: [BodySegment]
    public let contentLength: Int

    public init(ranges: [ByteRange], totalLength: Int, contentType: String, boundary: String) {
        self.boundary = boundary
        var segments: [BodySegment] = []
        var total = 0
        for (index, r) in ranges.enumerated() {
            let head =
                (index == 0 ? "" : "\r\n")
                + "--\(boundary)\r\nContent-Type: \(contentType)\r\nContent-Range: bytes \(r.first)-\(r.last)/\(totalLength)\r\n\r\n"
            let headBytes = Array(head.utf8)
            segments.append(.bytes(headBytes)); total += headBytes.count
            segments.append(.content(offset: r.first, length: r.length)); total += r.length
        }
        let tail = Array("\r\n--\(boundary)--\r\n".utf8)
        segments.append(.bytes(tail)); total += tail.count
        self.segments = segments
        self.contentLength = total
    }
}
