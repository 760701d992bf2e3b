import EdgeConfig
import EdgeHTTP

/// The HTTP/1.1 front end of one connection: requests parsed off the connection's input one at a
/// time (pipelined ones answered in order), response heads, bodies pulled into the output as the
/// high-water mark allows, keep-alive, and its own timeouts. Beside `H2Session`; both reach the
/// server only through `ExchangeHost`.
final class HTTP1Session {
    // The worker owns the connection, which owns this session: both outlive it.
    unowned(unsafe) let host: any ExchangeHost
    unowned(unsafe) let connection: Connection
    let limits: LimitsConfig
    private let parser: HTTP1Parser
    /// The exchange in progress (one at a time: pipelined requests wait in the input).
    private(set) var exchange: Exchange?
    private var requestsServed = 0
    /// Request body bytes still to read past (players send none; the edge ignores them).
    private var skipBodyBytes = 0
    /// When the request head now arriving began (0: none is arriving).
    private var headerStartMicroseconds: Int64 = 0
    private var idleSinceMicroseconds: Int64
    /// The request loop is running: a response finished inside it (no body: HEAD, 304, errors)
    /// lets the loop take the next pipelined request instead of recursing into it.
    private var inRequestLoop = false
    /// The server is draining: every answer closes its connection.
    private var draining = false

    init(host: any ExchangeHost, connection: Connection, limits: LimitsConfig, idleSinceMicroseconds: Int64) {
        self.host = host
        self.connection = connection
        self.limits = limits
        self.idleSinceMicroseconds = idleSinceMicroseconds
        parser = HTTP1Parser(
            limits: HTTP1Limits(
                requestLineBytesMax: limits.requestLineBytesMax,
                headerBytesMax: limits.headerBytesMax,
                headerCountMax: limits.headerCountMax))
    }

    /// Bytes arrived (already appended to the connection's input).
    func received() {
        if headerStartMicroseconds == 0 { headerStartMicroseconds = host.nowMicroseconds }
        if exchange == nil { next() }
    }

    /// While an answer is in progress or answers wait to be sent, the input holds at most one
    /// header section: a client that pipelines without reading is not buffered without bound.
    var holdsEnoughInput: Bool {
        (exchange != nil || connection.queuedBytes >= limits.outputBufferBytesMax)
            && connection.input.count >= limits.headerBytesMax
    }

    /// The exchange a body's owner names (HTTP/1.1 has one at a time).
    func exchange(streamID: Int32) -> Exchange? { streamID == 0 ? exchange : nil }

    /// Parses and starts the next request, if one is complete.
    func next() {
        guard !inRequestLoop else { return }   // the loop below takes the next request
        inRequestLoop = true
        defer { inRequestLoop = false }
        // Bounded output too: a client that pipelines without reading gets no more answers queued
        // than output_buffer_bytes_max; the loop resumes as sends complete.
        let c = connection
        while exchange == nil && c.life.isOpen && !c.life.closesAfterFlush
            && c.queuedBytes < limits.outputBufferBytesMax
        {
            if skipBodyBytes > 0 {
                let n = min(skipBodyBytes, c.input.count)
                c.input.consume(n)
                skipBodyBytes -= n
                if skipBodyBytes > 0 { return }
            }
            if c.input.isEmpty { headerStartMicroseconds = 0; return }
            if headerStartMicroseconds == 0 { headerStartMicroseconds = host.nowMicroseconds }
            switch parser.parse(c.input.readable) {
            case .needMore:
                return
            case .error(let status, let reason):
                c.input.clear()
                refuse(status: status, text: "\(HTTPStatus.reason(status).lowercased()): \(reason)\n")
                return
            case .request(let request, let consumed, let bodyLength):
                c.input.consume(consumed)
                headerStartMicroseconds = 0
                let ex = Exchange(request: request, streamID: 0, startMicroseconds: host.clockMicroseconds())
                ex.keepAlive =
                    request.wantsKeepAlive && requestsServed + 1 < limits.requestsPerConnectionMax && !draining
                exchange = ex
                if bodyLength > limits.requestBodyBytesMax {
                    ex.keepAlive = false
                    host.refuse(ex, on: c, status: 413, text: "content too large\n")
                    return
                }
                skipBodyBytes = bodyLength
                host.start(ex, on: c)
            }
        }
    }

    /// Answers with `status` a request that could not be parsed (or never finished arriving), and
    /// closes after it: what follows in the input cannot be trusted to start a request.
    private func refuse(status: Int, text: String) {
        let ex = Exchange(
            request: EdgeRequest(method: "-", target: "-", version: .http1_1, headers: []), streamID: 0,
            startMicroseconds: host.clockMicroseconds())
        ex.keepAlive = false
        exchange = ex
        host.refuse(ex, on: connection, status: status, text: text)
    }

    /// Writes the response head; an answer without a body ends its exchange here.
    func respond(
        _ ex: Exchange, status: Int, fields: ResponseFields, contentLength: Int, date: String, scratch: HeadScratch
    ) {
        let reason = HTTPStatus.reason(status)
        // At most 118 bytes besides the reason, the date and `fields`: the status line's and the
        // fixed lines' text (80, with the status's digits and `Connection: keep-alive`) and
        // Content-Length (38).
        var head = HTTP1HeadWriter(
            scratch: scratch, fields: fields, fixedBytes: 118 + reason.utf8.count + date.utf8.count)
        head.put("HTTP/1.1 ")
        head.put(.decimal(status))
        head.put(" ")
        head.put(reason)
        head.put("\r\nServer: edge\r\nDate: ")
        head.put(date)
        head.put("\r\n")
        fields.write(to: &head)
        if status != 304 && status != 204 {
            head.put("Content-Length: ")
            head.put(.decimal(contentLength))
            head.put("\r\n")
        }
        if !ex.keepAlive {
            head.put("Connection: close\r\n")
        } else if ex.request.version == .http1_0 {
            head.put("Connection: keep-alive\r\n")
        }
        head.put("\r\n")
        connection.write(head.bytes)
        if ex.body == nil { finished(ex) }
    }

    /// Moves the body of the exchange in progress into the output up to `highWater`, asking the
    /// host for more as it runs dry. False: the body failed (its file changed under the
    /// response), and the connection must be cut rather than send wrong bytes.
    func pump(highWater: Int) -> Bool {
        let c = connection
        while let ex = exchange, let body = ex.body, c.queuedBytes < highWater && c.life.isOpen {
            let buffered = body.buffered
            if buffered.count > 0 {
                let n = min(buffered.count, highWater - c.queuedBytes)
                c.writeBody(body, n)
                ex.bytesSent += n
            } else if body.isComplete {
                finished(ex)
                return true   // a next exchange started there was pumped by its own answer
            } else if body.failed {
                ex.keepAlive = false
                return false
            } else {
                host.refill(body)
                if body.buffered.count == 0 && !body.failed { break }
            }
        }
        return true
    }

    /// Sends made room in the output: pipelined requests held back may be answered now.
    func sendProgressed() {
        if exchange == nil && !connection.input.isEmpty && connection.life.isOpen { next() }
    }

    private func finished(_ ex: Exchange) {
        host.end(ex, on: connection)
        exchange = nil
        requestsServed += 1
        idleSinceMicroseconds = host.nowMicroseconds
        if !ex.keepAlive {
            connection.finishAfterFlush()
            return
        }
        next()
    }

    /// SIGTERM: the answer in progress is the last; an idle connection may close now (true).
    func drain() -> Bool {
        draining = true
        guard let exchange else { return true }
        exchange.keepAlive = false
        return false
    }

    /// A request that takes too long closes; a head that does not finish arriving gets 408; an
    /// idle connection closes after the keep-alive timeout (the header timeout before its first
    /// request).
    func checkDeadlines(now: Int64, _ deadlines: Deadlines) -> DeadlineVerdict {
        if let ex = exchange {
            return now - ex.startMicroseconds > deadlines.requestMicroseconds ? .close : .none
        }
        if headerStartMicroseconds != 0 && !connection.input.isEmpty {
            if now - headerStartMicroseconds > deadlines.headerMicroseconds {
                connection.input.clear()
                refuse(status: 408, text: "request timeout\n")
            }
            return .none
        }
        let limit = requestsServed == 0 ? deadlines.headerMicroseconds : deadlines.keepAliveMicroseconds
        return now - idleSinceMicroseconds > limit ? .close : .none
    }

    /// The connection is going away: the exchange in progress ends with it.
    func shutdown() {
        if let exchange { host.end(exchange, on: connection) }
        exchange = nil
    }
}
