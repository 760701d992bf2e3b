import EdgeEncoding
import XCTest
@testable import EdgeHTTP

final class RangeTests: XCTestCase {
    func eval(_ h: String, _ len: Int = 1000, max: Int = 16) -> RangeDecision {
        RangeEvaluator.evaluate(h, length: len, maxRanges: max)
    }
    func r(_ a: Int, _ b: Int) -> ByteRange { ByteRange(a, b) }

    func testSingleForms() {
        XCTAssertEqual(eval("bytes=0-99"), .single(r(0, 99)))
        XCTAssertEqual(eval("bytes=900-"), .single(r(900, 999)))
        XCTAssertEqual(eval("bytes=-100"), .single(r(900, 999)))
        XCTAssertEqual(eval("bytes=-5000"), .single(r(0, 999)))
        XCTAssertEqual(eval("bytes=500-5000"), .single(r(500, 999)))
        XCTAssertEqual(eval("bytes=999-999"), .single(r(999, 999)))
        XCTAssertEqual(eval("BYTES=0-0"), .single(r(0, 0)))
        XCTAssertEqual(eval("bytes=0-99999999999999999999999"), .single(r(0, 999)))
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
        XCTAssertEqual(eval("bytes=0-9, 20-29,40-49"), .multiple([r(0, 9), r(20, 29), r(40, 49)]))
        XCTAssertEqual(eval("bytes=0-9 ,\t20-29"), .multiple([r(0, 9), r(20, 29)]))
        // Client order kept when nothing overlaps.
        XCTAssertEqual(eval("bytes=500-599,0-9"), .multiple([r(500, 599), r(0, 9)]))
        // Unsatisfiable members are dropped.
        XCTAssertEqual(eval("bytes=0-9,5000-6000"), .single(r(0, 9)))
    }

    func testOverlapCoalesced() {
        XCTAssertEqual(eval("bytes=0-99,50-149"), .single(r(0, 149)))
        XCTAssertEqual(eval("bytes=0-99,100-199"), .single(r(0, 199)))   // adjacent
        XCTAssertEqual(eval("bytes=500-600,0-10,5-700"), .single(r(0, 700)))
        // The Apache "Range DoS": many overlapping ranges never produce more bytes than the file.
        let dos = "bytes=0-," + (1...15).map { "\($0)-" }.joined(separator: ",")
        XCTAssertEqual(eval(dos), .single(r(0, 999)))
    }

    func testTooManyRangesMeansWhole() {
        let many = "bytes=" + (0..<17).map { "\($0 * 10)-\($0 * 10 + 1)" }.joined(separator: ",")
        XCTAssertEqual(eval(many), .whole)
        let ok = "bytes=" + (0..<16).map { "\($0 * 10)-\($0 * 10 + 1)" }.joined(separator: ",")
        guard case .multiple(let list) = eval(ok) else { return XCTFail() }
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

    /// Seeded random headers against a model (the set of bytes the specs cover): the answer sends
    /// exactly those bytes, none twice, as one range when they form one run and as several when not.
    func testRandomRangesSendExactlyTheCoveredBytes() {
        var rng = SplitMix64(seed: 0x5eed_2026)
        func int(_ range: ClosedRange<Int>) -> Int { range.lowerBound + rng.next(below: range.count) }
        for _ in 0..<3000 {
            let len = int(0...400)
            let n = int(1...20)
            let specs = (0..<n).map { _ -> String in
                switch int(0...2) {
                case 0: let a = int(0...500); return "\(a)-\(a + int(0...200))"
                case 1: return "\(int(0...500))-"
                default: return "-\(int(0...500))"
                }
            }
            let header = "bytes=" + specs.joined(separator: ",")
            // The model: the set of bytes the specs cover, each resolved on its own.
            var covered = [Bool](repeating: false, count: len)
            for spec in specs {
                let parts = spec.split(separator: "-", omittingEmptySubsequences: false)
                let first = Int(parts[0]), last = Int(parts[1])
                var lo: Int, hi: Int
                if let first {
                    lo = first; hi = min(last ?? len - 1, len - 1)
                } else {
                    lo = max(0, len - last!); hi = len - 1
                }
                if first == nil && last! == 0 { continue }
                if lo <= hi { for b in lo...hi { covered[b] = true } }
            }
            let intervals = zip(covered.indices, covered).filter { $0.1 && ($0.0 == 0 || !covered[$0.0 - 1]) }.count
            let ranges: [ByteRange]
            switch eval(header, len, max: 20) {
            case .single(let one): ranges = [one]; XCTAssertEqual(intervals, 1, header)
            case .multiple(let list): ranges = list; XCTAssertGreaterThan(intervals, 1, header)
            case .unsatisfiable: ranges = []; XCTAssertEqual(intervals, 0, header)
            case .whole: ranges = []; XCTFail("a valid header of \(n) specs ignored: \(header)")
            }
            // Exactly the covered bytes, none twice.
            var sent = [Bool](repeating: false, count: len)
            for x in ranges {
                XCTAssert(x.first >= 0 && x.last < len && x.first <= x.last, header)
                for b in x.first...x.last { XCTAssertFalse(sent[b], header); sent[b] = true }
            }
            XCTAssertEqual(sent, covered, header)
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
            RangeEvaluator.evaluate("bytes= -5", length: 1000, maxRanges: 16), .single(ByteRange(995, 999)))
    }
}
