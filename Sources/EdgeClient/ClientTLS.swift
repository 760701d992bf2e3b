import CEdgeTLS

/// A TLS client session (OpenSSL) with no I/O of its own: the caller lends it received ciphertext
/// (`withInput`, read in place) and drains what it seals, so any event loop (the ring) drives it. Verifies the server's certificate against
/// the given CA file (or the system's) and the name, offers ALPN.
public final class ClientTLS {
    /// One per process or per run: holds the trusted certificates and the ALPN list.
    public final class Context: @unchecked Sendable {
        let pointer: OpaquePointer
        /// `alpn`: most preferred first ("h2", "http/1.1"). `caFile`: nil for the system's store.
        /// `verify: false` accepts any certificate (a test rig's explicit, logged choice).
        public init(caFile: String?, alpn: [String], verify: Bool = true) throws {
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
            if !verify { edge_tls_client_ctx_skip_verify(p) }
            pointer = p
        }
        deinit { edge_tls_ctx_free(pointer) }
    }

    /// A resumable session, offered by the next connection to the same server (a pool's).
    public final class Session: @unchecked Sendable {
        let pointer: UnsafeMutableRawPointer
        init(_ p: UnsafeMutableRawPointer) { pointer = p }
        deinit { edge_tls_session_free(pointer) }
    }

    /// The session to resume next time, once the server has given a resumable one (TLS 1.3:
    /// its ticket arrives after the handshake).
    public func resumableSession() -> Session? { edge_tls_get_session(ssl).map(Session.init) }
    public var resumed: Bool { edge_tls_session_reused(ssl) != 0 }
    public var version: String { String(cString: edge_tls_version(ssl)) }
    /// Why the server's certificate was refused; nil when it was not.
    public var verifyError: String? {
        var out = [CChar](repeating: 0, count: 256)
        edge_tls_verify_error(ssl, &out, 256)
        let text = String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return text.isEmpty ? nil : text
    }

    let context: Context
    let ssl: OpaquePointer
    /// The handshake or a record failed (bad certificate, alert): the connection is dead.
    public private(set) var failed = false
    public private(set) var closeNotifyReceived = false

    /// `resuming`: a session from an earlier connection to the same server, offered in the
    /// ClientHello (queued here).
    public init(context: Context, serverName: String, resuming: Session? = nil) throws {
        guard let ssl = edge_tls_client_new(context.pointer, serverName) else {
            throw ClientTLSError(message: "cannot start a TLS session for \(serverName)")
        }
        self.context = context
        self.ssl = ssl
        if let resuming { edge_tls_offer_session(ssl, resuming.pointer) }
        _ = edge_tls_read(ssl, nil, 0)   // queues the ClientHello
    }
    deinit {
        edge_tls13_opener_free(opener)
        edge_tls_free(ssl)
    }

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

    /// Opens the server's TLS 1.3 records in the caller's buffer, in place, once the handshake is
    /// done (`takeOverReading`): no copy into OpenSSL's record buffer, none out of it.
    private var opener: OpaquePointer?
    /// Whether `open` reads from now on (`read` does otherwise).
    public var opensRecords: Bool { opener != nil }
    /// Why the session failed, when `open` found out.
    public private(set) var failure: String?

    /// After the handshake, within `withInput`: when TLS 1.3 was negotiated, the server's records
    /// are opened by `open` from now on, and what OpenSSL left unread moves to the start of
    /// `buffer` (which may hold the lent bytes): its count. nil: `read` goes on, or (with
    /// `failed`) what was left does not fit.
    public func takeOverReading(into buffer: UnsafeMutableRawPointer, capacity: Int) -> Int? {
        guard opener == nil, !failed, handshakeDone, let o = edge_tls13_opener_take(ssl) else { return nil }
        let n = edge_tls_lend_take(ssl, buffer.assumingMemoryBound(to: UInt8.self), capacity)
        guard n >= 0 else {
            edge_tls13_opener_free(o)
            failed = true
            failure = "more than a receive buffer left after the handshake"
            return nil
        }
        opener = o
        return Int(n)
    }

    /// Opens the whole records at the start of `buffer` in place and gathers their application
    /// data at its front: `plaintext` bytes there, from `consumed` bytes of ciphertext; what
    /// follows `consumed` is the start of a record not yet whole (the caller moves it to the front
    /// once it has read the plaintext). Stops at a failure (`failed`, `failure`) or a
    /// close_notify (`closeNotifyReceived`); the plaintext before it is still returned.
    public func openRecords(_ buffer: UnsafeMutableRawPointer, count: Int) -> (plaintext: Int, consumed: Int) {
        var consumed = 0
        var gathered = 0
        while true {
            let r = open(buffer + consumed, count: count - consumed)
            if r.consumed == 0 { break }
            if r.plainCount > 0 {
                // Moved down over the headers and tags already read (the regions may overlap): the
                // caller hands the session one batch, which cost less than one call per record.
                (buffer + gathered).copyMemory(from: buffer + consumed + r.plainOffset, byteCount: r.plainCount)
                gathered += r.plainCount
            }
            consumed += r.consumed
        }
        return (gathered, consumed)
    }

    /// One record opened in place: `consumed` ciphertext bytes (0: no whole record yet), and its
    /// application data at `buffer + plainOffset` (`plainCount` may be 0). A damaged, forged or
    /// unexpected record, or an alert, marks the session failed (`failure` says why); a
    /// close_notify sets `closeNotifyReceived`. Both return consumed 0.
    func open(_ buffer: UnsafeMutableRawPointer, count: Int) -> (consumed: Int, plainOffset: Int, plainCount: Int) {
        guard let opener, !failed, !closeNotifyReceived else { return (0, 0, 0) }
        var offset = 0
        var length = 0
        let r = edge_tls13_open(opener, ssl, buffer.assumingMemoryBound(to: UInt8.self), count, &offset, &length)
        if r >= 0 { return (Int(r), offset, length) }
        switch r {
        case Int32(EDGE_TLS13_CLOSED): closeNotifyReceived = true
        case Int32(EDGE_TLS13_ALERT): failed = true; failure = "alert from the server"
        case Int32(EDGE_TLS13_FRAGMENTED):
            failed = true; failure = "a post-handshake message split across records"
        default: failed = true; failure = "a damaged or forged record"
        }
        return (0, 0, 0)
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
