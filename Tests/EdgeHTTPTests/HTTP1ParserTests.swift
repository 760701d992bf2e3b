import XCTest
@testable import EdgeHTTP

final class HTTP1ParserTests: XCTestCase {
    func parse(_ s: String, limits: HTTP1Limits = HTTP1Limits()) -> HTTP1ParseResult {
        let bytes = Array(s.utf8)
        return bytes.withUnsafeBytes { HTTP1Parser(limits: limits).parse($0) }
    }

    func expectError(_ s: String, _ status: Int, file: StaticString = #filePath, line: UInt = #line) {
        guard case .error(let got, _) = parse(s) else {
            return XCTFail("expected \(status), got \(parse(s))", file: file, line: line)
        }
        XCTAssertEqual(got, status, file: file, line: line)
    }

    func testSimpleGet() {
        guard
            case let .request(r, consumed, body) = parse(
                "GET /audio/a.bin?x=1 HTTP/1.1\r\nHost: h\r\nRange: bytes=0-1\r\n\r\nNEXT")
        else { return XCTFail() }
        XCTAssertEqual(r.method, "GET")
        XCTAssertEqual(r.target, "/audio/a.bin?x=1")
        XCTAssertEqual(r.version, .http1_1)
        XCTAssertEqual(r.header("range"), "bytes=0-1")
        XCTAssertEqual(r.header("host"), "h")
        XCTAssertEqual(consumed, 60)
        XCTAssertEqual(body, 0)
    }

    func testIncrementalNeedsMore() {
        let full = "GET / HTTP/1.1\r\nHost: h\r\n\r\n"
        for cut in 0..<full.utf8.count {
            XCTAssertEqual(
                parse(String(decoding: Array(full.utf8).prefix(cut), as: UTF8.self)), .needMore, "cut at \(cut)")
        }
    }

    func testPipelinedConsumesOnlyFirst() {
        guard
            case let .request(_, consumed, _) = parse(
                "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n")
        else { return XCTFail() }
        XCTAssertEqual(consumed, 28)
    }

    func testOWSTrimmedAndValueKept() {
        guard case let .request(r, _, _) = parse("GET / HTTP/1.1\r\nHost:   h  \r\nX-A: a b\t\r\nX-Empty:\r\n\r\n")
        else { return XCTFail() }
        XCTAssertEqual(r.header("host"), "h")
        XCTAssertEqual(r.header("x-a"), "a b")
        XCTAssertEqual(r.header("x-empty"), "")
    }

    func testFramingAttacks() {
        expectError("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400)
        expectError("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400)
        expectError("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1,1\r\n\r\n", 400)
        expectError("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400)
        expectError("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\n", 400)
        expectError("GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", 400)
        expectError("GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400)
        expectError("GET / HTTP/1.1\r\nHost: h\r\nContent-Length : 1\r\n\r\n", 400)   // space before colon
        expectError("GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n", 400)
        expectError("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400)
        expectError("GET / HTTP/1.1\r\n\r\n", 400)   // no Host
    }

    func testBadCharactersAndLineEndings() {
        expectError("GET / HTTP/1.1\nHost: h\n\n", 400)
        expectError("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", 400)
        expectError("GET / HTTP/1.1\r\nHost: h\r\nX: a\u{01}b\r\n\r\n", 400)
        expectError("GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", 400)
        expectError("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400)
        expectError("G@T / HTTP/1.1\r\nHost: h\r\n\r\n", 400)
        expectError("GET / HTTP/1.1\r\nHo st: h\r\n\r\n", 400)
        expectError("GET /\u{7f} HTTP/1.1\r\nHost: h\r\n\r\n", 400)
    }

    func testVersions() {
        expectError("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505)
        expectError("GET / HTTP/1.1x\r\nHost: h\r\n\r\n", 400)
        expectError("GET / http/1.1\r\nHost: h\r\n\r\n", 400)
        guard case let .request(r, _, _) = parse("GET / HTTP/1.0\r\n\r\n") else { return XCTFail("1.0 needs no Host") }
        XCTAssertEqual(r.version, .http1_0)
        XCTAssertFalse(r.wantsKeepAlive)
    }

    func testTargetForms() {
        guard case let .request(r, _, _) = parse("GET http://other.example/audio/x?y=1 HTTP/1.1\r\nHost: h\r\n\r\n")
        else { return XCTFail() }
        XCTAssertEqual(r.target, "/audio/x?y=1")
        expectError("GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n", 400)
        expectError("GET ftp://x/y HTTP/1.1\r\nHost: h\r\n\r\n", 400)
        expectError("GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400)
        expectError("GET audio HTTP/1.1\r\nHost: h\r\n\r\n", 400)
        guard case .request = parse("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n") else { return XCTFail() }
    }

    func testLimits() {
        let limits = HTTP1Limits(requestLineBytesMax: 64, headerBytesMax: 256, headerCountMax: 4)
        let longTarget = "GET /" + String(repeating: "a", count: 100) + " HTTP/1.1\r\nHost: h\r\n\r\n"
        guard case .error(414, _) = parse(longTarget, limits: limits) else { return XCTFail() }
        // 414 even before the line ends.
        guard case .error(414, _) = parse("GET /" + String(repeating: "a", count: 100), limits: limits) else {
            return XCTFail()
        }
        let many = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n"
        guard case .error(431, _) = parse(many, limits: limits) else { return XCTFail() }
        let big = "GET / HTTP/1.1\r\nHost: h\r\nX: " + String(repeating: "v", count: 300) + "\r\n\r\n"
        guard case .error(431, _) = parse(big, limits: limits) else { return XCTFail() }
        guard case .error(431, _) = parse(String(decoding: Array(big.utf8).prefix(280), as: UTF8.self), limits: limits)
        else { return XCTFail("431 before the end") }
    }

    func testContentLengthBody() {
        guard case let .request(_, _, body) = parse("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\n") else {
            return XCTFail()
        }
        XCTAssertEqual(body, 12)
    }

    /// Framing and Host rules hold whatever the names' case; every name is stored folded.
    func testFieldNamesAnyCase() {
        guard
            case let .request(r, _, body) = parse(
                "GET / HTTP/1.1\r\nhOsT: h\r\nCONTENT-LENGTH: 007\r\nX-Mixed-Case: V\r\n\r\n")
        else { return XCTFail() }
        XCTAssertEqual(body, 7)
        XCTAssertEqual(
            r.fields.fields,
            [HeaderField("host", "h"), HeaderField("content-length", "007"), HeaderField("x-mixed-case", "V")])
        expectError("GET / HTTP/1.1\r\nHost: h\r\ncontent-length: 1\r\nContent-LENGTH: 1\r\n\r\n", 400)
        expectError("GET / HTTP/1.1\r\nHOST: a\r\nhost: b\r\n\r\n", 400)
        expectError("GET / HTTP/1.1\r\nHost: h\r\nTRANSFER-encoding: chunked\r\n\r\n", 400)
        // 18 digits is the most taken (no overflow), 19 is refused.
        guard
            case let .request(_, _, most) = parse(
                "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 999999999999999999\r\n\r\n")
        else { return XCTFail() }
        XCTAssertEqual(most, 999_999_999_999_999_999)
        expectError("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 9999999999999999999\r\n\r\n", 400)
        expectError("GET / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", 400)
    }

    func testKeepAliveSemantics() {
        guard case let .request(a, _, _) = parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
            case let .request(b, _, _) = parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"),
            case let .request(c, _, _) = parse("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        else { return XCTFail() }
        XCTAssertFalse(a.wantsKeepAlive)
        XCTAssertTrue(b.wantsKeepAlive)
        XCTAssertTrue(c.wantsKeepAlive)
    }

    /// Random byte soup never crashes the parser and never yields a request with bad characters.
    func testFuzzNeverCrashes() {
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("GET /a HTTP/1.1\r\nHost: h:\t \u{0}\u{7f}é-%".utf8)
        for _ in 0..<20000 {
            let n = Int.random(in: 0..<80, using: &rng)
            let bytes = (0..<n).map { _ in alphabet.randomElement(using: &rng)! }
            let r = bytes.withUnsafeBytes { HTTP1Parser().parse($0) }
            if case let .request(req, consumed, _) = r {
                XCTAssertLessThanOrEqual(consumed, n)
                XCTAssertFalse(req.target.utf8.contains(where: { $0 <= 0x20 || $0 >= 0x7F }))
            }
        }
    }
}
