import CEdgeRing
import CEdgeTLS
import Glibc
import EdgeIO
import EdgeHTTP

/// Transport: accepting, receiving (TLS unwrapped, the protocol detected), sending and closing.
extension Worker {
    // MARK: accept

    func armAccept(_ i: Int) {
        guard !draining, !listeners[i].armed else { return }
        listeners[i].armed = true
        ring.acceptMultishot(fd: listeners[i].fd, UserData(kind: OpKind.accept, slot: UInt32(i)))
    }

    func onAccept(listener i: Int, _ result: Int32, more: Bool) {
        if !more { listeners[i].armed = false }
        if result < 0 {
            let error = Errno(-result)
            precondition(!error.isServerBug, "accept failed with \(error) on listener \(i)")
            // EMFILE/ENFILE/ENOMEM: back off to the next tick instead of spinning.
            if !error.isRetryable && error != .cancelled { acceptBackoff = true }
            if !listeners[i].armed && !acceptBackoff { armAccept(i) }
            return
        }
        if !listeners[i].armed && !acceptBackoff { armAccept(i) }
        let fd = result
        guard !draining else { ring.close(fd: fd, UserData(kind: OpKind.ignore, slot: 0)); return }
        guard let c = takeSlot() else {
            rejectedConnections += 1
            counters.add(MetricLayout.connectionsRefused)
            ring.close(fd: fd, UserData(kind: OpKind.ignore, slot: 0))
            return
        }
        c.fd = fd
        c.life.accept()
        c.acceptedMicroseconds = nowMicroseconds
        c.lastSendProgressMicroseconds = nowMicroseconds
        ring.setNoDelay(fd: fd)
        c.client = ring.peerAddress(fd: fd)
        liveConnections += 1   // counted before anything can fail: close() and release() balance it
        counters.add(MetricLayout.connectionsAccepted)
        counters.set(MetricLayout.connectionsOpen, liveConnections)
        if listeners[i].isTLS, let ctx = tlsContext {
            guard let ssl = edge_tls_new(ctx.pointer) else { close(c); return }
            c.tls = ssl
        }
        postRecv(c)
    }

    func takeSlot() -> Connection? {
        // Live connections, not slots: a reload may lower the bound below the slots allocated.
        guard liveConnections < limits.connectionsPerWorkerMax else { return nil }
        if let s = freeSlots.popLast() { return connections[Int(s)] }
        let c = Connection(
            slot: UInt32(connections.count), recvBufferBytes: limits.recvBufferBytes, outputCapacity: 16384)
        connections.append(c)
        return c
    }

    // MARK: receive

    func postRecv(_ c: Connection) {
        if case .http1(let h1) = c.frontEnd, h1.holdsEnoughInput { return }
        guard c.life.submitReceive() else { return }   // closing, finishing, or one already in flight
        ring.recv(
            fd: c.fd, into: c.recvBuffer, length: c.recvBufferBytes,
            UserData(kind: OpKind.recv, slot: c.slot, generation: c.generation))
    }

    func onRecv(_ c: Connection, _ result: Int32) {
        let count: Int
        switch TransferOutcome(receiveResult: result) {
        case .bytes(let n): count = n
        case .retry: postRecv(c); return
        case .peerClosed, .failed: close(c); return   // the peer closed, or the connection is gone
        }
        let bytes = UnsafeRawBufferPointer(start: c.recvBuffer, count: count)
        if let tls = c.tls {
            if edge_tls_feed(tls, bytes.baseAddress, Int32(bytes.count)) < 0 { close(c); return }
            let wasDone = edge_tls_handshake_done(tls) != 0
            var handshakeSeen = wasDone
            while c.life.isOpen {
                let scratch = tlsPlaintextScratch
                let n = edge_tls_read(tls, scratch, 16384)
                // Before anything is sent under the new keys: TLS 1.3 records are sealed by the
                // connection itself from here on.
                if !handshakeSeen && edge_tls_handshake_done(tls) != 0 {
                    handshakeSeen = true
                    c.takeOverSealing()
                }
                if n > 0 {
                    if !wasDone { startNegotiated(c, tls) }
                    processPlaintext(c, UnsafeRawBufferPointer(start: scratch, count: Int(n)))
                }
                if n == 0 { break }
                if n < 0 { c.drainTLS(); c.life.finishAfterFlush(); flush(c); return }
            }
            // The server speaks first on HTTP/2 (SETTINGS), as soon as the handshake is done.
            if !wasDone && edge_tls_handshake_done(tls) != 0 { startNegotiated(c, tls) }
            guard c.drainTLS() else { close(c); return }
            flush(c)
        } else {
            processPlaintext(c, bytes)
        }
        if c.life.isOpen { postRecv(c) }
    }

    private static let h2Preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    /// The front end ALPN chose (HTTP/1.1 when the client offered nothing, or HTTP/2 is off).
    private func startNegotiated(_ c: Connection, _ tls: OpaquePointer) {
        guard case .undecided = c.frontEnd else { return }
        if edge_tls_alpn(tls) == 2 && config.server.http2 {
            startH2(c, initial: UnsafeRawBufferPointer(start: nil, count: 0))
        } else {
            startHTTP1(c)
        }
    }

    func processPlaintext(_ c: Connection, _ bytes: UnsafeRawBufferPointer) {
        switch c.frontEnd {
        case .http2(let h2):
            h2.receive(bytes)
            pump(c)
        case .http1(let h1):
            c.input.append(bytes)
            h1.received()
        case .undecided:
            c.input.append(bytes)
            let have = c.input.readable
            let k = min(have.count, Self.h2Preface.count)
            let prefixMatches = config.server.http2 && have.prefix(k).elementsEqual(Self.h2Preface.prefix(k))
            if prefixMatches && k < Self.h2Preface.count { return }   // wait for the rest of the preface
            if prefixMatches {
                let initial = ByteBuffer(capacity: c.input.count)
                initial.append(c.input.readable)
                c.input.clear()
                startH2(c, initial: initial.readable)
                pump(c)
            } else {
                startHTTP1(c).received()
            }
        }
    }

    func startH2(_ c: Connection, initial: UnsafeRawBufferPointer) {
        guard case .undecided = c.frontEnd else { return }
        guard let session = H2Session(host: self, connection: c, limits: limits) else { close(c); return }
        c.frontEnd = .http2(session)
        if initial.count > 0 { session.receive(initial) }
        pump(c)
    }

    @discardableResult
    func startHTTP1(_ c: Connection) -> HTTP1Session {
        let session = HTTP1Session(
            host: self, connection: c, limits: limits, idleSinceMicroseconds: c.acceptedMicroseconds)
        c.frontEnd = .http1(session)
        return session
    }

    // MARK: send

    func flush(_ c: Connection) {
        guard c.life.isOpen else { return }
        if c.tls != nil && !c.sealTLS() { close(c); return }
        guard let next = c.output.nextSend() else {
            if c.life.closesAfterFlush && c.output.isEmpty && !c.output.inFlight { close(c) }
            return
        }
        c.life.submitSend()
        let d = UserData(kind: OpKind.send, slot: c.slot, generation: c.generation)
        switch next {
        case .bytes(let bytes): ring.send(fd: c.fd, from: bytes.baseAddress!, length: bytes.count, d)
        case .message(let message): ring.sendMessage(fd: c.fd, message, d)
        }
    }

    func onSend(_ c: Connection, _ result: Int32) {
        // EFAULT is a server bug (the outcome traps on it) unless the send gathered bytes of a
        // file mapping: then the file was truncated under the response, which is cut.
        if result == Errno.badAddress.result && c.output.sendsFromFileMappings {
            truncatedFileSends += 1
            c.output.sent(0)
            close(c)
            return
        }
        switch TransferOutcome(sendResult: result) {
        case .bytes(let n):
            c.output.sent(n)
        case .retry:
            c.output.sent(0)
            flush(c)
            return
        case .peerClosed, .failed:
            c.output.sent(0)
            close(c)   // EPIPE, ECONNRESET, ...
            return
        }
        c.lastSendProgressMicroseconds = nowMicroseconds
        // Pipelined requests held back while their answers could not be queued.
        if case .http1(let h1) = c.frontEnd { h1.sendProgressed() }
        pump(c)
    }
}
