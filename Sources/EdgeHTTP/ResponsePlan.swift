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
    public var fields: ResponseFields
    public var segments: [BodySegment]
    public var contentLength: Int
    /// The Range header as received ("-" without one), for the access log.
    public var rangeText: String

    public init(status: Int, fields: ResponseFields, segments: [BodySegment], contentLength: Int, rangeText: String) {
        self.status = status; self.fields = fields; self.segments = segments
        self.contentLength = contentLength; self.rangeText = rangeText
    }

    /// Objects served without a token (`token.required = false`) are public and immutable.
    public static let publicCacheControl = "public, max-age=31536000, immutable"

    /// A response a token authorised (in the query, a cookie or a header) is for that token's
    /// holder only and only while the token lives: `private` (no shared cache downstream may
    /// store it and hand it to someone without the token) and no max-age past the token's expiry.
    public static func cacheControl(privateSeconds: Int) -> String { "private, max-age=\(privateSeconds)" }

    /// The plan for a GET/HEAD of `request` on a representation of `size` bytes with these
    /// validators.
    ///
    /// Made whole in one expression per outcome, with the request and the strings borrowed:
    /// assigning `self`'s fields one by one (with an early return for 304) made the compiler build
    /// the plan in a temporary and copy it out, and owned parameters cost the caller a copy of the
    /// request and of each string. Those copies retained every string in them: about 400 to 600
    /// instructions per response (`loadtest/instructions.py`).
    public init(
        request: borrowing EdgeRequest, size: Int, etag: borrowing String, lastModified: borrowing String,
        contentType: borrowing String, rangesMax: Int, boundarySeed: UInt64,
        cacheControl: borrowing String = publicCacheControl
    ) {
        self = Self.plan(
            request, size: size, etag: etag, lastModified: lastModified, contentType: contentType,
            rangesMax: rangesMax, boundarySeed: boundarySeed, cacheControl: cacheControl)
    }

    private static func plan(
        _ request: borrowing EdgeRequest, size: Int, etag: String, lastModified: String, contentType: String,
        rangesMax: Int, boundarySeed: UInt64, cacheControl: String
    ) -> ResponsePlan {
        // The fields are made in each branch's call, a temporary moved into the plan: a local `var`
        // of them was copied into it (and `consume` of it is not supported there yet).
        @inline(__always) func fields(_ contentType: String?, _ contentRange: FieldValue? = nil) -> ResponseFields {
            ResponseFields(
                contentType: contentType, contentRange: contentRange, etag: etag, lastModified: lastModified,
                cacheControl: cacheControl)
        }
        // RFC 9110 §13.2.2: If-None-Match before ranges; a match is 304 without a body.
        if Self.notModified(request, etag: etag, lastModified: lastModified) {
            return ResponsePlan(status: 304, fields: fields(nil), segments: [], contentLength: 0, rangeText: "-")
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
                status: 200, fields: fields(contentType), segments: size > 0 ? [.content(offset: 0, length: size)] : [],
                contentLength: size, rangeText: rangeText)
        case .unsatisfiable:
            let body = Array("range not satisfiable\n".utf8)
            return ResponsePlan(
                status: 416, fields: fields("text/plain", .unsatisfiedRange(size: size)), segments: [.bytes(body)],
                contentLength: body.count, rangeText: rangeText)
        case .single(let r):
            return ResponsePlan(
                status: 206, fields: fields(contentType, .byteRange(first: r.first, last: r.last, size: size)),
                segments: [.content(offset: r.first, length: r.length)],
                contentLength: r.length, rangeText: rangeText)
        case .multiple(let ranges):
            let boundary = "edge" + String(boundarySeed, radix: 16)
            let layout = MultipartLayout(
                ranges: ranges, totalLength: size, contentType: contentType, boundary: boundary)
            return ResponsePlan(
                status: 206, fields: fields("multipart/byteranges; boundary=\(boundary)"), segments: layout.segments,
                contentLength: layout.contentLength,
                rangeText: rangeText)
        }
    }

    /// Whether the request's validators match (a 304): If-None-Match when sent, else
    /// If-Modified-Since.
    private static func notModified(_ request: borrowing EdgeRequest, etag: String, lastModified: String) -> Bool {
        if let inm = request.header("if-none-match") {
            let tags = inm.split(separator: ",").map { $0.trimmingOWS() }
            return tags.contains("*") || tags.contains(where: { $0 == etag || $0 == "W/" + etag })
        }
        if let ims = request.header("if-modified-since") { return ims == lastModified }
        return false
    }
}
