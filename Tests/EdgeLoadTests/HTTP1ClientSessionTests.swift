import EdgeClient
import XCTest

/// The HTTP/1.1 client session fed bytes directly: framing, interim heads, closes, bounds.
final class HTTP1ClientSessionTests: XCTestCase {
    final class Log: ClientSessionDelegate {
        var heads: [(Int32, Int)] = []
        var body: [UInt8] = []
        var closed: [(Int32, UInt32)] = []
        func responseHead(stream: Int32, status: Int, fields: [(name: String, value: String)]) {
            heads.append((stream, status))
        }
        func responseData(stream: Int32, bytes: UnsafeRawBufferPointer) { body += bytes }
        func streamClosed(stream: Int32, errorCode: UInt32) { closed.append((stream, errorCode)) }
    }

    /// The session's delegate is unowned: the test keeps every log alive.
    var logs: [Log] = []

    func session() -> (HTTP1ClientSession, Log) {
        let log = Log()
        logs.append(log)
        return (HTTP1ClientSession(headBytesMax: 1024, delegate: log), log)
    }

    func feed(_ s: HTTP1ClientSession, _ text: String) -> Bool {
        Array(text.utf8).withUnsafeBytes { s.receive($0) }
    }

    func output(_ s: HTTP1ClientSession) -> String {
        var out: [UInt8] = []
        _ = s.send { out += $0 }
        return String(decoding: out, as: UTF8.self)
    }

    func testARequestIsWrittenWithHostAndItsBodyLength() {
        let (s, _) = session()
        let id = s.request(
            method: "POST", scheme: "http", authority: "127.0.0.1:9", path: "/v1/playback",
            headers: [("authorization", "Bearer x")], body: Array("{}".utf8))
        XCTAssertEqual(id, 1)
        XCTAssertEqual(
            output(s),
            "POST /v1/playback HTTP/1.1\r\nhost: 127.0.0.1:9\r\nauthorization: Bearer x\r\ncontent-length: 2\r\n\r\n{}")
        XCTAssertNil(s.request(method: "GET", scheme: "http", authority: "a", path: "/", headers: [], body: []))
    }

    func testContentLengthBodiesSplitAcrossReadsAndTheConnectionIsReused() {
        let (s, log) = session()
        _ = s.request(method: "GET", scheme: "http", authority: "a", path: "/x", headers: [], body: [])
        XCTAssertTrue(
            feed(
                s,
                "HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 206 Partial\r\ncontent-length: 10\r\n\r\n01234")
        )
        XCTAssertEqual(log.heads.map(\.1), [206], "the interim head is skipped")
        XCTAssertTrue(log.closed.isEmpty)
        XCTAssertTrue(feed(s, "56789"))
        XCTAssertEqual(String(decoding: log.body, as: UTF8.self), "0123456789")
        XCTAssertEqual(log.closed.map(\.1), [0])
        XCTAssertFalse(s.goAwayReceived)
        XCTAssertEqual(s.request(method: "GET", scheme: "http", authority: "a", path: "/y", headers: [], body: []), 2)
    }

    func testChunkedBodiesAreDecoded() {
        let (s, log) = session()
        _ = s.request(method: "GET", scheme: "http", authority: "a", path: "/", headers: [], body: [])
        XCTAssertTrue(
            feed(s, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"))
        XCTAssertEqual(String(decoding: log.body, as: UTF8.self), "abcde")
        XCTAssertEqual(log.closed.map(\.1), [0])
    }

    func testABodyDelimitedByTheCloseEndsAtTheCloseAndRetiresTheConnection() {
        let (s, log) = session()
        _ = s.request(method: "GET", scheme: "http", authority: "a", path: "/", headers: [], body: [])
        XCTAssertTrue(feed(s, "HTTP/1.1 200 OK\r\n\r\nsome"))
        XCTAssertTrue(s.goAwayReceived)
        XCTAssertTrue(log.closed.isEmpty)
        s.transportClosed()
        XCTAssertEqual(log.closed.map(\.1), [0])
        XCTAssertEqual(String(decoding: log.body, as: UTF8.self), "some")
    }

    func testAConnectionCutInsideAContentLengthBodyIsTruncated() {
        let (s, log) = session()
        _ = s.request(method: "GET", scheme: "http", authority: "a", path: "/", headers: [], body: [])
        XCTAssertTrue(feed(s, "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort"))
        s.transportClosed()
        XCTAssertEqual(log.closed.map(\.1), [ClientSessionError.truncated])
    }

    func testConnectionCloseRetiresAfterTheResponse() {
        let (s, _) = session()
        _ = s.request(method: "GET", scheme: "http", authority: "a", path: "/", headers: [], body: [])
        XCTAssertTrue(feed(s, "HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n"))
        XCTAssertTrue(s.goAwayReceived)
        XCTAssertNil(s.request(method: "GET", scheme: "http", authority: "a", path: "/", headers: [], body: []))
    }

    func testBrokenResponsesAreProtocolErrors() {
        for bad in [
            "SSH-2.0-OpenSSH\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            "HTTP/1.1 200 OK\r\nx: " + String(repeating: "a", count: 2000),   // head over headBytesMax
            "HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nab",   // a byte nobody asked for
        ] {
            let (s, log) = session()
            _ = s.request(method: "GET", scheme: "http", authority: "a", path: "/", headers: [], body: [])
            XCTAssertFalse(feed(s, bad), bad)
            XCTAssertTrue(s.goAwayReceived, bad)
            if log.heads.isEmpty { XCTAssertEqual(log.closed.map(\.1), [ClientSessionError.malformed], bad) }
        }
    }

    func testCancellingRetiresTheConnection() {
        let (s, log) = session()
        let id = s.request(method: "GET", scheme: "http", authority: "a", path: "/", headers: [], body: [])!
        s.cancel(stream: id)
        XCTAssertEqual(log.closed.map(\.1), [ClientSessionError.cancelled])
        XCTAssertTrue(s.goAwayReceived)
    }
}
