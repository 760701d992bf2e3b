import EdgeHTTP
import EdgeAuthToken
import EdgeConfig

/// Routing and the access phases of a request (method → path rules → token), before any disk
/// work. Pure: the clock and the client address are inputs.
struct Router {
    let tokenName: String
    let tokenRequired: Bool
    let policy: EdgeAuthPolicy

    enum Decision {
        /// Answer now with a small plain-text body.
        case simple(status: Int, body: String, extraHeaders: [HeaderField], verdict: String)
        /// Serve the file at this canonical path (token parameters stripped: also the cache key),
        /// cacheable downstream for this long, privately (a token authorised it), or publicly when nil
        /// (see `FileResponse.cacheControl(privateSeconds:)`).
        case audio(path: String, verdict: String, privateSeconds: Int?)
    }

    func route(_ request: EdgeRequest, clientIP: String, nowSeconds: Int, verifier: EdgeAuthVerifier) -> Decision {
        let isGet = request.method == "GET", isHead = request.method == "HEAD"
        if request.target == "*" && request.method == "OPTIONS" {
            return .simple(status: 204, body: "", extraHeaders: [HeaderField("allow", "GET, HEAD, OPTIONS")], verdict: "-")
        }
        let checked = PathRules.check(request.target)
        guard case let .ok(path, query) = checked else {
            if case let .reject(why) = checked { return .simple(status: 400, body: "bad request: \(why)\n", extraHeaders: [], verdict: "-") }
            return .simple(status: 400, body: "bad request\n", extraHeaders: [], verdict: "-")
        }
        if path == "/healthz" {
            guard isGet || isHead else { return methodNotAllowed() }
            return .simple(status: 200, body: "ok\n", extraHeaders: [], verdict: "-")
        }
        guard path.hasPrefix("/audio/") else { return .simple(status: 404, body: "not found\n", extraHeaders: [], verdict: "-") }
        guard isGet || isHead else { return methodNotAllowed() }
        guard tokenRequired else { return .audio(path: path, verdict: "off", privateSeconds: nil) }

        // Query parameter, then cookie, then header of the configured name.
        var token: String? = nil
        switch PathRules.queryValue(query, name: tokenName) {
        case .some(.some(let v)): token = v
        case .some(.none): return .simple(status: 403, body: "forbidden\n", extraHeaders: [], verdict: EdgeAuthVerdict.malformed.rawValue)
        case .none: break
        }
        if token == nil, let cookie = request.header("cookie") { token = PathRules.cookieValue(cookie, name: tokenName) }
        if token == nil { token = request.header(tokenName.lowercased()) }
        let (verdict, expiry) = verifier.check(token, path: path, clientIP: clientIP, now: nowSeconds)
        guard verdict == .ok else { return .simple(status: 403, body: "forbidden\n", extraHeaders: [], verdict: verdict.rawValue) }
        return .audio(path: path, verdict: verdict.rawValue, privateSeconds: min(max(0, (expiry ?? nowSeconds) - nowSeconds), 31_536_000))
    }

    private func methodNotAllowed() -> Decision {
        .simple(status: 405, body: "method not allowed\n", extraHeaders: [HeaderField("allow", "GET, HEAD")], verdict: "-")
    }
}

extension Router {
    /// The router of a configuration's [token] section (the key, then the transition key).
    init(_ token: TokenConfig) {
        var keys: [EdgeAuthKey] = []
        if let k = EdgeAuthKey(hex: token.keyHex) { keys.append(k) }
        if let k = EdgeAuthKey(hex: token.transitionKeyHex) { keys.append(k) }
        self.init(tokenName: token.name, tokenRequired: token.required,
                  policy: EdgeAuthPolicy(keys: keys, leewaySeconds: token.leewaySeconds, lifetimeSecondsMax: token.lifetimeSecondsMax))
    }
}

/// The response to a GET/HEAD of a file, from its metadata: conditionals, then ranges.
struct FileResponse {
    var status: Int
    var headers: [HeaderField]
    var segments: [BodyStream.Segment]
    var contentLength: Int
    var rangeText: String

    /// Objects served without a token (`token.required = false`) are public and immutable.
    static let publicCacheControl = "public, max-age=31536000, immutable"

    /// A response a token authorised (in the query, a cookie or a header) is for that token's
    /// holder only and only while the token lives: `private` (no shared cache downstream may
    /// store it and hand it to someone without the token) and no max-age past the token's expiry.
    static func cacheControl(privateSeconds: Int) -> String { "private, max-age=\(privateSeconds)" }

    static func build(request: EdgeRequest, path: String, size: Int, etag: String, lastModified: String, contentType: String,
                      rangesMax: Int, boundarySeed: UInt64, cacheControl: String = publicCacheControl) -> FileResponse {
        var headers: [HeaderField] = [
            HeaderField("etag", etag),
            HeaderField("last-modified", lastModified),
            HeaderField("accept-ranges", "bytes"),
            HeaderField("cache-control", cacheControl),
        ]
        // RFC 9110 §13.2.2: If-None-Match before ranges; a match is 304 without a body.
        if let inm = request.header("if-none-match") {
            let tags = inm.split(separator: ",").map { $0.trimmingOWS() }
            if tags.contains("*") || tags.contains(where: { $0 == etag || $0 == "W/" + etag }) {
                return FileResponse(status: 304, headers: headers, segments: [], contentLength: 0, rangeText: "-")
            }
        } else if let ims = request.header("if-modified-since"), ims == lastModified {
            return FileResponse(status: 304, headers: headers, segments: [], contentLength: 0, rangeText: "-")
        }
        let rangeHeader = request.header("range")
        var decision = RangeDecision.whole
        if let rangeHeader, RangeEvaluator.ifRangeAllows(request.header("if-range"), etag: etag, lastModified: lastModified) {
            decision = RangeEvaluator.evaluate(rangeHeader, length: size, maxRanges: rangesMax)
        }
        let rangeText = rangeHeader ?? "-"
        switch decision {
        case .whole:
            headers.insert(HeaderField("content-type", contentType), at: 0)
            return FileResponse(status: 200, headers: headers, segments: size > 0 ? [.file(offset: 0, length: size)] : [], contentLength: size, rangeText: rangeText)
        case .unsatisfiable:
            headers = [HeaderField("content-type", "text/plain"), HeaderField("content-range", "bytes */\(size)")] + headers
            let body = Array("range not satisfiable\n".utf8)
            return FileResponse(status: 416, headers: headers, segments: [.bytes(body)], contentLength: body.count, rangeText: rangeText)
        case .partial(let ranges) where ranges.count == 1:
            let r = ranges[0]
            headers.insert(HeaderField("content-type", contentType), at: 0)
            headers.insert(HeaderField("content-range", "bytes \(r.first)-\(r.last)/\(size)"), at: 1)
            return FileResponse(status: 206, headers: headers, segments: [.file(offset: r.first, length: r.length)], contentLength: r.length, rangeText: rangeText)
        case .partial(let ranges):
            let boundary = "edge" + String(boundarySeed, radix: 16)
            let layout = MultipartLayout(ranges: ranges, totalLength: size, contentType: contentType, boundary: boundary)
            headers.insert(HeaderField("content-type", "multipart/byteranges; boundary=\(boundary)"), at: 0)
            let segs: [BodyStream.Segment] = layout.segments.map {
                switch $0 {
                case .bytes(let b): return .bytes(b)
                case .file(let o, let l): return .file(offset: o, length: l)
                }
            }
            return FileResponse(status: 206, headers: headers, segments: segs, contentLength: layout.contentLength, rangeText: rangeText)
        }
    }
}
