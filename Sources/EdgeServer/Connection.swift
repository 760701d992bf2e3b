import CEdgeTLS
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

    /// Queues plaintext for the peer. On TLS it is staged and sealed at flush time in full-size
    /// records, so many small HTTP/2 frames do not each become a record of their own.
    func write(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        if tls != nil { tlsPlaintext.append(bytes) } else { output.pending.append(bytes) }
    }

    /// Encrypts the staged plaintext into the output queue, 16 KiB records at a time. False when
    /// OpenSSL refuses: the connection cannot send any more and must be closed.
    func sealTLS() -> Bool {
        guard let tls, !tlsPlaintext.isEmpty else { return true }
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

    /// Moves ciphertext (handshake or records) from OpenSSL's memory BIO to the output queue.
    func drainTLS() {
        guard let tls else { return }
        while true {
            let pending = Int(edge_tls_pending_out(tls))
            if pending <= 0 { break }
            let w = output.pending.reserve(pending)
            let n = edge_tls_drain(tls, w, Int32(pending))
            if n <= 0 { break }
            output.pending.commit(Int(n))
        }
    }

    /// Forgets the connection that held the slot (after `life.release()`).
    func reset() {
        fd = -1
        if let tls { edge_tls_free(tls); self.tls = nil }
        frontEnd = .undecided
        input.clear(); input.shrink(to: 4096)
        tlsPlaintext.clear(); tlsPlaintext.shrink(to: 4096)
        output.sending.clear(); output.pending.clear(); output.inFlight = false
        output.sending.shrink(to: 16384); output.pending.shrink(to: 16384)
        client = "-"
    }
}
