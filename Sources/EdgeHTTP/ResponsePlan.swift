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
    public init(
        request: EdgeRequest, path: String, size: Int, etag: String, lastModified: String, contentType: String,
        rangesMax: Int, boundarySeed: UInt64, cacheControl: String = publicCacheControl
    ) {
        status = 304
        fields = ResponseFields()
        segments = []
        contentLength = 0
        rangeText = "-"
        fields.etag = etag
        fields.lastModified = lastModified
        fields.acceptRanges = true
        fields.cacheControl = cacheControl
        // RFC 9110 §13.2.2: If-None-Match before ranges; a match is 304 without a body.
        if let inm = request.header("if-none-match") {
            let tags = inm.split(separator: ",").map { $0.trimmingOWS() }
            if tags.contains("*") || tags.contains(where: { $0 == etag || $0 == "W/" + etag }) { return }
        } else if let ims = request.header("if-modified-since"), ims == lastModified {
            return
        }
        let rangeHeader = request.header("range")
        var decision = RangeDecision.whole
        if let rangeHeader,
            RangeEvaluator.ifRangeAllows(request.header("if-range"), etag: etag, lastModified: lastModified)
        {
            decision = RangeEvaluator.evaluate(rangeHeader, length: size, maxRanges: rangesMax)
        }
        if let rangeHeader { self.rangeText = rangeHeader }
        switch decision {
        case .whole:
            status = 200
            fields.contentType = contentType
            if size > 0 { segments = [.content(offset: 0, length: size)] }
            contentLength = size
        case .unsatisfiable:
            let body = Array("range not satisfiable\n".utf8)
            status = 416
            fields.contentType = "text/plain"
            fields.contentRange = .unsatisfiedRange(size: size)
            segments = [.bytes(body)]
            contentLength = body.count
        case .single(let r):
            status = 206
            fields.contentType = contentType
            fields.contentRange = .byteRange(first: r.first, last: r.last, size: size)
            segments = [.content(offset: r.first, length: r.length)]
            contentLength = r.length
        case .multiple(let ranges):
            let boundary = "edge" + String(boundarySeed, radix: 16)
            let layout = MultipartLayout(
                ranges: ranges, totalLength: size, contentType: contentType, boundary: boundary)
            status = 206
            fields.contentType = "multipart/byteranges; boundary=\(boundary)"
            segments = layout.segments
            contentLength = layout.contentLength
        }
    }
}
