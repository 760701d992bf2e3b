import CEdgeTLS
import EdgeAuthToken
import EdgeHTTP

/// A client connection. It lives in a fixed slot of its worker; every completion that names the
/// slot carries the generation it was submitted under, so a completion for a dead connection is
/// recognised and ignored. The slot is reused only when no operation on it is in flight.
final class Connection {
    let slot: UInt32
    /// Open, closing or free, and what the kernel still holds: see `ConnectionLife`.
    var life = ConnectionLife()
    var generation: UInt32 { life.generation }
    /// Open and still the connection a waiter registered for (not a later one in the same slot).
    func isCurrent(_ waiterGeneration: UInt32) -> Bool { life.isOpen && life.generation == waiterGeneration }
    var fd: Int32 = -1
    var tls: OpaquePointer? = nil
    /// The protocol spoken, and its state.
    var frontEnd = FrontEnd.undecided
    let recvBuffer: UnsafeMutableRawPointer
    let recvBufferBytes: Int
    let input: ByteBuffer
    let output: OutputQueue
    var client = "-"
    /// The client's country, looked up at its first region check (`Worker.clientCountry`).
    var geoCountry: CountryCode? = nil
    var geoLooked = false
    /// Whether the peer is a trusted proxy; nil until a region check asks.
    var geoPeerTrusted: Bool? = nil
    var acceptedMicroseconds: Int64 = 0
    var lastSendProgressMicroseconds: Int64 = 0

    init(slot: UInt32, recvBufferBytes: Int, outputCapacity: Int) {
        self.slot = slot
        self.recvBufferBytes = recvBufferBytes
        recvBuffer = .allocate(byteCount: recvBufferBytes, alignment: 64)
        input = ByteBuffer(capacity: 4096)
        output = OutputQueue(capacity: outputCapacity)
    }
    deinit { recvBuffer.deallocate() }

    var isHTTP2: Bool { if case .http2 = frontEnd { true } else { false } }

    var protocolName: String {
        if case .http2 = frontEnd { return tls == nil ? "h2c" : "h2" }
        return tls == nil ? "http/1.1" : "https/1.1"
    }

    /// Plaintext waiting to be sealed into TLS records (TLS connections only).
    let tlsPlaintext = ByteBuffer(capacity: 4096)

    /// Bytes queued for the peer, sealed or not.
    var queuedBytes: Int { output.count + tlsPlaintext.count }

    /// Queues plaintext for the peer. On TLS it is staged and sealed in full-size records (at
    /// flush time, or at once when a whole record is there), so many small HTTP/2 frames do not
    /// each become a record of their own.
    func write(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        guard tls != nil else { output.append(bytes); return }
        guard let sealer, tlsPlaintext.count + bytes.count >= Self.recordPlaintextMax else {
            tlsPlaintext.append(bytes)
            return
        }
        // Whole records are sealed at once, straight from the caller's bytes (a body's read
        // buffer or slice) behind what was staged: no copy of the body into the staging buffer.
        var rest = bytes
        while tlsPlaintext.count + rest.count >= Self.recordPlaintextMax {
            let staged = tlsPlaintext.readable
            let take = Self.recordPlaintextMax - staged.count
            let out = output.reserve(Self.recordPlaintextMax + 22)
            let sealed = edge_tls13_seal(
                sealer, staged.baseAddress, staged.count, rest.baseAddress!, take,
                out.assumingMemoryBound(to: UInt8.self))
            tlsPlaintext.clear()
            guard sealed > 0 else { sealingFailed = true; return }
            output.commit(sealed)
            rest = UnsafeRawBufferPointer(rebasing: rest[take...])
        }
        if rest.count > 0 { tlsPlaintext.append(rest) }
    }

    /// TLS records hold at most 2^14 bytes of plaintext (RFC 8446 §5.1).
    static let recordPlaintextMax = 16384
    /// A record could not be sealed: the next flush closes the connection.
    var sealingFailed = false

    /// Seals what the server sends once a TLS 1.3 handshake is done: straight into the output
    /// queue, one pass of the cipher, where OpenSSL sealed into its record buffer, copied that into
    /// its memory BIO, and `drainTLS` copied it out again. nil: OpenSSL seals (TLS 1.2).
    var sealer: OpaquePointer? = nil

    /// After the handshake: the write direction moves here from OpenSSL when it can (what
    /// OpenSSL wrote until now, its session tickets, is queued first).
    func takeOverSealing() {
        guard let tls, sealer == nil else { return }
        drainTLS()
        sealer = edge_tls13_sealer_take(tls)
    }

    /// Encrypts the staged plaintext into the output queue, 16 KiB records at a time. False when
    /// it cannot: the connection cannot send any more and must be closed.
    func sealTLS() -> Bool {
        guard !sealingFailed else { return false }
        guard let tls, !tlsPlaintext.isEmpty else { return true }
        if let sealer {
            while !tlsPlaintext.isEmpty {
                let chunk = tlsPlaintext.readable
                let n = min(chunk.count, Self.recordPlaintextMax)
                let out = output.reserve(n + 22)
                let sealed = edge_tls13_seal(
                    sealer, nil, 0, chunk.baseAddress!, n, out.assumingMemoryBound(to: UInt8.self))
                if sealed == 0 { tlsPlaintext.clear(); return false }
                output.commit(sealed)
                tlsPlaintext.consume(n)
            }
            return true
        }
        while !tlsPlaintext.isEmpty {
            let chunk = tlsPlaintext.readable
            let n = edge_tls_write(tls, chunk.baseAddress!, Int32(min(chunk.count, 16384)))
            if n <= 0 { tlsPlaintext.clear(); return false }
            tlsPlaintext.consume(Int(n))
            drainTLS()
        }
        return true
    }

    /// Reads no more requests; closes once the output is sent. On TLS, close_notify follows
    /// what is queued, so the client knows nothing was cut.
    func finishAfterFlush() {
        if let tls, sealTLS() { edge_tls_shutdown(tls); drainTLS() }
        life.finishAfterFlush()
    }

    func write(_ s: String) { var s = s; s.withUTF8 { write(UnsafeRawBufferPointer($0)) } }

    /// Below this, bytes read into a body's own buffer are copied into the output: lending the
    /// buffer means taking a fresh one for the next read, which costs more than the copy. Bytes
    /// borrowed from a slice or a mapping are always gathered: nothing replaces them.
    static let borrowBytesMin = 8192

    /// Queues the first `n` ready bytes of `body` and consumes them. On cleartext they are sent
    /// from where they are (the read buffer or slice), not copied; on TLS they are sealed at once.
    func writeBody(_ body: BodyStream, _ n: Int) {
        guard tls == nil, n >= Self.borrowBytesMin || body.readyIsBorrowed else {
            write(UnsafeRawBufferPointer(rebasing: body.buffered[0..<n]))
            body.consume(n)
            return
        }
        let (bytes, keepAlive, lent) = body.lend(n)
        output.appendBorrowed(bytes, keepAlive: keepAlive, lent: lent)
    }

    /// Moves ciphertext (handshake or records) from OpenSSL's memory BIO to the output queue;
    /// after the take-over, the few records OpenSSL still writes, sealed again by `sealer`. False
    /// when that fails: the connection cannot send any more.
    @discardableResult
    func drainTLS() -> Bool {
        guard let tls else { return true }
        if let sealer {
            let pending = Int(edge_tls_pending_out(tls))
            guard pending > 0 else { return true }
            let out = output.reserve(pending)
            let n = edge_tls13_transcribe(sealer, tls, out.assumingMemoryBound(to: UInt8.self), pending)
            guard n >= 0 else { return false }
            output.commit(n)
            return true
        }
        while true {
            let pending = Int(edge_tls_pending_out(tls))
            if pending <= 0 { break }
            let w = output.reserve(pending)
            let n = edge_tls_drain(tls, w, Int32(pending))
            if n <= 0 { break }
            output.commit(Int(n))
        }
        return true
    }

    /// Forgets the connection that held the slot (after `life.release()`).
    func reset() {
        fd = -1
        if let tls { edge_tls_free(tls); self.tls = nil }
        edge_tls13_sealer_free(sealer); sealer = nil; sealingFailed = false
        frontEnd = .undecided
        input.clear(); input.shrink(to: 4096)
        tlsPlaintext.clear(); tlsPlaintext.shrink(to: 4096)
        output.discard(shrinkingTo: 16384)
        client = "-"
        geoCountry = nil; geoLooked = false; geoPeerTrusted = nil
    }
}
