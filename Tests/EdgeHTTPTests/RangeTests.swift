import XCTest
@testable import EdgeHTTP

final class RangeTests: XCTestCase {
    func eval(_ h: String, _ len: Int = 1000, max: Int = 16) -> RangeDecision {
        RangeEvaluator.evaluate(h, length: len, maxRanges: max)
    }
    func r(_ a: Int, _ b: Int) -> ByteRange { ByteRange(a, b) }

    func testSingleForms() {
        XCTAssertEqual(eval("bytes=0-99"), .partial([r(0, 99)]))
        XCTAssertEqual(eval("bytes=900-"), .partial([r(900, 999)]))
        XCTAssertEqual(eval("bytes=-100"), .partial([r(900, 999)]))
        XCTAssertEqual(eval("bytes=-5000"), .partial([r(0, 999)]))
        XCTAssertEqual(eval("bytes=500-5000"), .partial([r(500, 999)]))
        XCTAssertEqual(eval("bytes=999-999"), .partial([r(999, 999)]))
        XCTAssertEqual(eval("BYTES=0-0"), .partial([r(0, 0)]))
        XCTAssertEqual(eval("bytes=0-99999999999999999999999"), .partial([r(0, 999)]))
    }

    func testUnsatisfiable() {
        XCTAssertEqual(eval("bytes=1000-"), .unsatisfiable)
        XCTAssertEqual(eval("bytes=1000-2000"), .unsatisfiable)
        XCTAssertEqual(eval("bytes=-0"), .unsatisfiable)
        XCTAssertEqual(eval("bytes=0-", 0), .unsatisfiable)
        XCTAssertEqual(eval("bytes=-10", 0), .unsatisfiable)
        XCTAssertEqual(eval("bytes=99999999999999999999999-"), .unsatisfiable)
        XCTAssertEqual(eval("bytes=2000-3000, 5000-"), .unsatisfiable)
    }

    func testInvalidSyntaxMeansWhole() {
        for h in [
            "bytes=", "bytes=a-b", "bytes=5-1", "items=0-1", "bytes 0-1", "bytes=0-1;", "bytes=--1", "bytes=1-2-3",
            "bytes=0-1,x", "bytes=,", "",
        ] {
            XCTAssertEqual(eval(h), .whole, h)
        }
    }

    func testMultipleAndWhitespace() {
        XCTAssertEqual(eval("bytes=0-9, 20-29,40-49"), .partial([r(0, 9), r(20, 29), r(40, 49)]))
        XCTAssertEqual(eval("bytes=0-9 ,\t20-29"), .partial([r(0, 9), r(20, 29)]))
        // Client order kept when nothing overlaps.
        XCTAssertEqual(eval("bytes=500-599,0-9"), .partial([r(500, 599), r(0, 9)]))
        // Unsatisfiable members are dropped.
        XCTAssertEqual(eval("bytes=0-9,5000-6000"), .partial([r(0, 9)]))
    }

    func testOverlapCoalesced() {
        XCTAssertEqual(eval("bytes=0-99,50-149"), .partial([r(0, 149)]))
        XCTAssertEqual(eval("bytes=0-99,100-199"), .partial([r(0, 199)]))   // adjacent
        XCTAssertEqual(eval("bytes=500-600,0-10,5-700"), .partial([r(0, 700)]))
        // The Apache "Range DoS": many overlapping ranges never produce more bytes than the file.
        let dos = "bytes=0-," + (1...15).map { "\($0)-" }.joined(separator: ",")
        XCTAssertEqual(eval(dos), .partial([r(0, 999)]))
    }

    func testTooManyRangesMeansWhole() {
        let many = "bytes=" + (0..<17).map { "\($0 * 10)-\($0 * 10 + 1)" }.joined(separator: ",")
        XCTAssertEqual(eval(many), .whole)
        let ok = "bytes=" + (0..<16).map { "\($0 * 10)-\($0 * 10 + 1)" }.joined(separator: ",")
        guard case .partial(let list) = eval(ok) else { return XCTFail() }
        XCTAssertEqual(list.count, 16)
    }

    func testIfRange() {
        let tag = "\"abc-123\"", date = "Sat, 21 Nov 2026 02:46:56 GMT"
        XCTAssertTrue(RangeEvaluator.ifRangeAllows(nil, etag: tag, lastModified: date))
        XCTAssertTrue(RangeEvaluator.ifRangeAllows(tag, etag: tag, lastModified: date))
        XCTAssertFalse(RangeEvaluator.ifRangeAllows("\"other\"", etag: tag, lastModified: date))
        XCTAssertFalse(RangeEvaluator.ifRangeAllows("W/" + tag, etag: tag, lastModified: date))
        XCTAssertTrue(RangeEvaluator.ifRangeAllows(date, etag: tag, lastModified: date))
        XCTAssertFalse(RangeEvaluator.ifRangeAllows("Fri, 20 Nov 2026 02:46:56 GMT", etag: tag, lastModified: date))
    }

    func testMultipartLengthIsExact() {
        let layout = MultipartLayout(
            ranges: [r(0, 9), r(20, 29)], totalLength: 100, contentType: "audio/mp4", boundary: "B")
        var body: [UInt8] = []
        for s in layout.segments {
            switch s {
            case .bytes(let b): body += b
            case .content(_, let l): body += [UInt8](repeating: 0x41, count: l)
            }
        }
        XCTAssertEqual(body.count, layout.contentLength)
        let text = String(decoding: body, as: UTF8.self)
        XCTAssertTrue(
            text.hasPrefix(
                "--B\r\nContent-Type: audio/mp4\r\nContent-Range: bytes 0-9/100\r\n\r\nAAAAAAAAAA\r\n--B\r\n"))
        XCTAssertTrue(text.hasSuffix("\r\n--B--\r\n"))
    }

    func testRandomRangesNeverExceedLength() {
        for _ in 0..<5000 {
            let len = Int.random(in: 0...5000)
            let n = Int.random(in: 1...20)
            let specs = (0..<n).map { _ -> String in
                switch Int.random(in: 0...2) {
                case 0: let a = Int.random(in: 0...6000); return "\(a)-\(a + Int.random(in: 0...3000))"
                case 1: return "\(Int.random(in: 0...6000))-"
                default: return "-\(Int.random(in: 0...6000))"
                }
            }
            if case .partial(let ranges) = eval("bytes=" + specs.joined(separator: ","), len) {
                XCTAssertLessThanOrEqual(ranges.reduce(0) { $0 + $1.length }, len)
                for x in ranges { XCTAssert(x.first >= 0 && x.last < len && x.first <= x.last) }
            }
        }
    }

    func testOriginResponseParser() {
        let ok = Array(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/100\r\nETag: \"x\"\r\nContent-Length: 10\r\n\r\n0123456789"
                .utf8)
        guard case let .head(h, consumed) = ok.withUnsafeBytes({ HTTP1ResponseParser.parse($0) }) else {
            return XCTFail()
        }
        XCTAssertEqual(h.status, 206)
        XCTAssertEqual(h.header("etag"), "\"x\"")
        XCTAssertEqual(consumed, ok.count - 10)
        XCTAssertEqual(
            Array("HTTP/1.1 200 OK\r\nA: b".utf8).withUnsafeBytes { HTTP1ResponseParser.parse($0) }, .needMore)
        guard case .error = Array("HTTP/9 2 x\r\n\r\n".utf8).withUnsafeBytes({ HTTP1ResponseParser.parse($0) }) else {
            return XCTFail()
        }
        guard
            case .error = Array("HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n".utf8).withUnsafeBytes({
                HTTP1ResponseParser.parse($0)
            })
        else { return XCTFail() }
    }

    func testContentRange() {
        XCTAssertEqual(ContentRange.parse("bytes 0-9/100"), ContentRange(first: 0, last: 9, complete: 100))
        XCTAssertNil(ContentRange.parse("bytes 9-0/100"))
        XCTAssertNil(ContentRange.parse("bytes 0-100/100"))
        XCTAssertNil(ContentRange.parse("bytes */100"))
        XCTAssertNil(ContentRange.parse("bytes 0-9/*"))
        XCTAssertNil(ContentRange.parse("items 0-9/100"))
    }
}

/// A miss and a hit read a Range header with one parser.
final class RangeFirstByteTests: XCTestCase {
    func first(_ h: String) -> Int? { RangeEvaluator.firstByteBeforeLength(h, maxRanges: 16) }

    func testFirstByteBeforeLength() {
        XCTAssertEqual(first("bytes=100-199"), 100)
        XCTAssertEqual(first("bytes= 100-"), 100)
        XCTAssertNil(first("bytes= -5"))   // optional whitespace before a suffix: a suffix, not byte Int.max/2
        XCTAssertNil(first("bytes=\t-5"))
        XCTAssertNil(first("bytes=-5"))
        XCTAssertEqual(first("bytes=500-599,0-9"), 500)
        XCTAssertEqual(first("bytes=garbage"), 0)   // ignored header: the whole representation
        XCTAssertEqual(first("bytes=99999999999999999999999-"), Int.max)
        // And the hit path answers the same header the same way.
        XCTAssertEqual(
            RangeEvaluator.evaluate("bytes= -5", length: 1000, maxRanges: 16), .partial([ByteRange(995, 999)]))
    }
}
