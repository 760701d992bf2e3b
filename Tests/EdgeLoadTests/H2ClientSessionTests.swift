import EdgeClient
import XCTest

@testable import EdgeLoad

/// The HTTP/2 client session fed hand-built frames (HPACK literals, no Huffman), and the load
/// generator's readers of what comes back.
final class H2ClientSessionTests: XCTestCase {
    final class Log: ClientSessionDelegate {
        var heads: [(stream: Int32, status: Int, fields: [String])] = []
        var closed: [(Int32, UInt32)] = []
        func responseHead(stream: Int32, status: Int, fields: [(name: String, value: String)]) {
            heads.append((stream, status, fields.map { "\($0.name): \($0.value)" }))
        }
        func responseData(stream: Int32, bytes: UnsafeRawBufferPointer) {}
        func streamClosed(stream: Int32, errorCode: UInt32) { closed.append((stream, errorCode)) }
    }

    func frame(type: UInt8, flags: UInt8, stream: UInt32, _ payload: [UInt8]) -> [UInt8] {
        let n = payload.count
        return [UInt8(n >> 16), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF), type, flags]
            + [UInt8(stream >> 24), UInt8(stream >> 16 & 0xFF), UInt8(stream >> 8 & 0xFF), UInt8(stream & 0xFF)]
            + payload
    }

    /// A literal field without indexing, new name (RFC 7541 §6.2.2).
    func literal(_ name: String, _ value: String) -> [UInt8] {
        [0x00, UInt8(name.utf8.count)] + Array(name.utf8) + [UInt8(value.utf8.count)] + Array(value.utf8)
    }

    func exchange(kept: [String]?, block: [UInt8]) -> Log {
        let log = Log()
        let s = H2ClientSession(delegate: log)!
        s.fieldNamesKept = kept
        let id = s.request(scheme: "http", authority: "a", path: "/x")
        XCTAssertEqual(id, 1)
        _ = s.send { _ in }
        let bytes =
            frame(type: 4, flags: 0, stream: 0, [])   // SETTINGS
            + frame(type: 1, flags: 0x05, stream: 1, block)   // HEADERS, END_HEADERS | END_STREAM
        XCTAssertTrue(bytes.withUnsafeBytes { s.receive($0) })
        withExtendedLifetime(s) {}
        return log
    }

    func testOnlyTheFieldsAskedForAreKeptAndTheStatusIsRead() {
        // 0x88: :status 200 from the static table; 0x48 0x03 "206": :status with a literal value.
        let block = [0x48, 0x03] + Array("206".utf8) + literal("cache-status", "edge; hit") + literal("x-other", "1")
        let kept = exchange(kept: ["Cache-Status"], block: block)
        XCTAssertEqual(kept.heads.count, 1)
        XCTAssertEqual(kept.heads.first?.status, 206)
        XCTAssertEqual(kept.heads.first?.fields, ["cache-status: edge; hit"])
        XCTAssertEqual(kept.closed.map(\.1), [0])
        let all = exchange(kept: nil, block: [0x88] + literal("cache-status", "edge; hit") + literal("x-other", "1"))
        XCTAssertEqual(all.heads.first?.status, 200)
        XCTAssertEqual(all.heads.first?.fields, ["cache-status: edge; hit", "x-other: 1"])
    }

    func testAHitIsReadFromTheNearestCacheWithoutAForward() {
        XCTAssertTrue(ClientConnection.isHit(cacheStatus: "edge; hit"))
        XCTAssertTrue(ClientConnection.isHit(cacheStatus: "edge;hit;ttl=30"))
        XCTAssertTrue(ClientConnection.isHit(cacheStatus: "origin; fwd=miss, edge ; hit "))
        XCTAssertFalse(ClientConnection.isHit(cacheStatus: "edge; fwd=miss; stored"))
        XCTAssertFalse(ClientConnection.isHit(cacheStatus: "edge; hit; fwd=stale"))
        XCTAssertFalse(ClientConnection.isHit(cacheStatus: "edge, origin; hit; fwd=uri-miss"), "the last member counts")
        XCTAssertFalse(ClientConnection.isHit(cacheStatus: "edge; hits"))
        XCTAssertFalse(ClientConnection.isHit(cacheStatus: "hit"), "a cache's name is not a parameter")
        XCTAssertFalse(ClientConnection.isHit(cacheStatus: ""))
    }

    func testAURLFileSkipsBlanksAndCommentsAndTrimsEachLine() {
        let text = "http://127.0.0.1/a\r\n\n  # a comment\n\thttp://127.0.0.1/b?x=1 \r\n \n#x\nhttp://127.0.0.1/c"
        XCTAssertEqual(
            ReplayOptions.urlList(text), ["http://127.0.0.1/a", "http://127.0.0.1/b?x=1", "http://127.0.0.1/c"])
        XCTAssertEqual(ReplayOptions.urlList(""), [])
        XCTAssertEqual(ReplayOptions.urlList("\n\r\n  \n"), [])
    }
}

/// The TLS client's lent input: what the reads leave is kept for the next loan, at most 1 MiB.
final class ClientTLSInputTests: XCTestCase {
    func testUnreadCiphertextIsKeptUpToOneMebibyteThenTheSessionFails() throws {
        let tls = try ClientTLS(context: ClientTLS.Context(caFile: nil, alpn: ["h2"]), serverName: "127.0.0.1")
        let chunk = [UInt8](repeating: 0x17, count: 600 * 1024)   // never read: no handshake runs
        chunk.withUnsafeBytes { tls.withInput($0) {} }
        XCTAssertFalse(tls.failed, "600 KiB kept")
        chunk.withUnsafeBytes { tls.withInput($0) {} }
        XCTAssertTrue(tls.failed, "1200 KiB would be kept: over the bound")
    }
}
