import EdgeIO
@testable import EdgeServer
import XCTest

/// TLS through the production transport on the simulated kernel: handshakes over memory, ALPN,
/// close_notify, the handshake timeout on the virtual clock, and clients that do not speak TLS.
/// The client is OpenSSL in client mode (`TLSClientPipe`), verifying the test certificate.
final class SimulatedTLSTests: XCTestCase {
    func edge(seed: UInt64, files: [String: [UInt8]] = [:]) throws -> SimulatedEdge {
        try SimulatedEdge(
            seed: seed, config: SimulatedHTTP1Tests.config(),
            files: Dictionary(uniqueKeysWithValues: files.map { ("/srv/origin" + $0.key, $0.value) }), tls: true)
    }

    /// Lets client and server talk for a few rounds (a TLS 1.3 handshake and a response need
    /// three): each round the server runs until idle, then the client reads and answers.
    func settle(_ edge: SimulatedEdge, _ client: TLSClientPipe, reader: inout ResponseReader) {
        for _ in 0..<8 {
            edge.runUntilIdle()
            reader.add(client.take())
        }
    }

    func testHTTPSKeepAliveThenCloseNotify() throws {
        let track = pseudoRandomBytes(120_000, seed: 41)
        let edge = try edge(seed: 41, files: ["/audio/a.bin": track])
        let client = try edge.connectTLS(alpn: ["http/1.1"])
        var reader = ResponseReader()
        let first = Expectation(path: "/audio/a.bin", content: track, range: "bytes=100-50099")
        client.write(first.request)
        settle(edge, client, reader: &reader)
        XCTAssertTrue(client.handshakeDone, "handshake over memory BIOs")
        XCTAssertEqual(client.negotiatedProtocol, 1, "ALPN http/1.1")
        first.check(try XCTUnwrap(reader.next()), "first response")
        XCTAssertFalse(client.closedByServer, "keep-alive")

        client.write("GET /audio/a.bin HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n")
        settle(edge, client, reader: &reader)
        let second = try XCTUnwrap(reader.next())
        XCTAssertEqual(second.status, 200)
        XCTAssertTrue(second.body == track, "the whole track, through TLS records")
        XCTAssertTrue(client.peerSentCloseNotify, "close_notify after the last response: nothing was cut")
        XCTAssertTrue(client.closedByServer)
        client.close()
        edge.runUntilIdle()
        edge.checkQuiescent("after an HTTPS connection")
        XCTAssertTrue(edge.accessLog.contains("\"protocol\":\"https/1.1\""))
    }

    func testALPNSelectsHTTP2() throws {
        let track = pseudoRandomBytes(70_000, seed: 42)
        let edge = try edge(seed: 42, files: ["/audio/a.bin": track])
        let pipe = try edge.connectTLS(alpn: ["h2", "http/1.1"])
        let h2 = H2Client(peer: pipe, windowBytes: 16384)
        let id = h2.get("/audio/a.bin", range: "bytes=0-39999")
        for _ in 0..<1000 where h2.streams[id]?.closed != true {
            h2.exchange()
            edge.runUntilIdle()
        }
        XCTAssertEqual(pipe.negotiatedProtocol, 2, "ALPN h2")
        let stream = try XCTUnwrap(h2.streams[id])
        XCTAssertEqual(stream.status, 206)
        XCTAssertTrue(stream.body == Array(track[0..<40000]))
        pipe.close()
        edge.runUntilIdle()
        edge.checkQuiescent("after an h2 connection")
        XCTAssertTrue(edge.accessLog.contains("\"protocol\":\"h2\""))
    }

    /// A client that starts a handshake and stops: closed at header_timeout_milliseconds (2 s
    /// here), not before, on the virtual clock.
    func testStalledHandshakeTimesOut() throws {
        let edge = try edge(seed: 43)
        let raw = edge.sim.connect(to: edge.tlsListenerFD)
        raw.write([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03])   // a record header and half a hello
        edge.runUntilIdle()
        edge.advance(milliseconds: 1500)
        XCTAssertFalse(raw.closedByServer, "within the header timeout")
        edge.advance(milliseconds: 1000)
        XCTAssertTrue(raw.closedByServer, "past the header timeout")
        raw.close()
        edge.runUntilIdle()
        edge.checkQuiescent("after a stalled handshake")
    }

    /// Cleartext HTTP on the TLS port: OpenSSL recognises an HTTP request and closes without an
    /// alert (SSL_R_HTTP_REQUEST); a malformed handshake record gets a fatal alert. Either way no
    /// HTTP answer, the connection closes, and the worker goes on.
    func testCleartextOnTLSPortIsRefused() throws {
        let edge = try edge(seed: 44)
        let http = edge.sim.connect(to: edge.tlsListenerFD)
        http.write("GET /healthz HTTP/1.1\r\nHost: edge\r\n\r\n")
        edge.runUntilIdle()
        XCTAssertTrue(http.closedByServer)
        XCTAssertEqual(http.take(), [], "nothing sent to an HTTP request on the TLS port")
        http.close()
        let garbage = edge.sim.connect(to: edge.tlsListenerFD)
        garbage.write([0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00])   // a one-byte ClientHello
        edge.runUntilIdle()
        XCTAssertTrue(garbage.closedByServer)
        XCTAssertEqual(garbage.take().first, 0x15, "a TLS alert record")
        garbage.close()
        edge.runUntilIdle()
        edge.checkQuiescent("after cleartext on the TLS port")
        // The worker still serves.
        let client = try edge.connectTLS()
        var reader = ResponseReader()
        client.write("GET /healthz HTTP/1.1\r\nHost: edge\r\n\r\n")
        settle(edge, client, reader: &reader)
        XCTAssertEqual(reader.next()?.status, 200)
    }

    /// The test client really verifies: a name the certificate does not carry fails the handshake.
    /// (Without this, every TLS test above would pass against any certificate.)
    func testClientRefusesWrongServerName() throws {
        let edge = try edge(seed: 45)
        let client = try TLSClientPipe(
            peer: edge.sim.connect(to: edge.tlsListenerFD), alpn: [], serverName: "other.test")
        var reader = ResponseReader()
        client.write("GET /healthz HTTP/1.1\r\nHost: edge\r\n\r\n")
        settle(edge, client, reader: &reader)
        XCTAssertTrue(client.failed, "certificate for edge.test accepted as other.test")
        XCTAssertNil(reader.next())
    }
}
