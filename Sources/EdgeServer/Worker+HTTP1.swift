import CEdgeRing
import CEdgeTLS
import Glibc
import EdgeIO
import EdgeHTTP

/// The HTTP/1.1 front end: requests parsed off the connection one at a time (pipelining kept in
/// order), keep-alive, and the end of each exchange.
extension Worker {
    // MARK: HTTP/1.1

    /// Parses and starts the next request on an HTTP/1.1 connection, if one is complete.
    func h1Next(_ c: Connection) {
        guard !c.inRequestLoop else { return }   // the loop below takes the next request
        c.inRequestLoop = true
        defer { c.inRequestLoop = false }
        // Bounded output too: a client that pipelines without reading gets no more answers queued
        // than output_buffer_bytes_max; the loop resumes as sends complete.
        while c.exchange == nil && c.life.isOpen && !c.life.closesAfterFlush && c.queuedBytes < limits.outputBufferBytesMax {
            if c.skipBodyBytes > 0 {
                let n = min(c.skipBodyBytes, c.input.count)
                c.input.consume(n); c.skipBodyBytes -= n
                if c.skipBodyBytes > 0 { return }
            }
            if c.input.isEmpty { c.headerStartMicroseconds = 0; return }
            if c.headerStartMicroseconds == 0 { c.headerStartMicroseconds = now }
            let parser = HTTP1Parser(limits: HTTP1Limits(requestLineBytesMax: limits.requestLineBytesMax,
                                                         headerBytesMax: limits.headerBytesMax, headerCountMax: limits.headerCountMax))
            switch parser.parse(c.input.readable) {
            case .needMore:
                return
            case .error(let status, let reason):
                let ex = Exchange(request: EdgeRequest(method: "-", target: "-", version: .http1_1, headers: []), streamID: 0,
                                  startMicroseconds: now)
                ex.keepAlive = false
                c.exchange = ex
                c.input.clear()
                respondSimple(c, ex, status: status, body: "\(HTTPStatus.reason(status).lowercased()): \(reason)\n", extraHeaders: [])
                return
            case .request(let request, let consumed, let bodyLength):
                c.input.consume(consumed)
                c.headerStartMicroseconds = 0
                let ex = Exchange(request: request, streamID: 0, startMicroseconds: now)
                ex.keepAlive = request.wantsKeepAlive && c.requestsServed + 1 < limits.requestsPerConnectionMax && !draining
                c.exchange = ex
                if bodyLength > limits.requestBodyBytesMax {
                    ex.keepAlive = false
                    respondSimple(c, ex, status: 413, body: "content too large\n", extraHeaders: [])
                    return
                }
                c.skipBodyBytes = bodyLength
                handle(c, ex)
            }
        }
    }


    func h1Finished(_ c: Connection, _ ex: Exchange) {
        logExchange(c, ex)
        if let body = ex.body { finishBody(body) }
        c.exchange = nil
        c.requestsServed += 1
        c.idleSinceMicroseconds = now
        if !ex.keepAlive {
            // close_notify after the last response, so the client knows nothing was cut.
            if let tls = c.tls, c.sealTLS() { edge_tls_shutdown(tls); c.drainTLS() }
            c.life.finishAfterFlush()
            return
        }
        h1Next(c)
        if c.life.isOpen { postRecv(c) }
    }
}
