import CNGHTTP2
import EdgeHTTP
import EdgeConfig
import EdgeEncoding
import Glibc

/// An HTTP/2 server session over libnghttp2, driven with mem_recv/mem_send so the worker's ring
/// does all I/O. Callbacks are C functions that find this object through nghttp2's user_data.
/// Response bodies are pulled by nghttp2 as flow control allows: the data callback hands over what
/// the body has buffered, or starts a file read and defers the stream until it completes.
final class H2Session {
    private var session: OpaquePointer?
    // The worker owns the connection, which owns this session: both outlive it. unowned(unsafe)
    // skips the reference-count check on every callback.
    unowned(unsafe) let host: any ExchangeHost
    unowned(unsafe) let connection: Connection
    let limits: LimitsConfig
    /// Streams with a complete request, by stream id.
    let exchanges = StreamTable<Exchange>()
    /// Requests whose headers or body are still arriving.
    private let building = StreamTable<RequestBuilder>()
    private var serverResets = 0
    private var goAwaySent = false
    var idleSinceMicroseconds: Int64

    final class RequestBuilder {
        var method = "", path = ""
        /// Whether `host` was appended from `:authority` (it does not count against the limit
        /// on fields the peer sends, as it did not when it was appended at the end).
        var hostFromAuthority = false
        /// `@exclusivity(unchecked)`: every access is one call on the block (append, count,
        /// removeAll, swap) from this file, and a `HeaderBlock` holds no reference back to a builder
        /// or session, so no access can overlap another. Checked, they were five run-time checks per
        /// request, about 500 instructions (docs/ARCHITECTURE.md, "Exclusivity checks").
        @exclusivity(unchecked) var fields = HeaderBlock()
        /// Cookie fields seen: more than one are joined into one when the request completes.
        var cookies = 0
        var listBytes = 0
        var tooLarge = false
        /// Request body bytes received (DATA before END_STREAM): over `request_body_bytes_max` is a 413.
        var bodyBytes = 0
        /// When the stream's HEADERS began: the request must end (END_STREAM) within
        /// `h2_stream_request_timeout_milliseconds`.
        private(set) var startMicroseconds: Int64
        init(startMicroseconds: Int64) {
            self.startMicroseconds = startMicroseconds
            // One allocation for a usual request's fields, host among them, not one per doubling
            // (loadtest/allocs.py).
            fields.reserveCapacity(bytes: 256)
        }

        /// The builder as new, for the next stream's request (its fields went with the last one).
        func reset(startMicroseconds: Int64) {
            method = ""; path = ""; hostFromAuthority = false; cookies = 0; listBytes = 0; tooLarge = false
            bodyBytes = 0
            self.startMicroseconds = startMicroseconds
            fields = HeaderBlock()
            fields.reserveCapacity(bytes: 256)
        }
    }

    /// The builder of the last request completed, kept for the next stream: a builder per request
    /// cost an object's allocation and teardown (`loadtest/instructions.py`). At most one is kept.
    private var spareBuilder: RequestBuilder?

    init?(host: any ExchangeHost, connection: Connection, limits: LimitsConfig) {
        self.host = host
        self.connection = connection
        self.limits = limits
        idleSinceMicroseconds = host.nowMicroseconds
        var callbacks: OpaquePointer? = nil
        guard nghttp2_session_callbacks_new(&callbacks) == 0, let callbacks else { return nil }
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, h2OnBeginHeaders)
        nghttp2_session_callbacks_set_on_header_callback(callbacks, h2OnHeader)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, h2OnFrameRecv)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, h2OnDataChunk)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, h2OnStreamClose)
        nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, h2OnFrameSend)
        nghttp2_session_callbacks_set_send_data_callback(callbacks, h2SendData)

        var option: OpaquePointer? = nil
        guard nghttp2_option_new(&option) == 0, let option else { return nil }
        defer { nghttp2_option_del(option) }
        // nghttp2's own protections: rapid-reset (CVE-2023-44487), CONTINUATION flood (CVE-2024-27316).
        nghttp2_option_set_stream_reset_rate_limit(
            option, UInt64(limits.h2StreamResetBurst), UInt64(limits.h2StreamResetsPerSecond))
        nghttp2_option_set_max_continuations(option, Int(limits.h2ContinuationsMax))
        nghttp2_option_set_max_settings(option, 32)
        nghttp2_option_set_max_outbound_ack(option, 1000)
        nghttp2_option_set_max_deflate_dynamic_table_size(option, 4096)

        var s: OpaquePointer? = nil
        guard nghttp2_session_server_new2(&s, callbacks, Unmanaged.passUnretained(self).toOpaque(), option) == 0, let s
        else { return nil }
        session = s
        var settings = [
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue),
                value: UInt32(limits.h2ConcurrentStreamsMax)),
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue),
                value: UInt32(limits.h2HeaderListBytesMax)),
            // Players send no bodies: a small receive window bounds what a client can push at us.
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: 65535),
        ]
        guard nghttp2_submit_settings(s, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count) == 0 else {
            return nil
        }
    }

    deinit { if let session { nghttp2_session_del(session) } }

    var finished: Bool {
        guard let session else { return true }
        return nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0
    }

    /// The exchange of a stream, if its request is complete and the stream open.
    func exchange(streamID: Int32) -> Exchange? { exchanges[streamID] }

    var hasBlockedData: Bool { exchanges.contains { $0.body != nil && !($0.body!.isComplete) } }
    var oldestStartMicroseconds: Int64? {
        var oldest: Int64? = nil
        exchanges.forEach { _, ex in oldest = min(oldest ?? ex.startMicroseconds, ex.startMicroseconds) }
        return oldest
    }

    func receive(_ bytes: UnsafeRawBufferPointer) {
        guard let session, bytes.count > 0 else { return }
        let rc = nghttp2_session_mem_recv(session, bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), bytes.count)
        if rc < 0 {
            // nghttp2 has queued a GOAWAY for protocol errors it detects; send it, then close.
            if rc != Int(NGHTTP2_ERR_BAD_CLIENT_MAGIC.rawValue) {
                _ = nghttp2_session_terminate_session(session, UInt32(NGHTTP2_PROTOCOL_ERROR.rawValue))
            }
            connection.life.finishAfterFlush()
        }
    }

    /// Serialises frames into the connection's output until the high-water mark.
    func send(highWater: Int) {
        guard let session else { return }
        while connection.queuedBytes < highWater && connection.life.isOpen {
            var data: UnsafePointer<UInt8>? = nil
            let n = nghttp2_session_mem_send(session, &data)
            if n < 0 { connection.life.finishAfterFlush(); return }
            if n == 0 { break }
            connection.write(UnsafeRawBufferPointer(start: data, count: n))
        }
    }

    func resume(streamID: Int32) {
        guard let session else { return }
        _ = nghttp2_session_resume_data(session, streamID)
    }

    /// When this side sent GOAWAY (0: not yet).
    private(set) var goAwaySentMicroseconds: Int64 = 0

    func goAway() {
        guard let session, !goAwaySent else { return }
        goAwaySent = true
        goAwaySentMicroseconds = host.nowMicroseconds
        _ = nghttp2_submit_goaway(
            session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nghttp2_session_get_last_proc_stream_id(session),
            UInt32(NGHTTP2_NO_ERROR.rawValue), nil, 0)
    }

    /// Releases every stream's resources when the connection goes away.
    func shutdown() {
        // Taken out first: ending an exchange must not meet the table mid-iteration.
        let ending = exchanges.removeAll()
        building.removeAll()
        for ex in ending { host.end(ex, on: connection) }
        current = nil
        if let session { nghttp2_session_del(session); self.session = nil }
    }

    func submitResponse(
        _ ex: Exchange, status: Int, fields: ResponseFields, contentLength: Int, date: String, scratch: HeadScratch
    ) {
        guard let session else { return }
        // The four pairs written here: the status's and the length's digits, and the date.
        var head = H2HeadWriter(
            scratch: scratch, fields: fields, fixedPairs: 4, fixedBytes: 2 * DecimalText.bytesMax + date.utf8.count)
        head.field(":status", .decimal(status))
        head.field("server", .fixed("edge"))
        head.field("date", date)
        fields.write(to: &head)
        if status != 304 && status != 204 { head.field("content-length", .decimal(contentLength)) }
        if ex.body != nil {
            // The data callbacks find the exchange through the source, with no lookup by stream id
            // per DATA frame: `exchanges` holds it until the stream closes, and nghttp2 calls them
            // only for a stream still open.
            var provider = nghttp2_data_provider(
                source: nghttp2_data_source(ptr: Unmanaged.passUnretained(ex).toOpaque()), read_callback: h2ReadBody)
            _ = nghttp2_submit_response(session, ex.streamID, head.pairs, head.count, &provider)
        } else {
            _ = nghttp2_submit_response(session, ex.streamID, head.pairs, head.count, nil)
        }
    }

    // MARK: callbacks (called from inside mem_recv / mem_send)

    /// The request whose header block is arriving. A header block is never interleaved with
    /// another stream's frames (RFC 9113 §4.3), so each field finds it without a lookup. Held
    /// unretained: `building` holds it, and it is cleared whenever it leaves `building` (`forget`,
    /// `requestComplete`, `shutdown`). A strong reference cost a retain and a release per field.
    private var current: Unmanaged<RequestBuilder>?
    private var currentStreamID: Int32 = 0

    /// Runs `body` with the builder of `streamID`'s request, lent without a retain when it is
    /// `current`; nil when the stream has none.
    @inline(__always) private func withBuilder<R>(_ streamID: Int32, _ body: (RequestBuilder) -> R) -> R? {
        if streamID == currentStreamID, let current { return current._withUnsafeGuaranteedRef(body) }
        guard let b = building[streamID] else { return nil }
        return body(b)
    }

    fileprivate func beginHeaders(streamID: Int32) {
        let b: RequestBuilder
        if let spare = spareBuilder {
            spareBuilder = nil
            spare.reset(startMicroseconds: host.nowMicroseconds)
            b = spare
        } else {
            b = RequestBuilder(startMicroseconds: host.nowMicroseconds)
        }
        current = Unmanaged.passUnretained(b)
        building.insert(streamID, b)
        currentStreamID = streamID
    }

    private func forget(streamID: Int32) {
        building[streamID] = nil
        if currentStreamID == streamID { current = nil }
    }

    /// Streams whose request has not ended within the timeout are reset (CANCEL) and forgotten:
    /// a client cannot hold streams and their header memory by never sending END_STREAM.
    private func expireIncomplete(now: Int64, timeoutMicroseconds: Int64) {
        guard let session, !building.isEmpty else { return }
        var expired: [Int32] = []
        building.forEach { id, b in if now - b.startMicroseconds > timeoutMicroseconds { expired.append(id) } }
        for id in expired {
            forget(streamID: id)
            _ = nghttp2_submit_rst_stream(
                session, UInt8(NGHTTP2_FLAG_NONE.rawValue), id, UInt32(NGHTTP2_CANCEL.rawValue))
        }
    }

    var incompleteStreams: Int { building.count }

    /// Streams whose request never ends are reset; an idle session gets GOAWAY after the
    /// keep-alive timeout, and closes when the peer neither closes nor sends after it; streams
    /// the peer will not take data for (zero window) or that run too long close the connection.
    func checkDeadlines(now: Int64, _ deadlines: Deadlines, lastSendProgressMicroseconds: Int64) -> DeadlineVerdict {
        var verdict = DeadlineVerdict.none
        if incompleteStreams > 0 {
            expireIncomplete(now: now, timeoutMicroseconds: deadlines.h2StreamRequestMicroseconds)
            verdict = .send
        }
        if exchanges.isEmpty && incompleteStreams == 0 && goAwaySentMicroseconds > 0
            && now - goAwaySentMicroseconds > deadlines.headerMicroseconds
        {
            return .close   // a peer that neither closes nor sends after our GOAWAY
        }
        if exchanges.isEmpty {
            if now - idleSinceMicroseconds > deadlines.keepAliveMicroseconds { goAway(); return .send }
        } else if hasBlockedData && now - lastSendProgressMicroseconds > deadlines.sendMicroseconds {
            return .close   // streams with data the peer will not take (zero window)
        } else if let oldest = oldestStartMicroseconds, now - oldest > deadlines.requestMicroseconds {
            return .close
        }
        return verdict
    }

    /// Request fields come from the request's header block only: trailer fields (a HEADERS frame
    /// after the request's first) are read and dropped, never merged into the request
    /// (a Range or a token sent only in trailers is not honoured).
    fileprivate func header(
        streamID: Int32, category: nghttp2_headers_category, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer
    ) {
        guard category == NGHTTP2_HCAT_REQUEST else { return }
        _ = withBuilder(streamID) { b in header(b, name: name, value: value) }
    }

    private func header(_ b: RequestBuilder, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        b.listBytes += name.count + value.count + 32   // RFC 9113 §6.5.2 accounting
        if b.listBytes > limits.h2HeaderListBytesMax { b.tooLarge = true; b.fields.removeAll(); return }
        if b.tooLarge { return }
        // Pseudo-header names are matched as bytes; only the three the edge reads become Strings.
        // nghttp2 has already refused a request with an unknown or repeated pseudo-header.
        if name.count > 0 && name[0] == UInt8(ascii: ":") {
            if Self.bytes(name, equal: ":path") { b.path = String(decoding: value, as: UTF8.self) }
            if Self.bytes(name, equal: ":method") { b.method = Self.method(value) }
            if Self.bytes(name, equal: ":authority") && value.count > 0 {
                // Handlers read the authority as Host, as an HTTP/1.1 request carries it.
                b.fields.append(name: Self.hostName, value: value)
                b.hostFromAuthority = true
            }
            return
        }
        guard b.fields.count - (b.hostFromAuthority ? 1 : 0) < limits.headerCountMax else { b.tooLarge = true; return }
        if Self.bytes(name, equal: "cookie") { b.cookies += 1 }
        b.fields.append(name: name, value: value)
    }

    /// The usual methods as literals: a String made from the bytes cost its UTF-8 validation on
    /// every request.
    private static func method(_ value: UnsafeRawBufferPointer) -> String {
        if bytes(value, equal: "GET") { return "GET" }
        if bytes(value, equal: "HEAD") { return "HEAD" }
        return String(decoding: value, as: UTF8.self)
    }

    @inline(__always) private static var hostName: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: UnsafeRawPointer(("host" as StaticString).utf8Start), count: 4)
    }

    @inline(__always) private static func bytes(_ b: UnsafeRawBufferPointer, equal s: StaticString) -> Bool {
        b.count == s.utf8CodeUnitCount && memcmp(b.baseAddress!, s.utf8Start, b.count) == 0
    }

    fileprivate func requestComplete(streamID: Int32) {
        guard let b = building.removeValue(forKey: streamID) else { return }
        if currentStreamID == streamID { current = nil }
        // Taken out of the builder: the request holds the block alone, and a cookie join below
        // rewrites it without a copy first.
        var fields = HeaderBlock()
        swap(&fields, &b.fields)
        // RFC 9113 §8.2.3: a client may split Cookie into one field per crumb; they are one
        // field again, joined with "; ", before anything reads it.
        if b.cookies > 1 { fields.join(named: "cookie", separator: "; ") }
        let request = EdgeRequest(
            method: b.method, target: b.path.isEmpty ? "-" : b.path, version: .http2, fields: fields)
        let ex = Exchange(request: request, streamID: streamID, startMicroseconds: host.clockMicroseconds())
        exchanges.insert(streamID, ex)
        if b.tooLarge {
            host.refuse(ex, on: connection, status: 431, text: "request header fields too large\n")
        } else if b.bodyBytes > limits.requestBodyBytesMax {
            host.refuse(ex, on: connection, status: 413, text: "content too large\n")
        } else {
            host.start(ex, on: connection)
        }
        spareBuilder = b   // read no more: the next stream's HEADERS reset it
    }

    fileprivate func dataChunk(streamID: Int32, length: Int) {
        // DATA reaches only a stream whose request has not ended (nghttp2 refuses it after
        // END_STREAM), so its builder is found unless the stream was forgotten (then it is reset).
        _ = withBuilder(streamID) { b in b.bodyBytes += length }   // a frame carries at most 16 MiB: a 64-bit count does not overflow
    }

    fileprivate func streamClosed(streamID: Int32) {
        forget(streamID: streamID)
        guard let ex = exchanges.removeValue(forKey: streamID) else { return }
        host.end(ex, on: connection)
        if exchanges.isEmpty { idleSinceMicroseconds = host.nowMicroseconds }
    }

    fileprivate func frameSent(type: UInt8) {
        guard type == UInt8(NGHTTP2_RST_STREAM.rawValue), let session else { return }
        // Resets the server itself sends are bounded too ("MadeYouReset"-style abuse).
        serverResets += 1
        if serverResets > limits.h2ServerResetsPerConnectionMax {
            _ = nghttp2_session_terminate_session(session, UInt32(NGHTTP2_ENHANCE_YOUR_CALM.rawValue))
        }
    }

    fileprivate func readBody(
        _ ex: Exchange, streamID: Int32, length: Int, flags: UnsafeMutablePointer<UInt32>
    ) -> Int {
        assert(exchanges[streamID] === ex, "a data callback for an exchange the session no longer holds")
        guard let body = ex.body else {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            return 0
        }
        if body.failed { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }   // RST_STREAM: never wrong bytes
        let buffered = body.buffered
        if buffered.count == 0 && !body.isComplete {
            host.refill(body)
            if body.failed { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
            if body.buffered.count == 0 { return Int(NGHTTP2_ERR_DEFERRED.rawValue) }
        }
        // NO_COPY: nghttp2 only sizes the frame; sendData writes the payload straight from the
        // body's buffer into the connection's output.
        let n = min(body.buffered.count, length)
        flags.pointee |= NGHTTP2_DATA_FLAG_NO_COPY.rawValue
        if n == body.remaining { flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue }
        return n
    }

    fileprivate func sendData(
        _ ex: Exchange, streamID: Int32, frameHeader: UnsafePointer<UInt8>, length: Int, padding: Int
    ) -> Int32 {
        assert(exchanges[streamID] === ex, "a data callback for an exchange the session no longer holds")
        guard let body = ex.body, body.buffered.count >= length else {
            return Int32(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue)
        }
        connection.write(UnsafeRawBufferPointer(start: frameHeader, count: 9))
        if padding > 0 { var p = UInt8(padding - 1); withUnsafeBytes(of: &p) { connection.write($0) } }
        connection.writeBody(body, length)
        if padding > 1 {
            connection.write([UInt8](repeating: 0, count: padding - 1).withUnsafeBytes { UnsafeRawBufferPointer($0) })
        }
        ex.bytesSent += length
        return 0
    }
}

/// The session an nghttp2 callback is for, lent to `body` without a retain and release: the
/// session is inside its own nghttp2 call, so it is alive (3.6 retains per request otherwise).
@inline(__always) private func withH2Session<R>(_ p: UnsafeMutableRawPointer?, _ body: (H2Session) -> R) -> R {
    Unmanaged<H2Session>.fromOpaque(p!)._withUnsafeGuaranteedRef(body)
}

private let h2OnBeginHeaders: nghttp2_on_begin_headers_callback = { _, frame, user in
    guard let frame else { return 0 }
    if frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue) && frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST {
        withH2Session(user) { $0.beginHeaders(streamID: frame.pointee.hd.stream_id) }
    }
    return 0
}

private let h2OnHeader: nghttp2_on_header_callback = { _, frame, name, namelen, value, valuelen, _, user in
    guard let frame, frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue) else { return 0 }
    withH2Session(user) {
        $0.header(
            streamID: frame.pointee.hd.stream_id, category: frame.pointee.headers.cat,
            name: UnsafeRawBufferPointer(start: name, count: namelen),
            value: UnsafeRawBufferPointer(start: value, count: valuelen))
    }
    return 0
}

private let h2OnFrameRecv: nghttp2_on_frame_recv_callback = { _, frame, user in
    guard let frame else { return 0 }
    let type = frame.pointee.hd.type
    if (type == UInt8(NGHTTP2_HEADERS.rawValue) || type == UInt8(NGHTTP2_DATA.rawValue))
        && frame.pointee.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
    {
        withH2Session(user) { $0.requestComplete(streamID: frame.pointee.hd.stream_id) }
    }
    return 0
}

private let h2OnDataChunk: nghttp2_on_data_chunk_recv_callback = { _, _, streamID, _, length, user in
    withH2Session(user) { $0.dataChunk(streamID: streamID, length: length) }
    return 0
}

private let h2OnStreamClose: nghttp2_on_stream_close_callback = { _, streamID, _, user in
    withH2Session(user) { $0.streamClosed(streamID: streamID) }
    return 0
}

private let h2OnFrameSend: nghttp2_on_frame_send_callback = { _, frame, user in
    guard let frame else { return 0 }
    withH2Session(user) { $0.frameSent(type: frame.pointee.hd.type) }
    return 0
}

/// The exchange a data source was made for (`submitResponse`), lent without a retain.
@inline(__always) private func withExchange<R>(
    _ source: UnsafeMutablePointer<nghttp2_data_source>, _ body: (Exchange) -> R
) -> R {
    Unmanaged<Exchange>.fromOpaque(source.pointee.ptr!)._withUnsafeGuaranteedRef(body)
}

private let h2SendData: nghttp2_send_data_callback = { _, frame, framehd, length, source, user in
    guard let frame, let framehd, let source else { return Int32(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
    return withH2Session(user) { session in
        withExchange(source) {
            session.sendData(
                $0, streamID: frame.pointee.hd.stream_id, frameHeader: framehd, length: length,
                padding: Int(frame.pointee.data.padlen))
        }
    }
}

private let h2ReadBody: nghttp2_data_source_read_callback = { _, streamID, _, length, flags, source, user in
    guard let source, let flags else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
    return withH2Session(user) { session in
        withExchange(source) { session.readBody($0, streamID: streamID, length: length, flags: flags) }
    }
}
