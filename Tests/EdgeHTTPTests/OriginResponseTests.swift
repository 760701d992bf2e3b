import XCTest
@testable import EdgeHTTP

/// The origin side of the edge: response heads, framing and the chunked coding, as a broken or
/// lying origin would send them.
final class OriginResponseTests: XCTestCase {
    func parse(_ s: String, max: Int = 32768) -> HTTP1ResponseParseResult {
        Array(s.utf8).withUnsafeBytes { HTTP1ResponseParser.parse($0, headerBytesMax: max) }
    }
    func head(_ s: String) -> OriginResponseHead? {
        if case .head(let h, _) = parse(s) { return h }
        return nil
    }

    func testInterimResponsesAreRecognised() {
        guard
            case .head(let h, let consumed) = parse(
                "HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\nHTTP/1.1 206 Partial Content\r\n\r\n")
        else {
            return XCTFail("103 must parse")
        }
        XCTAssertTrue(h.isInterim)
        XCTAssertEqual(consumed, "HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n".utf8.count)
        XCTAssertFalse(head("HTTP/1.1 101 Switching Protocols\r\n\r\n")!.isInterim)
        XCTAssertFalse(head("HTTP/1.1 206 Partial Content\r\n\r\n")!.isInterim)
    }

    func testFraming() {
        XCTAssertEqual(head("HTTP/1.1 206 OK\r\nContent-Length: 10\r\n\r\n")!.framing, .length(10))
        XCTAssertEqual(head("HTTP/1.1 206 OK\r\nTransfer-Encoding: chunked\r\n\r\n")!.framing, .chunked)
        XCTAssertEqual(head("HTTP/1.1 206 OK\r\nTransfer-Encoding: Chunked\r\n\r\n")!.framing, .chunked)
        XCTAssertEqual(head("HTTP/1.1 206 OK\r\n\r\n")!.framing, .untilClose)
        XCTAssertEqual(
            head("HTTP/1.1 206 OK\r\nContent-Length: 10\r\nContent-Length: 10\r\n\r\n")!.framing, .length(10))
        for bad in [
            "Transfer-Encoding: chunked\r\nContent-Length: 10", "Transfer-Encoding: gzip, chunked",
            "Transfer-Encoding: identity",
            "Content-Length: 10\r\nContent-Length: 11", "Content-Length: 10, 11", "Content-Length: +10",
            "Content-Length: -1",
            "Content-Length: 1e3", "Content-Length: 99999999999999999999999",
        ] {
            guard case .error = head("HTTP/1.1 206 OK\r\n\(bad)\r\n\r\n")!.framing else {
                return XCTFail("\(bad) must be refused")
            }
        }
    }

    func testContentEncoding() {
        XCTAssertNil(head("HTTP/1.1 206 OK\r\n\r\n")!.contentEncodingError)
        XCTAssertNil(head("HTTP/1.1 206 OK\r\nContent-Encoding: identity\r\n\r\n")!.contentEncodingError)
        XCTAssertNotNil(head("HTTP/1.1 206 OK\r\nContent-Encoding: gzip\r\n\r\n")!.contentEncodingError)
        XCTAssertNotNil(head("HTTP/1.1 206 OK\r\nContent-Encoding: identity, br\r\n\r\n")!.contentEncodingError)
    }

    func testNotHTTPFailsAtOnceAndHeadsAreBounded() {
        XCTAssertEqual(parse("SSH-2.0-OpenSSH_9.2\r\n"), .error("bad status line"))
        XCTAssertEqual(parse("HTTP/1.1 2000 OK\r\n\r\n"), .error("bad status line"))
        XCTAssertEqual(parse("HTTP/1.1 -06 OK\r\n\r\n"), .error("bad status line"))
        XCTAssertEqual(parse("HTTP/1.1 206 OK\r\nX: " + String(repeating: "a", count: 2000)), .needMore)
        XCTAssertEqual(
            parse("HTTP/1.1 206 OK\r\nX: " + String(repeating: "a", count: 2000), max: 1024),
            .error("response head too large"))
        XCTAssertEqual(parse("HTTP/1.1 206 OK\r\n X: folded\r\n\r\n"), .error("bad header name"))
        XCTAssertEqual(parse("HTTP/1.1 206 OK\r\nX: a\u{1}b\r\n\r\n"), .error("bad header value"))
    }

    func decode(
        _ chunks: [String], capacity: Int = 1 << 20
    ) -> (data: [UInt8], result: [ChunkedDecoder.Result], done: Bool) {
        var d = ChunkedDecoder(lineBytesMax: 64, trailerBytesMax: 64)
        var out: [UInt8] = []
        var results: [ChunkedDecoder.Result] = []
        for c in chunks {
            let r = Array(c.utf8).withUnsafeBytes { raw in
                d.feed(raw) { piece in
                    guard out.count + piece.count <= capacity else { return false }
                    out += piece; return true
                }
            }
            results.append(r)
            if case .error = r { break }
        }
        return (out, results, d.isDone)
    }

    func testChunkedDecodesAcrossAnySplit() {
        let body = "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
        let want = Array("hello world".utf8)
        // Every split point, byte by byte too: the chunk-size lines never reach the data.
        for cut in 0...body.utf8.count {
            let bytes = Array(body.utf8)
            let parts = [
                String(decoding: bytes[0..<cut], as: UTF8.self), String(decoding: bytes[cut...], as: UTF8.self),
            ]
            let (data, _, done) = decode(parts)
            XCTAssertEqual(data, want, "split at \(cut)")
            XCTAssertTrue(done)
        }
        let (data, _, done) = decode(body.map { String($0) })
        XCTAssertEqual(data, want)
        XCTAssertTrue(done)
    }

    func testChunkedStopsAtTheEndOfTheMessage() {
        let (_, results, done) = decode(["3\r\nabc\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n"])
        XCTAssertTrue(done)
        XCTAssertEqual(results, [.consumed("3\r\nabc\r\n0\r\n\r\n".utf8.count)])
    }

    func testChunkedRefusesWhatIsNotChunked() {
        for bad in [
            "x\r\n", "\r\n", "5\r\nhelloX\r\n", "5 \r\nhello\r\n", "10000000000000000\r\n", "-5\r\n", "5\rhello",
            "1;" + String(repeating: "e", count: 100) + "\r\n",
            "0\r\n" + String(repeating: "t", count: 100) + "\r\n\r\n",
        ] {
            let (_, results, _) = decode([bad])
            guard case .error = results.last! else { return XCTFail("\(bad.debugDescription) must be refused") }
        }
        // More data than the slice holds: refused through the callback, never written past it.
        let (data, results, _) = decode(["8\r\n12345678\r\n0\r\n\r\n"], capacity: 4)
        XCTAssertEqual(data, [])
        XCTAssertEqual(results.last, .error("more data than expected"))
    }

    func testContentRangeIsBounded() {
        XCTAssertEqual(ContentRange.parse("bytes 0-9/100"), ContentRange(first: 0, last: 9, complete: 100))
        XCTAssertEqual(ContentRange.parse("bytes 0-9/9223372036854775807")?.complete, Int.max)   // parsed; the size bound refuses it
        XCTAssertNil(ContentRange.parse("bytes 0-9/9223372036854775808"))   // past Int.max: refused, never a trap
        XCTAssertNil(ContentRange.parse("bytes 0-9/99999999999999999999"))
        XCTAssertNil(ContentRange.parse("bytes 9-0/100"))
        XCTAssertNil(ContentRange.parse("bytes 0-100/100"))
        XCTAssertNil(ContentRange.parse("bytes */100"))
    }
}
