import CEdgeTLS
import EdgeIO
import Foundation

/// What a simulated client writes its requests into and reads its responses from: the
/// connection itself (cleartext), or TLS over it.
protocol ClientPipe: AnyObject {
    func write(_ bytes: [UInt8])
    /// The plaintext the server sent that the client has not taken yet.
    func take() -> [UInt8]
    func close()
    var closedByServer: Bool { get }
    var wasReset: Bool { get }
}

extension ClientPipe {
    func write(_ text: String) { write(Array(text.utf8)) }
}

extension SimulatedIO.Peer: ClientPipe {}

/// The test certificate (CN edge.test) and its key: see Fixtures/README.md.
enum TestCertificate {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").path
    static let certificatePath = directory + "/test-cert.pem"
    static let keyPath = directory + "/test-key.pem"
    static let serverName = "edge.test"
}

/// A TLS client (OpenSSL: `edge_tls_client_new`, ciphertext lent in, output drained) on a simulated connection. It
/// verifies the server's certificate against the test certificate, offers ALPN, and seals what
/// the test writes; plaintext written before the handshake is done waits for it.
final class TLSClientPipe: ClientPipe {
    let peer: SimulatedIO.Peer
    private let context: OpaquePointer
    private let ssl: OpaquePointer
    private var unsent: [UInt8] = []
    private var plaintext: [UInt8] = []
    /// The handshake or a record failed (an alert, a bad certificate): the connection is dead.
    private(set) var failed = false
    private(set) var peerSentCloseNotify = false

    /// `alpn`: the protocols to offer, most preferred first ("h2", "http/1.1").
    init(peer: SimulatedIO.Peer, alpn: [String], serverName: String = TestCertificate.serverName) throws {
        self.peer = peer
        var wire: [UInt8] = []
        for name in alpn { wire.append(UInt8(name.utf8.count)); wire += name.utf8 }
        var error = [CChar](repeating: 0, count: 256)
        guard
            let context = edge_tls_client_ctx_new(
                TestCertificate.certificatePath, wire, UInt32(wire.count), &error, 256)
        else {
            throw TLSClientError(message: nulTerminatedText(error))
        }
        guard let ssl = edge_tls_client_new(context, serverName) else {
            edge_tls_ctx_free(context)
            throw TLSClientError(message: "edge_tls_client_new failed")
        }
        self.context = context
        self.ssl = ssl
        advance()   // the ClientHello
    }

    deinit {
        edge_tls_free(ssl)
        edge_tls_ctx_free(context)
    }

    var handshakeDone: Bool { edge_tls_handshake_done(ssl) != 0 }
    /// 2: the server chose h2; 1: HTTP/1.1 (or nothing).
    var negotiatedProtocol: Int { Int(edge_tls_alpn(ssl)) }

    func write(_ bytes: [UInt8]) {
        unsent += bytes
        advance()
    }

    func take() -> [UInt8] {
        advance()
        defer { plaintext.removeAll() }
        return plaintext
    }

    func close() {
        if !failed && handshakeDone { edge_tls_shutdown(ssl); sendCiphertext() }
        peer.close()
    }

    var closedByServer: Bool { peer.closedByServer }
    var wasReset: Bool { peer.wasReset }

    /// Feeds what the server sent, runs the handshake, reads plaintext, seals what waits, and
    /// hands the ciphertext to the connection.
    private func advance() {
        guard !failed else { return }
        let received = peer.take()
        var buffer = [UInt8](repeating: 0, count: 16384)
        received.withUnsafeBytes { lent in
            // The ciphertext is lent for the reads below; what they leave is kept by the session.
            edge_tls_lend(ssl, lent.baseAddress, Int32(lent.count))
            while true {
                let n = edge_tls_read(ssl, &buffer, Int32(buffer.count))
                if n > 0 { plaintext += buffer[0..<Int(n)]; continue }
                if n == -2 { peerSentCloseNotify = true } else if n < 0 { failed = true }
                break
            }
            if edge_tls_lend_end(ssl) != 0 { failed = true }
        }
        while handshakeDone && !unsent.isEmpty && !failed {
            let n = edge_tls_write(ssl, unsent, Int32(unsent.count))   // a record at a time
            if n > 0 { unsent.removeFirst(Int(n)) } else { failed = true }
        }
        sendCiphertext()
    }

    private func sendCiphertext() {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = edge_tls_drain(ssl, &buffer, Int32(buffer.count))
            if n <= 0 { break }
            out += buffer[0..<Int(n)]
        }
        if !out.isEmpty && !peer.closedByServer && !peer.wasReset { peer.write(out) }
    }
}

struct TLSClientError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// The text of a C error buffer, up to its NUL.
func nulTerminatedText(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
