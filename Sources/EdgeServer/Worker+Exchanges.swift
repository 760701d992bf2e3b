import CEdgeRing
import CEdgeTLS
import Glibc
import EdgeAuthToken
import EdgeIO
import EdgeHTTP

/// Exchanges of both protocols: what the front ends ask of the worker (`ExchangeHost`): routing to
/// the content source, answers, bodies, the end of an exchange.
extension Worker: ExchangeHost {
    // MARK: requests (both protocols)

    var nowMicroseconds: Int64 { clock.nowMicroseconds }
    func clockMicroseconds() -> Int64 { clock.read() }

    /// Routes a complete request: access checks, then the content source.
    func start(_ ex: Exchange, on c: Connection) {
        let decision = router.route(
            ex.request, clientIP: c.client, nowSeconds: Int(clock.wallSeconds), verifier: verifier,
            country: { clientCountry(c, ex.request) })
        switch decision {
        case let .simple(status, body, extraHeaders, verdict):
            ex.verdict = verdict
            respondSimple(c, ex, status: status, body: body, extraHeaders: extraHeaders)
        case let .audio(path, verdict, privateSeconds):
            ex.verdict = verdict
            ex.canonicalPath = path
            if let privateSeconds {
                // The same few values over and over (one per token expiry and second): formatted once.
                if privateSeconds != cacheControlMemo.seconds {
                    cacheControlMemo = (privateSeconds, ResponsePlan.cacheControl(privateSeconds: privateSeconds))
                }
                ex.cacheControl = cacheControlMemo.text
            }
            let answer: ContentAnswer
            switch content {
            case .directory(let directory): answer = directory.answer(c, ex, now: nowMicroseconds)
            case .cache(let cache): answer = cache.answer(c, ex, path)
            }
            apply(answer, c, ex)
        }
    }

    /// The country that decides a region claim: the peer's, looked up once per connection (the
    /// address cannot change within one), or, behind a trusted proxy, that of the client its
    /// `X-Forwarded-For` names, per request (a proxy's connection carries many clients).
    func clientCountry(_ c: Connection, _ request: EdgeRequest) -> CountryCode? {
        if c.geoLooked && c.geoPeerTrusted == false { return c.geoCountry }   // the common case: no lookup
        guard let geo = router.geo else { return nil }
        if c.geoPeerTrusted == nil { c.geoPeerTrusted = geo.isTrustedProxy(c.client) }
        if c.geoPeerTrusted == true, let forwarded = request.header("x-forwarded-for") {
            return geo.country(geo.clientAddress(peer: c.client, forwardedFor: forwarded))
        }
        if !c.geoLooked {
            c.geoCountry = geo.country(c.client)
            c.geoLooked = true
        }
        return c.geoCountry
    }

    /// Sends a content source's answer (nothing yet while it waits). No pump here: this may run
    /// inside an nghttp2 callback, and the front end sends when the callback returns.
    func apply(_ answer: ContentAnswer, _ c: Connection, _ ex: Exchange) {
        switch answer {
        case .respond(let plan, let body):
            respond(c, ex, status: plan.status, fields: plan.fields, contentLength: plan.contentLength, body: body)
        case let .text(status, text, headers): respondSimple(c, ex, status: status, body: text, extraHeaders: headers)
        case .waiting: break
        }
    }

    func refuse(_ ex: Exchange, on c: Connection, status: Int, text: String) {
        respondSimple(c, ex, status: status, body: text, extraHeaders: [])
    }

    func end(_ ex: Exchange, on c: Connection) {
        if ex.responded { logExchange(c, ex) }
        if let body = ex.body { finishBody(body) }
    }

    func respondSimple(_ c: Connection, _ ex: Exchange, status: Int, body: String, extraHeaders: [HeaderField]) {
        let bytes = Array(body.utf8)
        let fields = ResponseFields(contentType: bytes.isEmpty ? nil : "text/plain; charset=utf-8", extra: extraHeaders)
        if status == 408 || status == 400 || status == 413 || status == 414 || status == 431 || status == 505 {
            ex.keepAlive = false
        }
        let stream =
            (ex.isHead || bytes.isEmpty)
            ? nil
            : BodyStream(
                file: nil, segments: [.bytes(bytes)],
                owner: BodyOwner(connectionSlot: c.slot, generation: c.generation, streamID: ex.streamID),
                bufferCapacity: max(bytes.count, 64))
        respond(c, ex, status: status, fields: fields, contentLength: bytes.count, body: stream)
    }

    /// Hands a response to the connection's protocol front end.
    func respond(
        _ c: Connection, _ ex: Exchange, status: Int, fields: ResponseFields, contentLength: Int, body: BodyStream?
    ) {
        ex.responded = true
        ex.status = status
        ex.body = body
        ex.ttfbMicroseconds = clock.read() - ex.startMicroseconds
        switch c.frontEnd {
        case .http2(let h2):
            // No pump: this may run inside an nghttp2 callback; the session sends when it returns.
            h2.submitResponse(
                ex, status: status, fields: fields, contentLength: contentLength, date: dateText, scratch: headScratch)
        case .http1(let h1):
            h1.respond(
                ex, status: status, fields: fields, contentLength: contentLength, date: dateText, scratch: headScratch)
            pump(c)
        case .undecided:
            preconditionFailure("a response on a connection that speaks no protocol yet")
        }
    }

    // MARK: output

    /// Moves as much response data into the output queue as the high-water mark allows, starting
    /// file reads as bodies run dry, then sends.
    func pump(_ c: Connection) {
        guard c.life.isOpen else { return }
        let highWater = limits.outputBufferBytesMax
        switch c.frontEnd {
        case .http2(let h2):
            h2.send(highWater: highWater)
            if h2.finished && c.queuedBytes == 0 && !c.output.inFlight { close(c); return }
        case .http1(let h1):
            // A failed body (its file changed under the response): cut rather than send wrong bytes.
            guard h1.pump(highWater: highWater) else { close(c); return }
            flush(c)
            // An exchange that ended may have lifted the hold on reading the next request.
            if c.life.isOpen { postRecv(c) }
            return
        case .undecided:
            break
        }
        flush(c)
    }

    /// Makes the next bytes of a body ready, or starts what will: in-memory segments are copied,
    /// origin-directory ranges read through the ring, cached-object ranges borrowed from a slice
    /// buffer or read from a slice file (see the content sources).
    func refill(_ body: BodyStream) {
        guard !body.readInFlight, !body.failed, !body.parked, body.buffered.count == 0,
            let segment = body.currentSegment
        else { return }
        switch (segment, content) {
        case (.bytes, _): _ = body.copyBytesSegments(pool: readPool)
        case (.content, .directory(let directory)): directory.refill(body, now: nowMicroseconds)
        case (.content, .cache(let cache)): cache.refill(body)
        }
    }

    func bodyRead(_ body: BodyStream) {
        if body.cancelled { finishBody(body); return }
        resumeBody(body)
    }

    /// Wakes the front end of a body that has bytes (or a failure) to report.
    func resumeBody(_ body: BodyStream) {
        let c = connections[Int(body.owner.connectionSlot)]
        guard c.isCurrent(body.owner.generation) else { finishBody(body); return }
        if case .http2(let h2) = c.frontEnd { h2.resume(streamID: body.owner.streamID) }
        pump(c)
    }

    /// Returns a body's buffer and file reference once nothing reads into it any more.
    func finishBody(_ body: BodyStream) {
        body.cancelled = true
        guard !body.readInFlight else { return }   // the read's completion finishes it
        body.releaseBuffer()
        // Released exactly once, even when both the protocol and a late read finish the body.
        if !body.fileReleased {
            body.fileReleased = true
            switch content {
            case .directory(let directory): directory.release(body)
            case .cache(let cache): cache.release(body)
            }
        }
    }

}
