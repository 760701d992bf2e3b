import CEdgeTLS

/// A TLS client session (OpenSSL) with no I/O of its own: the caller lends it received ciphertext
/// (`withInput`, read in place) and drains what it seals, so any event loop (the ring) drives it. Verifies the server's certificate against
/// the given CA file (or the system's) and the name, offers ALPN.
public final class ClientTLS {
    /// One per process or per run: holds the trusted certificates and the ALPN list.
    public final class Context: @unchecked Sendable {
        let pointer: OpaquePointer
        /// `alpn`: most preferred first ("h2", "http/1.1"). `caFile`: nil for the system's store.
        public init(caFile: String?, alpn: [String]) throws {
            var wire: [UInt8] = []
            for name in alpn {
                precondition((1...255).contains(name.utf8.count), "an ALPN name is 1 to 255 bytes")
                wire.append(UInt8(name.utf8.count)); wire += name.utf8
            }
            var error = [CChar](repeating: 0, count: 512)
            guard let p = edge_tls_client_ctx_new(caFile, wire, UInt32(wire.count), &error, 512) else {
                throw ClientTLSError(
                    message: String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
            }
            pointer = p
        }
        deinit { edge_tls_ctx_free(pointer) }
    }

    let context: Context
    let ssl: OpaquePointer
    /// The handshake or a record failed (bad certificate, alert): the connection is dead.
    public private(set) var failed = false
    public private(set) var closeNotifyReceived = false

    public init(context: Context, serverName: String) throws {
        guard let ssl = edge_tls_client_new(context.pointer, serverName) else {
            throw ClientTLSError(message: "cannot start a TLS session for \(serverName)")
        }
        self.context = context
        self.ssl = ssl
        _ = edge_tls_read(ssl, nil, 0)   // queues the ClientHello
    }
    deinit { edge_tls_free(ssl) }

    public var handshakeDone: Bool { edge_tls_handshake_done(ssl) != 0 }
    /// Whether the server chose h2 by ALPN.
    public var negotiatedH2: Bool { edge_tls_alpn(ssl) == 2 }

    /// Lends ciphertext from the socket for the `read`s `body` makes: they decrypt from it in
    /// place; what they leave unread is copied and kept for the next call (at most 1 MiB, or the
    /// session fails). `bytes` may be reused once this returns.
    public func withInput<R>(_ bytes: UnsafeRawBufferPointer, _ body: () -> R) -> R {
        precondition(bytes.count <= Int(Int32.max), "a receive buffer under 2 GiB")
        edge_tls_lend(ssl, bytes.baseAddress, Int32(bytes.count))
        let r = body()
        if edge_tls_lend_end(ssl) != 0 { failed = true }
        return r
    }

    /// Plaintext decrypted so far, into `buffer`: the count, 0 when nothing is ready. Marks the
    /// session failed on an error. Within `withInput`, or from what an earlier one kept.
    public func read(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        guard !failed else { return 0 }
        let n = edge_tls_read(ssl, buffer.baseAddress, Int32(buffer.count))
        if n == -2 { closeNotifyReceived = true; return 0 }
        if n < 0 { failed = true; return 0 }
        return Int(n)
    }

    /// Seals plaintext (after the handshake); false on an error.
    public func write(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var done = 0
        while done < bytes.count {
            let n = edge_tls_write(ssl, bytes.baseAddress! + done, Int32(bytes.count - done))
            guard n > 0 else { failed = true; return false }
            done += Int(n)
        }
        return true
    }

    /// Ciphertext to send, into `buffer`: the count (0: nothing pending).
    public func drain(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        Int(edge_tls_drain(ssl, buffer.baseAddress, Int32(buffer.count)))
    }
    public var hasOutput: Bool { edge_tls_pending_out(ssl) > 0 }
}

public struct ClientTLSError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}
