import CEdgeRing
import CEdgeTLS
import Glibc
import EdgeIO
import EdgeHTTP

/// Exchanges of both protocols: routing to the content source, response heads, and pulling bodies.
extension Worker {
    // MARK: requests (both protocols)

    /// Routes a complete request: access checks, then the content source.
    func handle(_ c: Connection, _ ex: Exchange) {
        let decision = settings.router.route(ex.request, clientIP: c.client, nowSeconds: Int(clock.wallSeconds), verifier: verifier)
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
            case .directory(let directory): answer = directory.answer(c, ex, now: now)
            case .cache(let cache): answer = cache.answer(c, ex, path)
            }
            apply(answer, c, ex)
        }
    }

    /// Sends a content source's answer (nothing yet while it waits). No pump here: this may run
    /// inside an nghttp2 callback, and the front end sends when the callback returns.
    func apply(_ answer: ContentAnswer, _ c: Connection, _ ex: Exchange) {
        switch answer {
        case .respond(let r): respond(c, ex, status: r.status, headers: r.headers, contentLength: r.contentLength, body: r.body)
        case let .text(status, text, headers): respondSimple(c, ex, status: status, body: text, extraHeaders: headers)
        case .waiting: break
        }
    }

    func respondSimple(_ c: Connection, _ ex: Exchange, status: Int, body: String, extraHeaders: [HeaderField]) {
        let bytes = Array(body.utf8)
        var headers = extraHeaders
        if !bytes.isEmpty { headers.insert(HeaderField("content-type", "text/plain; charset=utf-8"), at: 0) }
        if status == 408 || status == 400 || status == 413 || status == 414 || status == 431 || status == 505 { ex.keepAlive = false }
        let stream = (ex.isHead || bytes.isEmpty) ? nil : BodyStream(file: nil, segments: [.bytes(bytes)],
                      owner: BodyOwner(connectionSlot: c.slot, generation: c.generation, streamID: ex.streamID),
                      bufferCapacity: max(bytes.count, 64))
        respond(c, ex, status: status, headers: headers, contentLength: bytes.count, body: stream)
    }

    /// Hands a response to the connection's protocol front end.
    func respond(_ c: Connection, _ ex: Exchange, status: Int, headers: [HeaderField], contentLength: Int, body: BodyStream?) {
        ex.responded = true
        ex.status = status
        ex.body = body
        ex.ttfbMicroseconds = now - ex.startMicroseconds
        if c.proto == .http2, let h2 = c.h2 {
            h2.submitResponse(ex, status: status, headers: headers, contentLength: contentLength, date: dateText)
            return
        }
        // HTTP/1.1 head.
        var head = "HTTP/1.1 \(status) \(HTTPStatus.reason(status))\r\nServer: edge\r\nDate: \(dateText)\r\n"
        for h in headers { head += "\(h.name): \(h.value)\r\n" }
        if status != 304 && status != 204 { head += "Content-Length: \(contentLength)\r\n" }
        if !ex.keepAlive { head += "Connection: close\r\n" } else if ex.request.version == .http1_0 { head += "Connection: keep-alive\r\n" }
        head += "\r\n"
        c.write(head)
        if body == nil { h1Finished(c, ex) }
        pump(c)
    }

    // MARK: output

    /// Moves as much response data into the output queue as the high-water mark allows, starting
    /// file reads as bodies run dry, then sends.
    func pump(_ c: Connection) {
        guard c.life.isOpen else { return }
        let highWater = limits.outputBufferBytesMax
        if c.proto == .http2, let h2 = c.h2 {
            h2.send(highWater: highWater)
            if h2.finished && c.queuedBytes == 0 && !c.output.inFlight { close(c); return }
        } else if let ex = c.exchange, let body = ex.body {
            while c.queuedBytes < highWater && c.life.isOpen {
                let buffered = body.buffered
                if buffered.count > 0 {
                    let n = min(buffered.count, highWater - c.queuedBytes)
                    c.write(UnsafeRawBufferPointer(rebasing: buffered[0..<n]))
                    body.consume(n)
                    ex.bytesSent += n
                } else if body.isComplete {
                    h1Finished(c, ex)
                    break
                } else if body.failed {
                    // The file changed under a response: cut the connection rather than send wrong bytes.
                    ex.keepAlive = false
                    logExchange(c, ex)
                    close(c)
                    return
                } else {
                    refill(body)
                    if body.buffered.count == 0 && !body.failed { break }
                }
            }
        }
        flush(c)
    }

    /// Makes the next bytes of a body ready, or starts what will: in-memory segments are copied,
    /// origin-directory ranges read through the ring, cached-object ranges borrowed from a slice
    /// buffer or read from a slice file (see the content sources).
    func refill(_ body: BodyStream) {
        guard !body.readInFlight, !body.failed, !body.parked, body.buffered.count == 0, let segment = body.currentSegment else { return }
        switch (segment, content) {
        case (.bytes, _): _ = body.copyBytesSegments(pool: readPool)
        case (.content, .directory(let directory)): directory.refill(body)
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
        if c.proto == .http2, let h2 = c.h2 { h2.resume(streamID: body.owner.streamID) }
        pump(c)
    }

    /// Returns a body's buffer and file reference once nothing reads into it any more.
    func finishBody(_ body: BodyStream) {
        body.cancelled = true
        guard !body.readInFlight else { return }   // the read's completion finishes it
        body.releaseBuffer(to: readPool)
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
