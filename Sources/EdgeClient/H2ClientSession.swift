import CNGHTTP2

/// An HTTP/2 client session over libnghttp2 with no I/O of its own: bytes read from the transport
/// go to `receive`, and `send` hands over the frames to write. Flow control is nghttp2's: the
/// stream and connection windows are the ones given here, reopened as body bytes are consumed.
/// Shared by the load generator and, later, HTTPS origins.
public final class H2ClientSession: ClientSession {
    private var session: OpaquePointer?
    /// Unowned, not weak: a weakly referenced object moves its reference counts to a side table,
    /// which made every retain and release of the connection that owns this session take the
    /// runtime's slow path (about 15 % of the load generator's CPU). The owner outlives its session.
    public unowned var delegate: (any ClientSessionDelegate)?
    /// The head being received. A header block is never interleaved with another stream's
    /// (RFC 9113 §4.3: CONTINUATION frames follow at once), so one is enough.
    private var headStream: Int32 = 0
    private var headStatus: Int? = nil
    private var headFields: [(name: String, value: String)] = []
    /// Field names passed to `responseHead` (lower case); nil passes every field. The others are
    /// never made into `String`s.
    public var fieldNamesKept: [String]? {
        didSet { namesKept = fieldNamesKept.map { $0.map { Array($0.lowercased().utf8) } } }
    }
    private var namesKept: [[UInt8]]? = nil
    public static let fieldsMax = 128
    /// Streams open now.
    public private(set) var openStreams = 0
    /// The peer's SETTINGS_MAX_CONCURRENT_STREAMS (updated as its SETTINGS arrive).
    public var peerConcurrentStreamsMax: Int {
        guard let session else { return 0 }
        return Int(nghttp2_session_get_remote_settings(session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS))
    }
    public var concurrentStreamsMax: Int {
        let peer = peerConcurrentStreamsMax
        return peer > 0 ? peer : 100   // RFC 9113 §6.5.2: unlimited until SETTINGS; 100 is the advised floor
    }
    /// Set when the peer sent GOAWAY: no new stream may start on this connection.
    public private(set) var goAwayReceived = false

    /// `windowBytes`: the initial stream window (SETTINGS_INITIAL_WINDOW_SIZE) and, at least, the
    /// connection window.
    public init?(windowBytes: Int = 65535, delegate: (any ClientSessionDelegate)? = nil) {
        precondition((1...Int(Int32.max)).contains(windowBytes), "window out of range")
        self.delegate = delegate
        var callbacks: OpaquePointer? = nil
        guard nghttp2_session_callbacks_new(&callbacks) == 0, let callbacks else { return nil }
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_header_callback(callbacks, clientOnHeader)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, clientOnFrameRecv)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, clientOnDataChunk)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, clientOnStreamClose)
        var s: OpaquePointer? = nil
        guard nghttp2_session_client_new(&s, callbacks, Unmanaged.passUnretained(self).toOpaque()) == 0, let s else {
            return nil
        }
        session = s
        var settings = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0),
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: UInt32(windowBytes)),
        ]
        guard nghttp2_submit_settings(s, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count) == 0 else {
            return nil
        }
        if windowBytes > 65535 {
            _ = nghttp2_session_set_local_window_size(s, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, Int32(windowBytes))
        }
    }

    deinit { if let session { nghttp2_session_del(session) } }

    /// Starts a GET (or HEAD); returns the stream ID, or nil when the session cannot start one
    /// (GOAWAY received, stream IDs exhausted, a request body: not needed by the clients here).
    public func request(
        method: String = "GET", scheme: String, authority: String, path: String,
        headers: [(name: String, value: String)] = [], body: [UInt8] = []
    ) -> Int32? {
        guard let session, !goAwayReceived, body.isEmpty else { return nil }
        // Every name and value in one buffer (nghttp2 copies them during the submit).
        var bytes: [UInt8] = []
        var spans: [(name: Range<Int>, value: Range<Int>)] = []
        spans.reserveCapacity(4 + headers.count)
        func add(_ name: String, _ value: String) {
            let n = bytes.count
            if name.utf8.contains(where: { (0x41...0x5A).contains($0) }) {
                bytes += name.lowercased().utf8
            } else {
                bytes += name.utf8
            }
            let v = bytes.count
            bytes += value.utf8
            spans.append((n..<v, v..<bytes.count))
        }
        add(":method", method)
        add(":scheme", scheme)
        add(":authority", authority)
        add(":path", path)
        for (name, value) in headers { add(name, value) }
        let id: Int32 = bytes.withUnsafeMutableBufferPointer { buffer in
            let base = buffer.baseAddress!   // never empty: the pseudo-header names are in it
            var nva = spans.map {
                nghttp2_nv(
                    name: base + $0.name.lowerBound, value: base + $0.value.lowerBound, namelen: $0.name.count,
                    valuelen: $0.value.count, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
            }
            return nghttp2_submit_request(session, nil, &nva, nva.count, nil, nil)
        }
        guard id > 0 else { return nil }
        openStreams += 1
        return id
    }

    /// Cancels a stream (a timeout): RST_STREAM CANCEL; `streamClosed` follows.
    public func cancel(stream: Int32) {
        guard let session else { return }
        _ = nghttp2_submit_rst_stream(
            session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream, UInt32(NGHTTP2_CANCEL.rawValue))
    }

    /// Feeds bytes read from the transport. False: the peer broke the protocol (the session
    /// has queued GOAWAY; send it, then close).
    public func receive(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let session, bytes.count > 0 else { return true }
        let rc = nghttp2_session_mem_recv(session, bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), bytes.count)
        return rc >= 0
    }

    /// The transport ended: nghttp2 reports nothing for it; the connection closes its streams.
    public func transportClosed() { goAwayReceived = true }

    public func send(_ write: (UnsafeRawBufferPointer) -> Void) -> Bool { send(bytesMax: 1 << 20, write) }

    /// Hands frames to write to `write`, up to about `bytesMax`; false on a session error.
    public func send(bytesMax: Int, _ write: (UnsafeRawBufferPointer) -> Void) -> Bool {
        guard let session else { return false }
        var sent = 0
        while sent < bytesMax {
            var data: UnsafePointer<UInt8>? = nil
            let n = nghttp2_session_mem_send(session, &data)
            if n < 0 { return false }
            if n == 0 { break }
            write(UnsafeRawBufferPointer(start: data, count: Int(n)))
            sent += Int(n)
        }
        return true
    }

    /// Whether the session has frames to write.
    public var wantsWrite: Bool { session.map { nghttp2_session_want_write($0) != 0 } ?? false }

    // MARK: callbacks

    fileprivate func header(stream: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        if stream != headStream {
            headStream = stream; headStatus = nil; headFields.removeAll(keepingCapacity: true)
        }
        if name.first == UInt8(ascii: ":") {
            // nghttp2 checks it too (three digits); anything else is status 0, as before.
            if name.elementsEqual(":status".utf8) {
                let digits = value.count == 3 && value.allSatisfy { (0x30...0x39).contains($0) }
                headStatus = digits ? value.reduce(0) { $0 * 10 + Int($1 - 0x30) } : 0
            }
            return
        }
        if let namesKept, !namesKept.contains(where: { $0.elementsEqual(name) }) { return }
        guard headFields.count < Self.fieldsMax else { return }
        headFields.append((String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self)))
    }

    fileprivate func headersEnded(stream: Int32) {
        guard stream == headStream else { return }   // a head with no field at all: nghttp2 refuses it
        headStream = 0
        // No :status: trailers (ignored). 1xx: an interim head, the final one follows.
        guard let code = headStatus, code >= 200 || code < 100 else { return }
        delegate?.responseHead(stream: stream, status: code, fields: headFields)
    }

    fileprivate func data(stream: Int32, bytes: UnsafeRawBufferPointer) {
        delegate?.responseData(stream: stream, bytes: bytes)
    }

    fileprivate func closed(stream: Int32, errorCode: UInt32) {
        openStreams -= 1
        if stream == headStream { headStream = 0 }
        delegate?.streamClosed(stream: stream, errorCode: errorCode)
    }

    fileprivate func goAway() { goAwayReceived = true }
}

@inline(__always) private func clientSession(_ user: UnsafeMutableRawPointer?) -> H2ClientSession {
    Unmanaged<H2ClientSession>.fromOpaque(user!).takeUnretainedValue()
}

private let clientOnHeader: nghttp2_on_header_callback = { _, frame, name, namelen, value, valuelen, _, user in
    guard let frame, frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue) else { return 0 }
    clientSession(user).header(
        stream: frame.pointee.hd.stream_id, name: UnsafeRawBufferPointer(start: name, count: namelen),
        value: UnsafeRawBufferPointer(start: value, count: valuelen))
    return 0
}

private let clientOnFrameRecv: nghttp2_on_frame_recv_callback = { _, frame, user in
    guard let frame else { return 0 }
    switch frame.pointee.hd.type {
    case UInt8(NGHTTP2_HEADERS.rawValue): clientSession(user).headersEnded(stream: frame.pointee.hd.stream_id)
    case UInt8(NGHTTP2_GOAWAY.rawValue): clientSession(user).goAway()
    default: break
    }
    return 0
}

private let clientOnDataChunk: nghttp2_on_data_chunk_recv_callback = { _, _, stream, data, length, user in
    clientSession(user).data(stream: stream, bytes: UnsafeRawBufferPointer(start: data, count: length))
    return 0
}

private let clientOnStreamClose: nghttp2_on_stream_close_callback = { _, stream, errorCode, user in
    clientSession(user).closed(stream: stream, errorCode: errorCode)
    return 0
}
