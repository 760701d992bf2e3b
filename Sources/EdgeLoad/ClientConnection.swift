import CEdgeRing
import EdgeClient
import EdgeIO

/// One HTTP/2 connection of the load generator: socket, connect, optional TLS, the client
/// session; one receive and one send in flight at most. Completions of an earlier incarnation
/// (before a reconnect) carry an older generation and are dropped.
final class ClientConnection: H2ClientDelegate {
    enum State { case closed, opening, connecting, handshaking, ready }
    struct Timing {
        var intended: Int64
        var sent: Int64
        var head: Int64? = nil
        var firstBodyByte: Int64? = nil
        var status = 0
        var bytes = 0
        var hit: Bool? = nil
        var timedOut = false
    }

    let slot: UInt32
    unowned let engine: ReplayEngine
    var generation: UInt32 = 0
    var state = State.closed
    var fd: Int32 = -1
    var pendingOps = 0
    var reopenAtMicroseconds: Int64 = 0
    let address = UnsafeMutableRawPointer.allocate(byteCount: 128, alignment: 8)
    var addressLength: Int32 = 0
    var h2: H2ClientSession?
    var tls: ClientTLS?
    private var makeTLS: (() throws -> ClientTLS)?
    var timings: [Int32: Timing] = [:]
    static let recvBytes = 65536
    let recvBuffer = UnsafeMutableRawPointer.allocate(byteCount: recvBytes, alignment: 64)
    let plaintext = UnsafeMutableRawPointer.allocate(byteCount: recvBytes, alignment: 64)
    static let sendBytes = 262_144
    let sendBuffer = UnsafeMutableRawPointer.allocate(byteCount: sendBytes, alignment: 64)
    var sendLength = 0
    var sendOffset = 0
    var sending = false
    /// Bytes produced while a send was in flight (bounded by the session's own output).
    var staged: [UInt8] = []

    init(slot: UInt32, engine: ReplayEngine) { self.slot = slot; self.engine = engine }
    deinit { address.deallocate(); recvBuffer.deallocate(); plaintext.deallocate(); sendBuffer.deallocate() }

    var ring: Ring { engine.ring }
    func data(_ kind: UInt8) -> UserData { UserData(kind: kind, slot: slot, generation: generation) }

    func reset(tls make: (() throws -> ClientTLS)?) {
        generation = (generation + 1) & 0xFF_FFFF
        makeTLS = make
        tls = nil
        h2 = nil
        staged.removeAll()
        sendLength = 0; sendOffset = 0; sending = false
    }

    /// Whether a new stream may start here now.
    func canStart(streamsMax: Int) -> Bool {
        guard state == .ready, let h2, !h2.goAwayReceived else { return false }
        let peerMax = h2.peerConcurrentStreamsMax
        return h2.openStreams < min(streamsMax, peerMax > 0 ? peerMax : streamsMax)
    }

    private func current(_ d: UserData) -> Bool { d.generation == generation }

    func onSocket(_ result: Int32) {
        guard state == .opening else {
            if result >= 0 { ring.close(fd: result, UserData(kind: 6, slot: slot)) }; return
        }
        guard result >= 0 else { failed(kind: "connect", now: engine.now); return }
        fd = result
        state = .connecting
        ring.connect(fd: fd, address: address, length: addressLength, data(2))
    }

    func onConnect(_ result: Int32) {
        guard state == .connecting else { return }
        guard result >= 0 else { failed(kind: "connect", now: engine.now); return }
        ring.setNoDelay(fd: fd)
        if let makeTLS {
            do { tls = try makeTLS() } catch { failed(kind: "tls", now: engine.now); return }
            state = .handshaking
            flush()
        } else {
            startSession()
        }
        postRecv()
    }

    private func startSession() {
        guard let session = H2ClientSession(windowBytes: 1 << 20, delegate: self) else {
            failed(kind: "protocol", now: engine.now); return
        }
        h2 = session
        state = .ready
        flush()
    }

    func postRecv() {
        ring.recv(fd: fd, into: recvBuffer, length: Self.recvBytes, data(4))
    }

    func onRecv(_ result: Int32) {
        guard state != .closed, state != .opening else { return }
        if result == -11 || result == -4 { postRecv(); return }   // EAGAIN, EINTR
        guard result > 0 else { failed(kind: result == 0 ? "closed" : "reset", now: engine.now); return }
        let bytes = UnsafeRawBufferPointer(start: recvBuffer, count: Int(result))
        if let tls {
            tls.feed(bytes)
            if state == .handshaking {
                _ = tls.read(into: UnsafeMutableRawBufferPointer(start: plaintext, count: 0))
                if tls.failed { failed(kind: "tls", now: engine.now); return }
                if tls.handshakeDone {
                    guard tls.negotiatedH2 else { failed(kind: "alpn", now: engine.now); return }
                    startSession()
                }
            }
            while state == .ready {
                let n = tls.read(into: UnsafeMutableRawBufferPointer(start: plaintext, count: Self.recvBytes))
                if tls.failed { failed(kind: "tls", now: engine.now); return }
                if n == 0 { break }
                guard h2?.receive(UnsafeRawBufferPointer(start: plaintext, count: n)) ?? false else {
                    failed(kind: "protocol", now: engine.now); return
                }
            }
            if tls.closeNotifyReceived { failed(kind: "closed", now: engine.now); return }
        } else {
            guard h2?.receive(bytes) ?? false else { failed(kind: "protocol", now: engine.now); return }
        }
        guard state != .closed else { return }
        flush()
        postRecv()
    }

    /// Moves the session's frames (sealed, with TLS) into the send buffer and sends.
    func flush() {
        guard state == .handshaking || state == .ready else { return }
        if let h2 {
            let ok = h2.send { bytes in
                if let tls { _ = tls.write(bytes) } else { staged.append(contentsOf: bytes) }
            }
            guard ok else { failed(kind: "protocol", now: engine.now); return }
        }
        if let tls {
            // `plaintext` is free here: receives are decrypted into it before the flush that follows.
            while tls.hasOutput {
                let n = tls.drain(into: UnsafeMutableRawBufferPointer(start: plaintext, count: Self.recvBytes))
                if n == 0 { break }
                staged.append(contentsOf: UnsafeRawBufferPointer(start: plaintext, count: n))
            }
        }
        startSend()
    }

    private func startSend() {
        guard !sending, !staged.isEmpty, fd >= 0 else { return }
        let n = min(staged.count, Self.sendBytes)
        staged.withUnsafeBytes { sendBuffer.copyMemory(from: $0.baseAddress!, byteCount: n) }
        staged.removeFirst(n)
        sendLength = n
        sendOffset = 0
        sending = true
        ring.send(fd: fd, from: sendBuffer, length: n, data(3))
    }

    func onSend(_ result: Int32) {
        guard sending else { return }
        sending = false
        guard state != .closed else { return }
        if result == -11 || result == -4 { resend(); return }
        guard result > 0 else { failed(kind: "reset", now: engine.now); return }
        sendOffset += Int(result)
        if sendOffset < sendLength { resend(); return }
        startSend()
    }

    private func resend() {
        sending = true
        ring.send(fd: fd, from: sendBuffer + sendOffset, length: sendLength - sendOffset, data(3))
    }

    func onClosed() {}

    /// The connection broke: its streams fail with `kind`, and it reconnects after a pause.
    func failed(kind: String, now: Int64) {
        engine.recorder.error(kind == "connect" || kind == "tls" || kind == "alpn" ? kind : "connection_\(kind)")
        for (_, t) in timings where !t.timedOut { engine.recorder.error(kind == "closed" ? "closed" : "reset") }
        timings.removeAll()
        if fd >= 0 { ring.close(fd: fd, UserData(kind: 6, slot: slot)); fd = -1 }
        generation = (generation + 1) & 0xFF_FFFF   // drops completions still to come
        state = .closed
        h2 = nil; tls = nil
        reopenAtMicroseconds = now + 100_000
    }

    /// Requests past their deadline: counted as timeouts at once, and cancelled.
    func expireStreams(now: Int64, timeoutMicroseconds: Int64) {
        var cancelled = false
        for (id, t) in timings where !t.timedOut && now - t.sent > timeoutMicroseconds {
            timings[id]!.timedOut = true
            engine.recorder.error("timeout")
            h2?.cancel(stream: id)
            cancelled = true
        }
        if cancelled { flush() }
    }

    // MARK: H2ClientDelegate

    func responseHead(stream: Int32, status: Int, fields: [(name: String, value: String)]) {
        guard timings[stream] != nil else { return }
        timings[stream]!.head = engine.now
        timings[stream]!.status = status
        if let cs = fields.first(where: { $0.name == "cache-status" })?.value {
            timings[stream]!.hit = cs.contains("hit") && !cs.contains("fwd=")
        }
    }

    func responseData(stream: Int32, bytes: Int) {
        guard timings[stream] != nil else { return }
        if timings[stream]!.firstBodyByte == nil { timings[stream]!.firstBodyByte = engine.now }
        timings[stream]!.bytes += bytes
    }

    func streamClosed(stream: Int32, errorCode: UInt32) {
        guard let t = timings.removeValue(forKey: stream) else { return }
        if t.timedOut { return }
        guard errorCode == 0, t.head != nil else { engine.recorder.error("reset"); return }
        engine.completed(t, status: t.status, bytes: t.bytes, hit: t.hit, now: engine.now)
    }
}
