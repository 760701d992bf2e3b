import EdgeEncoding
/// The part of the representation a response sends: bytes made here (multipart part heads, short
/// texts), or a range of the representation itself (a file of the directory origin, or a cached
/// object served slice by slice). A body is a list of these, so the bytes can be sent by gather
/// I/O straight from where they live.
public enum BodySegment: Sendable, Equatable {
    case bytes([UInt8])
    case content(offset: Int, length: Int)
}

/// The response to a GET/HEAD of a representation, from its metadata alone: conditionals
/// (RFC 9110 §13), then ranges (§14). Pure: both content sources (the directory and the cache)
/// answer through it.
public struct ResponsePlan: Sendable {
    public var status: Int
    public var headers: [HeaderField]
    public var segments: [BodySegment]
    public var contentLength: Int
    /// The Range header as received ("-" without one), for the access log.
    public var rangeText: String

    public init(status: Int, headers: [HeaderField], segments: [BodySegment], contentLength: Int, rangeText: String) {
        self.status = status; self.headers = headers; self.segments = segments
        self.contentLength = contentLength; self.rangeText = rangeText
    }

    /// Objects served without a token (`token.required = false`) are public and immutable.
    public static let publicCacheControl = "public, max-age=31536000, immutable"

    /// A response a token authorised (in the query, a cookie or a header) is for that token's
    /// holder only and only while the token lives: `private` (no shared cache downstream may
    /// store it and hand it to someone without the token) and no max-age past the token's expiry.
    public static func cacheControl(privateSeconds: Int) -> String { "private, max-age=\(privateSeconds)" }

    public static func build(
        request: EdgeRequest, path: String, size: Int, etag: String, lastModified: String, contentType: String,
        rangesMax: Int, boundarySeed: UInt64, cacheControl: String = publicCacheControl
    ) -> ResponsePlan {
        // The fields every answer has, after the one or two that lead (content-type, and
        // content-range for a 206): built once, with room for the cache's two (cache-status, age).
        // An insert at the front, then the cache's appends, grew the array: two allocations more
        // per request.
        func fields(_ first: HeaderField? = nil, _ second: HeaderField? = nil) -> [HeaderField] {
            var h: [HeaderField] = []
            h.reserveCapacity(8)
            if let first { h.append(first) }
            if let second { h.append(second) }
            h.append(HeaderField("etag", etag))
            h.append(HeaderField("last-modified", lastModified))
            h.append(HeaderField("accept-ranges", "bytes"))
            h.append(HeaderField("cache-control", cacheControl))
            return h
        }
        // RFC 9110 §13.2.2: If-None-Match before ranges; a match is 304 without a body.
        if let inm = request.header("if-none-match") {
            let tags = inm.split(separator: ",").map { $0.trimmingOWS() }
            if tags.contains("*") || tags.contains(where: { $0 == etag || $0 == "W/" + etag }) {
                return ResponsePlan(status: 304, headers: fields(), segments: [], contentLength: 0, rangeText: "-")
            }
        } else if let ims = request.header("if-modified-since"), ims == lastModified {
            return ResponsePlan(status: 304, headers: fields(), segments: [], contentLength: 0, rangeText: "-")
        }
        let rangeHeader = request.header("range")
        var decision = RangeDecision.whole
        if let rangeHeader,
            RangeEvaluator.ifRangeAllows(request.header("if-range"), etag: etag, lastModified: lastModified)
        {
            decision = RangeEvaluator.evaluate(rangeHeader, length: size, maxRanges: rangesMax)
        }
        let rangeText = rangeHeader ?? "-"
        switch decision {
        case .whole:
            return ResponsePlan(
                status: 200, headers: fields(HeaderField("content-type", contentType)),
                segments: size > 0 ? [.content(offset: 0, length: size)] : [],
                contentLength: size, rangeText: rangeText)
        case .unsatisfiable:
            let headers = fields(
                HeaderField("content-type", "text/plain"), HeaderField("content-range", "bytes */\(size)"))
            let body = Array("range not satisfiable\n".utf8)
            return ResponsePlan(
                status: 416, headers: headers, segments: [.bytes(body)], contentLength: body.count, rangeText: rangeText
            )
        case .partial(let ranges) where ranges.count == 1:
            let r = ranges[0]
            let headers = fields(
                HeaderField("content-type", contentType),
                HeaderField("content-range", Self.contentRange(r.first, r.last, size)))
            return ResponsePlan(
                status: 206, headers: headers, segments: [.content(offset: r.first, length: r.length)],
                contentLength: r.length, rangeText: rangeText)
        case .partial(let ranges):
            let boundary = "edge" + String(boundarySeed, radix: 16)
            let layout = MultipartLayout(
                ranges: ranges, totalLength: size, contentType: contentType, boundary: boundary)
            return ResponsePlan(
                status: 206, headers: fields(HeaderField("content-type", "multipart/byteranges; boundary=\(boundary)")),
                segments: layout.segments, contentLength: layout.contentLength,
                rangeText: rangeText)
        }
    }

    /// `bytes first-last/size`, written in one pass: interpolating it made three integer Strings
    /// and five appends on every range response (loadtest/instructions.py). All three are
    /// non-negative (the range was resolved against the size).
    static func contentRange(_ first: Int, _ last: Int, _ size: Int) -> String {
        String(unsafeUninitializedCapacity: 6 + 3 * DecimalText.bytesMax + 2) { out in
            var n = 0
            func put(_ byte: UInt8) { out[n] = byte; n += 1 }
            func put(_ value: Int) {
                n += DecimalText.write(value, into: UnsafeMutableRawPointer(out.baseAddress! + n))
            }
            for b in "bytes ".utf8 { put(b) }
            put(first)
            put(UInt8(ascii: "-"))
            put(last)
            put(UInt8(ascii: "/"))
            put(size)
            return n
        }
    }
}
