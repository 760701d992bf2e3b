import CEdgeRing
import EdgeClient
import EdgeIO

/// Where a connection goes: an IP literal and port, TLS or not, HTTP/2 or HTTP/1.1.
public struct Endpoint: Hashable, Sendable {
    public var host: String
    public var port: Int
    public var tls: Bool
    public var http2: Bool
    public var authority: String
    public var scheme: String { tls ? "https" : "http" }
    public init(host: String, port: Int, tls: Bool, http2: Bool, authority: String) {
        self.host = host; self.port = port; self.tls = tls; self.http2 = http2; self.authority = authority
    }
}

/// One request as the load generator sees it: when it was due (`intended`, from the schedule
/// or the player), when it went out, when its head and first body byte came back.
struct Exchange {
    var intended: Int64
    var sent: Int64
    var head: Int64? = nil
    var firstBodyByte: Int64? = nil
    var status = 0
    var bytes = 0
    var hit: Bool? = nil
    var timedOut = false
    /// The owner's: which player and what for.
    var tag: Int = 0
    /// Body bytes kept, up to `bodyMax` (a manifest, a grant); 0 keeps none.
    var bodyMax = 0
    var body: [UInt8] = []
    var bodyTooLarge = false

    mutating func received(status: Int, cacheStatus: String?, now: Int64) {
        head = now
        self.status = status
        if let cacheStatus { hit = ClientConnection.isHit(cacheStatus: cacheStatus) }
    }

    /// `now` is read only for the first body bytes (a clock read per DATA frame cost more than
    /// the rest of this).
    mutating func received(_ bytes: UnsafeRawBufferPointer, now: () -> Int64) {
        if firstBodyByte == nil { firstBodyByte = now() }
        self.bytes += bytes.count
        guard bodyMax > 0 else { return }
        if body.count + bytes.count <= bodyMax {
            body.append(contentsOf: bytes)
        } else {
            bodyTooLarge = true
        }
    }
}

/// One connection of the load generator: socket, connect, optional TLS, a client session
/// (HTTP/2 or HTTP/1.1); one receive and one send in flight at most. Completions of an earlier
/// incarnation (before a reconnect, or before the slot was reused) carry an older generation
/// and are dropped.
final class ClientConnection: ClientSessionDelegate {
    enum State { case closed, opening, connecting, handshaking, ready }

    let slot: UInt32
    unowned let loop: LoadLoop
    var endpoint: Endpoint
    /// The pool that owns this connection (nil for the replay's fixed set).
    weak var pool: ConnectionPool?
    var generation: UInt32 = 0
    var state = State.closed
    var fd: Int32 = -1
    var reopenAtMicroseconds: Int64 = 0
    let address = UnsafeMutableRawPointer.allocate(byteCount: 128, alignment: 8)
    var addressLength: Int32 = 0
    var session: (any ClientSession)?
    var tls: ClientTLS?
    var exchanges: [Int32: Exchange] = [:]
    let recvBytes: Int
    let recvBuffer: UnsafeMutableRawPointer
    /// The loop's: decrypted bytes live there only until the session has read them.
    let plaintext: UnsafeMutableRawPointer
    /// The start of a TLS record not yet whole, at the front of `recvBuffer` (records opened in
    /// place, `ClientTLS.opensRecords`): the next receive lands after it.
    var cipherPending = 0
    let sendBytes: Int
    let sendBuffer: UnsafeMutableRawPointer
    var sendLength = 0
    var sendOffset = 0
    var sending = false
    /// Bytes produced while a send was in flight (bounded by the session's own output).
    var staged: [UInt8] = []
    /// Inside the session's `receive`: the session must outlive the call, so closing waits.
    private var receiving = false
    /// The owner is done with this connection: it closes once its exchanges have ended.
    var retireWhenIdle = false
    /// In the replay's list of connections with room.
    var roomy = false
    /// In the loop's list of connections to flush after this batch.
    var flushPending = false

    init(slot: UInt32, loop: LoadLoop, endpoint: Endpoint, bufferBytes: Int) {
        self.slot = slot; self.loop = loop; self.endpoint = endpoint
        ring = loop.ring
        recvBytes = bufferBytes
        sendBytes = bufferBytes
        recvBuffer = .allocate(byteCount: bufferBytes, alignment: 64)
        plaintext = loop.plaintext
        sendBuffer = .allocate(byteCount: bufferBytes, alignment: 64)
    }
    deinit { address.deallocate(); recvBuffer.deallocate(); sendBuffer.deallocate() }

    /// The loop's ring, held here: reaching it through the unowned `loop` cost a checked
    /// retain per use.
    let ring: Ring
    func data(_ kind: UInt8) -> UserData { UserData(kind: kind, slot: slot, generation: generation) }

    /// Whether a new exchange may start here now (`streamsMax`: the caller's own bound).
    func canStart(streamsMax: Int) -> Bool {
        guard state == .ready, let session, !session.goAwayReceived else { return false }
        return session.openStreams < min(streamsMax, session.concurrentStreamsMax)
    }

    /// Starts connecting (socket, connect, TLS) from the closed state.
    func open() {
        generation = (generation + 1) & 0xFF_FFFF
        tls = nil; session = nil; cipherPending = 0
        staged.removeAll()
        sendLength = 0; sendOffset = 0; sending = false
        addressLength = edge_make_sockaddr(endpoint.host, Int32(endpoint.port), address)
        guard addressLength > 0 else { failed(kind: "connect"); return }
        state = .opening
        ring.socket(ipv6: endpoint.host.contains(":"), data(LoadLoop.Op.socket))
    }

    func onSocket(_ result: Int32) {
        guard state == .opening else {
            if result >= 0 { ring.close(fd: result, UserData(kind: LoadLoop.Op.close, slot: slot)) }
            return
        }
        guard result >= 0 else { failed(kind: "connect"); return }
        fd = result
        state = .connecting
        ring.connect(fd: fd, address: address, length: addressLength, data(LoadLoop.Op.connect))
    }

    func onConnect(_ result: Int32) {
        guard state == .connecting else { return }
        guard result >= 0 else { failed(kind: "connect"); return }
        ring.setNoDelay(fd: fd)
        if endpoint.tls {
            guard let context = loop.tlsContext(http2: endpoint.http2) else { failed(kind: "tls"); return }
            do { tls = try ClientTLS(context: context, serverName: endpoint.host) } catch {
                failed(kind: "tls"); return
            }
            state = .handshaking
            flush()
        } else {
            startSession()
        }
        postRecv()
    }

    private func startSession() {
        if endpoint.http2 {
            guard let h2 = H2ClientSession(windowBytes: 1 << 20, delegate: self) else {
                failed(kind: "protocol"); return
            }
            session = h2
        } else {
            session = HTTP1ClientSession(delegate: self)
        }
        session?.fieldNamesKept = ["cache-status"]
        state = .ready
        flush()
        loop.connectionReady(self)
    }

    func postRecv() {
        ring.recv(fd: fd, into: recvBuffer + cipherPending, length: recvBytes - cipherPending, data(LoadLoop.Op.recv))
    }

    func onRecv(_ result: Int32) {
        guard state != .closed, state != .opening else { return }
        if result == -11 || result == -4 { postRecv(); return }   // EAGAIN, EINTR
        guard result > 0 else {
            if result == 0 { session?.transportClosed() }   // a response delimited by the close ends here
            failed(kind: result == 0 ? "closed" : "reset"); return
        }
        let bytes = UnsafeRawBufferPointer(start: recvBuffer, count: Int(result))
        if let tls, tls.opensRecords {
            cipherPending += Int(result)
            if let problem = openRecords(tls) { failed(kind: problem); return }
            if tls.closeNotifyReceived {
                session?.transportClosed()
                failed(kind: "closed"); return
            }
        } else if let tls {
            if let problem = tls.withInput(bytes, { decrypt(tls) }) { failed(kind: problem); return }
            if tls.failed { failed(kind: "tls"); return }
            if tls.closeNotifyReceived {
                session?.transportClosed()
                failed(kind: "closed"); return
            }
        } else {
            receiving = true
            let ok = session?.receive(bytes) ?? false
            receiving = false
            guard ok else { failed(kind: "protocol"); return }
        }
        guard state != .closed else { return }
        if let session, session.openStreams == 0, session.goAwayReceived || retireWhenIdle {
            retire(); return
        }
        flushSoon()
        postRecv()
    }

    /// Flushes once the loop has handled the batch of completions at hand: the requests and
    /// window updates of a batch leave in one send (and one nghttp2 pass) per connection,
    /// not one each.
    func flushSoon() {
        guard !flushPending else { return }
        flushPending = true
        loop.flushLater(self)
    }

    /// Runs the handshake, then decrypts what was received and hands it to the session, as much
    /// as fills `plaintext` at a time (OpenSSL opens one record per read: a session's receive per
    /// 16 KiB record cost more than the records). A failure's kind, or nil.
    private func decrypt(_ tls: ClientTLS) -> String? {
        if state == .handshaking {
            _ = tls.read(into: UnsafeMutableRawBufferPointer(start: plaintext, count: 0))
            if tls.failed { return "tls" }
            if tls.handshakeDone {
                guard tls.negotiatedH2 == endpoint.http2 else { return "alpn" }
                startSession()
                // A buffer that holds a whole record: OpenSSL's copies end here (TLS 1.3).
                if recvBytes >= ClientConnection.recordBytesMax,
                    let left = tls.takeOverReading(into: recvBuffer, capacity: recvBytes)
                {
                    cipherPending = left
                    return openRecords(tls)
                }
                if tls.failed { return "tls" }
            }
        }
        while state == .ready {
            var filled = 0
            while filled < recvBytes {
                let n = tls.read(
                    into: UnsafeMutableRawBufferPointer(start: plaintext + filled, count: recvBytes - filled))
                if tls.failed { return "tls" }
                if n == 0 { break }
                filled += n
            }
            if filled == 0 { break }
            receiving = true
            let ok = session?.receive(UnsafeRawBufferPointer(start: plaintext, count: filled)) ?? false
            receiving = false
            guard ok else { return "protocol" }
        }
        return nil
    }

    /// A TLS record's most bytes on the wire: header, 2^14 of content, 256 of expansion (RFC 8446 §5.2).
    static let recordBytesMax = 5 + 16384 + 256

    /// Opens the whole records at the front of `recvBuffer` in place and hands their application
    /// data to the session in one call; a record's start that is not whole yet moves to the front.
    /// A failure's kind, or nil.
    private func openRecords(_ tls: ClientTLS) -> String? {
        let r = tls.openRecords(recvBuffer, count: cipherPending)
        if tls.failed { return "tls" }
        if r.plaintext > 0 {
            receiving = true
            let ok = session?.receive(UnsafeRawBufferPointer(start: recvBuffer, count: r.plaintext)) ?? false
            receiving = false
            guard ok else { return "protocol" }
        }
        guard state == .ready else { return nil }
        cipherPending -= r.consumed
        if r.consumed > 0, cipherPending > 0 {
            recvBuffer.copyMemory(from: recvBuffer + r.consumed, byteCount: cipherPending)   // regions may overlap
        }
        return nil
    }

    /// Moves the session's output (sealed, with TLS) into the send buffer and sends.
    func flush() {
        flushPending = false
        guard state == .handshaking || state == .ready else { return }
        if let session {
            let ok = session.send { bytes in
                if let tls { _ = tls.write(bytes) } else { staged.append(contentsOf: bytes) }
            }
            guard ok else { failed(kind: "protocol"); return }
        }
        if let tls {
            // `plaintext` is free here: receives are decrypted into it before the flush that follows.
            while tls.hasOutput {
                let n = tls.drain(into: UnsafeMutableRawBufferPointer(start: plaintext, count: recvBytes))
                if n == 0 { break }
                staged.append(contentsOf: UnsafeRawBufferPointer(start: plaintext, count: n))
            }
        }
        startSend()
    }

    private func startSend() {
        guard !sending, !staged.isEmpty, fd >= 0 else { return }
        let n = min(staged.count, sendBytes)
        staged.withUnsafeBytes { sendBuffer.copyMemory(from: $0.baseAddress!, byteCount: n) }
        staged.removeFirst(n)
        sendLength = n
        sendOffset = 0
        sending = true
        ring.send(fd: fd, from: sendBuffer, length: n, data(LoadLoop.Op.send))
    }

    func onSend(_ result: Int32) {
        guard sending else { return }
        sending = false
        guard state != .closed else { return }
        if result == -11 || result == -4 { resend(); return }
        guard result > 0 else { failed(kind: "reset"); return }
        sendOffset += Int(result)
        if sendOffset < sendLength { resend(); return }
        startSend()
    }

    private func resend() {
        sending = true
        ring.send(fd: fd, from: sendBuffer + sendOffset, length: sendLength - sendOffset, data(LoadLoop.Op.send))
    }

    /// Starts an exchange on this connection (the caller checked `canStart`).
    func start(
        method: String = "GET", path: String, headers: [(name: String, value: String)], body: [UInt8] = [],
        exchange: Exchange
    ) -> Bool {
        guard
            let stream = session?.request(
                method: method, scheme: endpoint.scheme, authority: endpoint.authority, path: path, headers: headers,
                body: body)
        else { return false }
        exchanges[stream] = exchange
        flushSoon()
        return true
    }

    /// The owner is done with this connection: closed now when idle, else once its exchanges end.
    func release() {
        retireWhenIdle = true
        if state == .closed { loop.connectionClosed(self); return }
        if !receiving && exchanges.isEmpty { retire() }
    }

    /// Closes the connection without an error (the peer said no more, or the owner is done).
    func retire() {
        for (_, e) in exchanges where !e.timedOut { loop.exchangeFailed(e, kind: "closed") }
        exchanges.removeAll()
        closeSocket()
        reopenAtMicroseconds = 0
        loop.connectionClosed(self)
    }

    /// The connection broke: its exchanges fail with `kind`, and it may reconnect after a pause.
    func failed(kind: String) {
        loop.connectionFailed(self, kind: kind)
        for (_, e) in exchanges where !e.timedOut {
            loop.exchangeFailed(e, kind: kind == "closed" ? "closed" : kind == "protocol" ? "protocol" : "reset")
        }
        exchanges.removeAll()
        closeSocket()
        reopenAtMicroseconds = loop.now + 100_000
        loop.connectionClosed(self)
    }

    private func closeSocket() {
        if fd >= 0 { ring.close(fd: fd, UserData(kind: LoadLoop.Op.close, slot: slot)); fd = -1 }
        generation = (generation + 1) & 0xFF_FFFF   // drops completions still to come
        state = .closed
        session = nil; tls = nil; cipherPending = 0
    }

    /// Exchanges past their deadline: failures ("timeout") at once, and cancelled.
    func expire(now: Int64, timeoutMicroseconds: Int64) {
        var cancelled = false
        for (id, e) in exchanges where !e.timedOut && now - e.sent > timeoutMicroseconds {
            exchanges[id]!.timedOut = true
            loop.exchangeFailed(e, kind: "timeout")
            session?.cancel(stream: id)
            cancelled = true
        }
        guard cancelled else { return }
        if let session, session.openStreams == 0, session.goAwayReceived || retireWhenIdle { retire() } else { flush() }
    }

    // MARK: ClientSessionDelegate

    func responseHead(stream: Int32, status: Int, fields: [(name: String, value: String)]) {
        let t = loop.now
        let cacheStatus = fields.first(where: { $0.name == "cache-status" })?.value
        exchanges[stream]?.received(status: status, cacheStatus: cacheStatus, now: t)
    }

    func responseData(stream: Int32, bytes: UnsafeRawBufferPointer) {
        exchanges[stream]?.received(bytes, now: { ring.monotonicMicroseconds() })   // one lookup, changed in place
    }

    /// RFC 9211: the last member is the cache nearest the client; a hit carries `hit` and no
    /// `fwd` (a hit with `fwd=stale` revalidated at the origin). Bytes, not `String` searches:
    /// this runs for every response.
    static func isHit(cacheStatus: String) -> Bool {
        var value = cacheStatus
        return value.withUTF8 { all in
            // The last member's parameters: after its first ";", up to the end.
            let start = (all.lastIndex(of: UInt8(ascii: ",")) ?? -1) + 1
            var hit = false
            var i = all[start...].firstIndex(of: UInt8(ascii: ";")) ?? all.endIndex
            while i < all.endIndex {
                var lo = i + 1
                let end = all[lo...].firstIndex(of: UInt8(ascii: ";")) ?? all.endIndex
                var hi = end
                while lo < hi, all[lo] == 0x20 || all[lo] == 0x09 { lo += 1 }
                while hi > lo, all[hi - 1] == 0x20 || all[hi - 1] == 0x09 { hi -= 1 }
                let p = all[lo..<hi]
                if p.elementsEqual("hit".utf8) { hit = true }
                if p.starts(with: "fwd=".utf8) { return false }
                i = end
            }
            return hit
        }
    }

    func streamClosed(stream: Int32, errorCode: UInt32) {
        guard let e = exchanges.removeValue(forKey: stream) else { return }
        if e.timedOut { return }
        guard errorCode == 0, e.head != nil else {
            loop.exchangeFailed(e, kind: errorCode == ClientSessionError.truncated ? "closed" : "reset")
            return
        }
        loop.exchangeCompleted(e, on: self, now: loop.now)
    }
}
