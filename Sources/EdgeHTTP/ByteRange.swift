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
    /// 206 with one range.
    case single(ByteRange)
    /// 206 `multipart/byteranges` with two or more (after coalescing).
    case multiple([ByteRange])
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
        // One range, the common case, is resolved without an array: the specs are walked as they
        // are parsed, and a list is made only when a second satisfiable range turns up.
        var one: ByteRange?
        var ranges: [ByteRange] = []
        var header = header
        let valid = header.withUTF8 { utf8 in
            scan(bytes: utf8, maxRanges: maxRanges) { spec in
                guard let r = resolve(spec, length: length) else { return }
                if let first = one {
                    if ranges.isEmpty { ranges.append(first) }
                    ranges.append(r)
                } else {
                    one = r
                }
            }
        }
        guard valid else { return .whole }
        guard let first = one else { return .unsatisfiable }
        if ranges.isEmpty { return .single(first) }
        let merged = coalesceIfOverlapping(ranges)
        return merged.count == 1 ? .single(merged[0]) : .multiple(merged)
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
        var specs: [Spec] = []
        guard scan(bytes: utf8, maxRanges: maxRanges, { specs.append($0) }), !specs.isEmpty else { return nil }
        return specs
    }

    /// Walks the specs of a Range header, calling `each` for every one; false when the header is to
    /// be ignored (bad syntax, another unit, no spec, more than `maxRanges`), in which case
    /// whatever `each` saw must be dropped.
    @inline(__always)
    static func scan(bytes utf8: UnsafeBufferPointer<UInt8>, maxRanges: Int, _ each: (Spec) -> Void) -> Bool {
        // Unit, case-insensitive, then '='.
        guard utf8.count > 6, utf8[0] | 0x20 == UInt8(ascii: "b"), utf8[1] | 0x20 == UInt8(ascii: "y"),
            utf8[2] | 0x20 == UInt8(ascii: "t"), utf8[3] | 0x20 == UInt8(ascii: "e"),
            utf8[4] | 0x20 == UInt8(ascii: "s"), utf8[5] == UInt8(ascii: "=")
        else { return false }
        var count = 0
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
            if count == maxRanges { return false }
            if utf8[i] == UInt8(ascii: "-") {
                i += 1
                guard let suffix = number() else { return false }
                each(Spec(first: nil, last: suffix))   // a huge suffix means "the whole thing"
            } else {
                guard let first = number(), i < n, utf8[i] == UInt8(ascii: "-") else { return false }
                i += 1
                let last = number()
                if let last, last < first { return false }   // invalid range-spec: ignore the header
                each(Spec(first: first, last: last))
            }
            count += 1
            skipOWS()
            if i < n {
                guard utf8[i] == UInt8(ascii: ",") else { return false }
                i += 1
            }
        }
        return count > 0
    }

    /// The satisfiable range of one spec against a representation of `length` bytes, if any.
    @inline(__always)
    static func resolve(_ spec: Spec, length: Int) -> ByteRange? {
        if let first = spec.first {
            guard first < length else { return nil }
            return ByteRange(first, min(spec.last ?? (length - 1), length - 1))
        }
        guard let suffix = spec.last, suffix > 0, length > 0 else { return nil }
        return ByteRange(max(0, length - suffix), length - 1)
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
