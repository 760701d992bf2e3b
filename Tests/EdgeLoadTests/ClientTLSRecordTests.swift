import CEdgeTLS
import EdgeClient
import Foundation
import XCTest

/// The TLS client opens the server's TLS 1.3 records in its own receive buffer once the handshake
/// is done (`takeOverReading`, `openRecords`). Driven against OpenSSL's server over memory BIOs:
/// every byte the server seals must come out, however the receives cut the stream, through key
/// updates, and a damaged record or an alert must end the session.
final class ClientTLSRecordTests: XCTestCase {
    /// An OpenSSL server and the client, handshaken, the client's receive buffer beside it.
    final class Pair {
        let serverContext: OpaquePointer
        let server: OpaquePointer
        let client: ClientTLS
        let capacity = 1 << 18
        let buffer: UnsafeMutableRawPointer
        /// Ciphertext not yet opened, at the front of `buffer`.
        var pending = 0
        /// What the server sealed after the client finished its handshake, left over in the same
        /// receive (moved to the buffer by the take-over).
        var leftover = 0

        init(trailing: [UInt8] = []) throws {
            let cert = TLSFixtures.certificate
            let key = TLSFixtures.key
            var error = [CChar](repeating: 0, count: 256)
            serverContext = try XCTUnwrap(edge_tls_ctx_new(cert, key, 1, &error, 256))
            server = try XCTUnwrap(edge_tls_new(serverContext))
            client = try ClientTLS(context: ClientTLS.Context(caFile: cert, alpn: ["h2"]), serverName: "edge.test")
            buffer = .allocate(byteCount: capacity, alignment: 16)
            var scratch = [UInt8](repeating: 0, count: 16)
            for _ in 0..<8 where !client.opensRecords {
                let hello = drain(client)
                if !hello.isEmpty {
                    XCTAssertEqual(edge_tls_feed(server, hello, Int32(hello.count)), Int32(hello.count))
                }
                _ = edge_tls_read(server, &scratch, 0)
                var flight = drainServer()
                guard !flight.isEmpty else { continue }
                flight += trailing
                let taken: Int? = flight.withUnsafeBytes { bytes in
                    client.withInput(bytes) {
                        _ = client.read(into: UnsafeMutableRawBufferPointer(start: nil, count: 0))
                        return client.handshakeDone ? client.takeOverReading(into: buffer, capacity: capacity) : 0
                    }
                }
                leftover = try XCTUnwrap(taken, "the take-over after the handshake")
            }
            XCTAssertTrue(client.opensRecords, "TLS 1.3: the client opens the records itself")
            pending = leftover
            // The client's Finished, so that the server's handshake ends too.
            let finished = drain(client)
            XCTAssertEqual(edge_tls_feed(server, finished, Int32(finished.count)), Int32(finished.count))
            XCTAssertEqual(edge_tls_read(server, &scratch, Int32(scratch.count)), 0)
            XCTAssertEqual(edge_tls_handshake_done(server), 1)
        }

        deinit {
            buffer.deallocate()
            edge_tls_free(server)
            edge_tls_ctx_free(serverContext)
        }

        func drain(_ tls: ClientTLS) -> [UInt8] {
            var out: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65536)
            while tls.hasOutput {
                let n = chunk.withUnsafeMutableBytes { tls.drain(into: $0) }
                out += chunk[..<n]
            }
            return out
        }

        func drainServer() -> [UInt8] { TLSFixtures.drain(server) }

        func serverSeals(_ bytes: [UInt8]) -> [UInt8] {
            var done = 0
            while done < bytes.count {
                let n = bytes[done...].withUnsafeBytes { edge_tls_write(server, $0.baseAddress, Int32($0.count)) }
                XCTAssertGreaterThan(n, 0)
                guard n > 0 else { break }
                done += Int(n)
            }
            return drainServer()
        }

        /// Ciphertext received in pieces of the given sizes (the last repeated): the plaintext
        /// opened, as the load generator's connection does it.
        func receive(_ ciphertext: [UInt8], cuts: [Int]) -> [UInt8] {
            var plaintext: [UInt8] = []
            var at = 0
            var cut = 0
            while at < ciphertext.count {
                let size = min(cuts[min(cut, cuts.count - 1)], ciphertext.count - at, capacity - pending)
                cut += 1
                ciphertext[at..<at + size].withUnsafeBytes {
                    (buffer + pending).copyMemory(from: $0.baseAddress!, byteCount: size)
                }
                at += size
                pending += size
                let r = client.openRecords(buffer, count: pending)
                plaintext += UnsafeRawBufferPointer(start: buffer, count: r.plaintext)
                if client.failed || client.closeNotifyReceived { break }
                pending -= r.consumed
                buffer.copyMemory(from: buffer + r.consumed, byteCount: pending)
            }
            return plaintext
        }
    }

    static func pattern(_ count: Int, seed: UInt8 = 1) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed) &+ $0 >> 9) }
    }

    func testEveryByteComesOutHoweverTheReceivesCutTheRecords() throws {
        for cuts in [[1], [7, 3], [4096], [16_406], [16_407, 1], [65_536], [200_000]] {
            let pair = try Pair()
            let sent = Self.pattern(150_000)
            // The server's session tickets come first, in records the client skips.
            let opened = pair.receive(pair.drainServer() + pair.serverSeals(sent), cuts: cuts)
            XCTAssertFalse(pair.client.failed, "cuts \(cuts): \(pair.client.failure ?? "")")
            XCTAssertEqual(opened.count, sent.count, "cuts \(cuts)")
            XCTAssertTrue(opened == sent, "cuts \(cuts): the bytes differ")
            XCTAssertEqual(pair.pending, 0)
        }
    }

    func testAKeyUpdateFromTheServerIsFollowedAndAnsweredWhenItAsks() throws {
        let pair = try Pair()
        let first = Self.pattern(40_000, seed: 2)
        var ciphertext = pair.drainServer() + pair.serverSeals(first)
        XCTAssertEqual(edge_tls_key_update(pair.server, 1), 0)
        let second = Self.pattern(40_000, seed: 3)
        ciphertext += pair.drainServer() + pair.serverSeals(second)
        let opened = pair.receive(ciphertext, cuts: [9_000])
        XCTAssertFalse(pair.client.failed, pair.client.failure ?? "")
        XCTAssertTrue(opened == first + second, "the records after the key update open with the next key")

        // Asked to, the client updated its own keys: the server reads what it sends next.
        XCTAssertTrue(pair.client.hasOutput, "the client's key update")
        let ping = Array("ping".utf8)
        XCTAssertTrue(ping.withUnsafeBytes { pair.client.write($0) })
        let fromClient = pair.drain(pair.client)
        XCTAssertEqual(edge_tls_feed(pair.server, fromClient, Int32(fromClient.count)), Int32(fromClient.count))
        var got = [UInt8](repeating: 0, count: 16)
        let n = edge_tls_read(pair.server, &got, Int32(got.count))
        XCTAssertEqual(Array(got[..<max(0, Int(n))]), ping)

        let third = Self.pattern(20_000, seed: 4)
        XCTAssertTrue(pair.receive(pair.serverSeals(third), cuts: [5]) == third)
        XCTAssertFalse(pair.client.failed)
    }

    func testAChangedByteInARecordFailsTheSession() throws {
        let pair = try Pair()
        let good = pair.drainServer() + pair.serverSeals(Self.pattern(1_000))
        var bad = pair.serverSeals(Self.pattern(1_000, seed: 9))
        bad[bad.count / 2] ^= 0x01
        let opened = pair.receive(good + bad + pair.serverSeals(Self.pattern(10)), cuts: [100_000])
        XCTAssertTrue(pair.client.failed)
        XCTAssertEqual(pair.client.failure, "a damaged or forged record")
        XCTAssertTrue(opened == Self.pattern(1_000), "what came before the damaged record, and nothing after")
    }

    func testARecordLongerThanTLSAllowsFailsTheSession() throws {
        let pair = try Pair()
        _ = pair.receive(pair.drainServer(), cuts: [100_000])
        // 2^14 + 256 bytes of ciphertext at most (RFC 8446 §5.2): this header claims one more.
        let length = 16_384 + 256 + 1
        let header: [UInt8] = [23, 3, 3, UInt8(length >> 8), UInt8(length & 0xFF)]
        _ = pair.receive(header, cuts: [5])
        XCTAssertTrue(pair.client.failed, "refused from the header, before the record's bytes arrive")
    }

    func testCloseNotifyEndsTheStreamAfterTheBytesBeforeIt() throws {
        let pair = try Pair()
        var ciphertext = pair.drainServer() + pair.serverSeals(Array("bye".utf8))
        edge_tls_shutdown(pair.server)
        ciphertext += pair.drainServer()
        let opened = pair.receive(ciphertext, cuts: [100_000])
        XCTAssertEqual(opened, Array("bye".utf8))
        XCTAssertTrue(pair.client.closeNotifyReceived)
        XCTAssertFalse(pair.client.failed)
    }

    func testWhatTheHandshakeLeftUnreadMovesToTheBufferAtTheTakeOver() throws {
        // Bytes after the server's last handshake record, in the same receive: they stay for the
        // records that follow (here, the start of one), in front of them.
        let sealed = try Pair().serverSeals(Self.pattern(10))   // a record from another session: only its header matters
        let pair = try Pair(trailing: Array(sealed[..<3]))
        XCTAssertEqual(pair.leftover, 3)
        XCTAssertEqual(Array(UnsafeRawBufferPointer(start: pair.buffer, count: 3)), Array(sealed[..<3]))
    }
}
