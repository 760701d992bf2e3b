import CNGHTTP2
import EdgeEncoding
import EdgeHTTP
import XCTest

@testable import EdgeServer

/// The two writers of a response head: what reaches nghttp2 (bytes and no-copy flags) and the
/// HTTP/1.1 text, from fields with every slot filled and an extra field.
final class ResponseHeadTests: XCTestCase {
    func everyField() -> ResponseFields {
        var f = ResponseFields(contentType: "audio/mp4", extra: [HeaderField("retry-after", "1")])
        f.contentRange = .byteRange(first: 4096, last: 8191, size: 120_000)
        f.etag = "\"5f-100\""
        f.lastModified = "Tue, 14 Nov 2023 22:13:20 GMT"
        f.acceptRanges = true
        f.cacheControl = "private, max-age=60"
        f.cacheStatus = "edge; hit"
        f.age = 12
        return f
    }

    func testHTTP2PairsAndFlags() {
        let scratch = HeadScratch(bytes: 16)   // too small: the writer must grow it
        var head = H2HeadWriter(scratch: scratch, fields: everyField(), fixedPairs: 1, fixedBytes: DecimalText.bytesMax)
        head.field(":status", .decimal(206))
        everyField().write(to: &head)
        var got: [String] = []
        for i in 0..<head.count {
            let p = head.pairs[i]
            let name = String(decoding: UnsafeBufferPointer(start: p.name, count: p.namelen), as: UTF8.self)
            let value = String(decoding: UnsafeBufferPointer(start: p.value, count: p.valuelen), as: UTF8.self)
            got.append("\(name)=\(value) \(p.flags)")
        }
        let name = NGHTTP2_NV_FLAG_NO_COPY_NAME.rawValue, both = name | NGHTTP2_NV_FLAG_NO_COPY_VALUE.rawValue
        XCTAssertEqual(
            got,
            [
                ":status=206 \(name)", "content-type=audio/mp4 \(name)", "content-range=bytes 4096-8191/120000 \(name)",
                "etag=\"5f-100\" \(name)", "last-modified=Tue, 14 Nov 2023 22:13:20 GMT \(name)",
                "accept-ranges=bytes \(both)", "cache-control=private, max-age=60 \(name)",
                "cache-status=edge; hit \(name)", "age=12 \(name)", "retry-after=1 0",
            ])
        XCTAssertGreaterThanOrEqual(scratch.capacity, 16 * 2)
    }

    func testHTTP1Text() {
        let scratch = HeadScratch(bytes: 16)
        var head = HTTP1HeadWriter(scratch: scratch, fields: everyField(), fixedBytes: 16)
        head.put("HTTP/1.1 206\r\n")
        everyField().write(to: &head)
        XCTAssertEqual(
            String(decoding: head.bytes, as: UTF8.self),
            "HTTP/1.1 206\r\ncontent-type: audio/mp4\r\ncontent-range: bytes 4096-8191/120000\r\n"
                + "etag: \"5f-100\"\r\nlast-modified: Tue, 14 Nov 2023 22:13:20 GMT\r\naccept-ranges: bytes\r\n"
                + "cache-control: private, max-age=60\r\ncache-status: edge; hit\r\nage: 12\r\nretry-after: 1\r\n")
    }

    func testMeasureCountsWhatIsWritten() {
        let m = everyField().measure
        XCTAssertEqual(m.count, 9)
        XCTAssertEqual(ResponseFields().measure.count, 0)
        // Names and values, the range's and the age's digits at their most.
        let text = [
            "content-type", "audio/mp4", "content-range", "etag", "\"5f-100\"", "last-modified",
            "Tue, 14 Nov 2023 22:13:20 GMT", "accept-ranges", "bytes", "cache-control", "private, max-age=60",
            "cache-status", "edge; hit", "age", "retry-after", "1",
        ]
        XCTAssertEqual(
            m.bytes, text.reduce(0) { $0 + $1.utf8.count } + 6 + 3 * DecimalText.bytesMax + 2 + DecimalText.bytesMax)
    }

    /// Age from a stored time read from disk: never negative, and a time so far off that the
    /// subtraction overflows gives 0 instead of trapping.
    func testAgeOfAStoredTime() {
        XCTAssertEqual(CacheSource.ageSeconds(nowSeconds: 1_000, storedAtSeconds: 940), 60)
        XCTAssertEqual(CacheSource.ageSeconds(nowSeconds: 1_000, storedAtSeconds: 5_000), 0)
        XCTAssertEqual(CacheSource.ageSeconds(nowSeconds: 1_000, storedAtSeconds: .min), 0)
        XCTAssertEqual(CacheSource.ageSeconds(nowSeconds: -1_000, storedAtSeconds: .max), 0)
    }
}
