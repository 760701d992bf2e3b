import CEdgeTLS
import Foundation
import XCTest

/// A server seals its own TLS 1.3 records once the handshake is done (`edge_tls13_sealer_take`,
/// `edge_tls13_seal`), and re-seals the few records OpenSSL still writes (`edge_tls13_transcribe`).
/// Checked by OpenSSL's own client, record layer and all, over memory BIOs.
final class ServerTLSSealTests: XCTestCase {
    final class Pair {
        let serverContext: OpaquePointer
        let clientContext: OpaquePointer
        let server: OpaquePointer
        let client: OpaquePointer
        let sealer: OpaquePointer

        init() throws {
            let cert = TLSFixtures.certificate
            let key = TLSFixtures.key
            var error = [CChar](repeating: 0, count: 256)
            serverContext = try XCTUnwrap(edge_tls_ctx_new(cert, key, 1, &error, 256))
            let alpn: [UInt8] = [2] + Array("h2".utf8)
            clientContext = try XCTUnwrap(edge_tls_client_ctx_new(cert, alpn, UInt32(alpn.count), &error, 256))
            server = try XCTUnwrap(edge_tls_new(serverContext))
            client = try XCTUnwrap(edge_tls_client_new(clientContext, "edge.test"))
            var scratch = [UInt8](repeating: 0, count: 64)
            var sealer: OpaquePointer?
            for _ in 0..<8 where sealer == nil {
                _ = Pair.clientReads(client, TLSFixtures.drain(server), into: &scratch)
                let fromClient = TLSFixtures.drain(client)
                if !fromClient.isEmpty { _ = edge_tls_feed(server, fromClient, Int32(fromClient.count)) }
                _ = edge_tls_read(server, &scratch, Int32(scratch.count))
                if edge_tls_handshake_done(server) != 0 {
                    // As the worker does: what OpenSSL wrote (the session tickets) goes first.
                    tickets = TLSFixtures.drain(server)
                    sealer = edge_tls13_sealer_take(server)
                }
            }
            self.sealer = try XCTUnwrap(sealer, "TLS 1.3: the server seals its records itself")
        }
        var tickets: [UInt8] = []

        deinit {
            edge_tls13_sealer_free(sealer)
            edge_tls_free(server)
            edge_tls_free(client)
            edge_tls_ctx_free(serverContext)
            edge_tls_ctx_free(clientContext)
        }

        /// OpenSSL's client reads `ciphertext`: the plaintext, and its last read's result (-2
        /// close_notify, -1 an error, 0 wants more).
        static func clientReads(
            _ client: OpaquePointer, _ ciphertext: [UInt8], into scratch: inout [UInt8]
        ) -> (
            [UInt8], Int32
        ) {
            var plaintext: [UInt8] = []
            var last: Int32 = 0
            ciphertext.withUnsafeBytes { bytes in
                edge_tls_lend(client, bytes.baseAddress, Int32(bytes.count))
                while true {
                    last = edge_tls_read(client, &scratch, Int32(scratch.count))
                    guard last > 0 else { break }
                    plaintext += scratch[..<Int(last)]
                }
                _ = edge_tls_lend_end(client)
            }
            return (plaintext, last)
        }

        /// The server's application data sealed by the sealer, 16 KiB records at a time.
        func seal(_ bytes: [UInt8]) -> [UInt8] {
            var out: [UInt8] = []
            var record = [UInt8](repeating: 0, count: 16384 + 22)
            var at = 0
            while at < bytes.count {
                let n = min(16384, bytes.count - at)
                // In two pieces, as a connection seals what it staged and then the bytes it is given.
                let staged = min(n, at % 53)
                let k = bytes[at..<at + n].withUnsafeBytes {
                    edge_tls13_seal(sealer, $0.baseAddress, staged, $0.baseAddress! + staged, n - staged, &record)
                }
                XCTAssertEqual(k, n + 22)
                out += record[..<k]
                at += n
            }
            return out
        }

        /// What OpenSSL wrote after the take-over, sealed again.
        func transcribed() -> [UInt8] {
            let pending = Int(edge_tls_pending_out(server))
            var out = [UInt8](repeating: 0, count: pending)
            let n = edge_tls13_transcribe(sealer, server, &out, pending)
            XCTAssertGreaterThanOrEqual(n, 0)
            return Array(out[..<max(0, n)])
        }
    }

    static func pattern(_ count: Int, seed: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ seed &+ $0 >> 11) }
    }

    func testSealedRecordsFollowTheSessionTicketsAndOpenInOpenSSL() throws {
        let pair = try Pair()
        XCTAssertFalse(pair.tickets.isEmpty, "OpenSSL's session tickets, sealed before the take-over")
        var scratch = [UInt8](repeating: 0, count: 65536)
        let sent = Self.pattern(100_000, seed: 5)
        let (got, last) = Pair.clientReads(pair.client, pair.tickets + pair.seal(sent), into: &scratch)
        XCTAssertEqual(last, 0)
        XCTAssertTrue(got == sent, "OpenSSL's client reads every byte the sealer sealed")
    }

    func testAKeyUpdateTheClientAsksForIsAnsweredUnderTheSealersKeys() throws {
        let pair = try Pair()
        var scratch = [UInt8](repeating: 0, count: 65536)
        _ = Pair.clientReads(pair.client, pair.tickets + pair.seal(Self.pattern(1000, seed: 1)), into: &scratch)
        // The client updates its keys and asks the server to: OpenSSL's server answers with a
        // key update of its own, written under the state it stopped using at the take-over.
        XCTAssertEqual(edge_tls_key_update(pair.client, 1), 0)
        let update = TLSFixtures.drain(pair.client)
        _ = edge_tls_feed(pair.server, update, Int32(update.count))
        XCTAssertEqual(edge_tls_read(pair.server, &scratch, Int32(scratch.count)), 0)
        let answer = pair.transcribed()
        XCTAssertFalse(answer.isEmpty, "the server's key update")
        // Everything after it is sealed under the next key, which the client also moves to.
        let after = Self.pattern(50_000, seed: 2)
        let (got, last) = Pair.clientReads(pair.client, answer + pair.seal(after), into: &scratch)
        XCTAssertEqual(last, 0)
        XCTAssertTrue(got == after)
    }

    func testCloseNotifyFromOpenSSLReachesTheClient() throws {
        let pair = try Pair()
        var scratch = [UInt8](repeating: 0, count: 65536)
        edge_tls_shutdown(pair.server)
        let (got, last) = Pair.clientReads(
            pair.client, pair.tickets + pair.seal(Array("bye".utf8)) + pair.transcribed(), into: &scratch)
        XCTAssertEqual(got, Array("bye".utf8))
        XCTAssertEqual(last, -2, "close_notify, read as such")
    }

    func testASealedRecordWithAChangedByteIsRefusedByTheClient() throws {
        let pair = try Pair()
        var scratch = [UInt8](repeating: 0, count: 65536)
        var sealed = pair.seal(Self.pattern(3000, seed: 3))
        sealed[100] ^= 0x80
        let (got, last) = Pair.clientReads(pair.client, pair.tickets + sealed, into: &scratch)
        XCTAssertEqual(got, [])
        XCTAssertEqual(last, -1)
    }
}
