import EdgeHTTP

/// One request/response exchange: an HTTP/1.1 request on its connection or one HTTP/2 stream.
final class Exchange {
    let request: EdgeRequest
    let streamID: Int32
    let startMicroseconds: Int64
    var verdict = "-"
    /// The canonical path once routed (token stripped); before that the log shows the target
    /// without its query, computed only when a line is written.
    var canonicalPath: String?
    var logPath: String {
        if let canonicalPath { return canonicalPath }
        let t = request.target
        if let q = t.firstIndex(of: "?") { return String(t[..<q]) }
        return t
    }
    // `@exclusivity(unchecked)`: see "Exclusivity checks" in docs/ARCHITECTURE.md (scalars of a
    // one-thread object; collections keep their checks).
    @exclusivity(unchecked) var status = 0
    @exclusivity(unchecked) var ttfbMicroseconds: Int64 = -1
    @exclusivity(unchecked) var bytesSent = 0
    var rangeText = "-"
    var body: BodyStream?
    @exclusivity(unchecked) var responded = false
    @exclusivity(unchecked) var logged = false
    @exclusivity(unchecked) var keepAlive = true
    /// Cache-Control of the response (public, or private until the token expires).
    var cacheControl = ResponsePlan.publicCacheControl
    /// RFC 9211 Cache-Status of a cached response (nil for the directory origin and errors).
    var cacheStatus: String?

    init(request: EdgeRequest, streamID: Int32, startMicroseconds: Int64) {
        self.request = request; self.streamID = streamID; self.startMicroseconds = startMicroseconds
    }
    var isHead: Bool { request.method == "HEAD" }
}
