@testable import EdgeHTTP
import XCTest

/// The response planner both content sources use: conditionals before ranges, exact lengths.
final class ResponsePlanTests: XCTestCase {
    let etag = "\"5f-100\"", lastModified = "Tue, 14 Nov 2023 22:13:20 GMT"

    func plan(_ headers: [(String, String)], size: Int = 1000) -> ResponsePlan {
        let request = EdgeRequest(
            method: "GET", target: "/audio/a", version: .http1_1, headers: headers.map { HeaderField($0.0, $0.1) })
        return ResponsePlan(
            request: request, size: size, etag: etag, lastModified: lastModified,
            contentType: "audio/mp4", rangesMax: 4, boundarySeed: 0xAB)
    }

    func length(_ segments: [BodySegment]) -> Int {
        segments.reduce(0) {
            switch $1 {
            case .bytes(let b): return $0 + b.count
            case .content(_, let l): return $0 + l
            }
        }
    }

    func testWholeRangeAndUnsatisfiable() {
        let whole = plan([])
        XCTAssertEqual(whole.status, 200)
        XCTAssertEqual(whole.segments, [.content(offset: 0, length: 1000)])
        let part = plan([("range", "bytes=10-19")])
        XCTAssertEqual(part.status, 206)
        XCTAssertEqual(part.segments, [.content(offset: 10, length: 10)])
        XCTAssertEqual(
            part.fields.list,
            [
                HeaderField("content-type", "audio/mp4"), HeaderField("content-range", "bytes 10-19/1000"),
                HeaderField("etag", etag), HeaderField("last-modified", lastModified),
                HeaderField("accept-ranges", "bytes"),
                HeaderField("cache-control", "public, max-age=31536000, immutable"),
            ])
        let beyond = plan([("range", "bytes=1000-")])
        XCTAssertEqual(beyond.status, 416)
        XCTAssertEqual(beyond.fields.value("content-range"), "bytes */1000")
        XCTAssertEqual(beyond.fields.value("content-type"), "text/plain")
        XCTAssertEqual(plan([], size: 0).segments, [], "an empty representation has no segment")
    }

    func testContentRangeDigits() {
        func range(_ first: Int, _ last: Int, _ size: Int) -> String {
            FieldValue.byteRange(first: first, last: last, size: size).rendered
        }
        XCTAssertEqual(range(0, 0, 1), "bytes 0-0/1")
        XCTAssertEqual(range(9, 10, 100), "bytes 9-10/100")
        XCTAssertEqual(range(4096, 8191, 120_000), "bytes 4096-8191/120000")
        XCTAssertEqual(
            range(Int.max - 1, Int.max - 1, Int.max),
            "bytes 9223372036854775806-9223372036854775806/9223372036854775807")
        XCTAssertEqual(FieldValue.unsatisfiedRange(size: Int.max).rendered, "bytes */9223372036854775807")
        XCTAssertEqual(FieldValue.decimal(0).rendered, "0")
    }

    func testConditionalsComeBeforeRanges() {
        XCTAssertEqual(plan([("if-none-match", etag), ("range", "bytes=0-1")]).status, 304)
        XCTAssertEqual(plan([("if-none-match", "W/" + etag)]).status, 304)
        XCTAssertEqual(plan([("if-modified-since", lastModified)]).status, 304)
        // If-Range that no longer matches: the whole representation, not the range.
        XCTAssertEqual(plan([("if-range", "\"old\""), ("range", "bytes=0-1")]).status, 200)
    }

    func testMultipartLengthMatchesSegments() {
        let p = plan([("range", "bytes=0-9,100-199")])
        XCTAssertEqual(p.status, 206)
        XCTAssertEqual(length(p.segments), p.contentLength)
        XCTAssertEqual(p.fields.list.first?.value, "multipart/byteranges; boundary=edgeab")
        XCTAssertNil(p.fields.contentRange)
    }

    func testCacheControlPublicOrPrivate() {
        XCTAssertEqual(
            plan([]).fields.value("cache-control"), "public, max-age=31536000, immutable")
        XCTAssertEqual(ResponsePlan.cacheControl(privateSeconds: 60), "private, max-age=60")
    }
}
