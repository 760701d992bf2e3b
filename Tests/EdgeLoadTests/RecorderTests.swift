import XCTest
@testable import EdgeLoad

final class RecorderTests: XCTestCase {
    func testTargetsParseOnlyHTTPURLsWithAPortInRange() {
        XCTAssertEqual(
            ReplayTarget.parse("http://127.0.0.1:8080/audio/a.bin?hdnts=x"),
            ReplayTarget(
                tls: false, host: "127.0.0.1", port: 8080, path: "/audio/a.bin?hdnts=x", authority: "127.0.0.1:8080"))
        XCTAssertEqual(ReplayTarget.parse("https://[::1]:8443/a")?.host, "::1")
        XCTAssertEqual(ReplayTarget.parse("https://[::1]:8443/a")?.port, 8443)
        XCTAssertEqual(ReplayTarget.parse("https://127.0.0.1")?.port, 443)
        XCTAssertEqual(ReplayTarget.parse("http://127.0.0.1")?.path, "/")
        for bad in [
            "ftp://127.0.0.1/a", "http://127.0.0.1:0/a", "http://127.0.0.1:65536/", "http://:80/", "http://[::1/a",
        ] {
            XCTAssertNil(ReplayTarget.parse(bad), bad)
        }
    }

    func testHistogramsMergeWithoutLossAndClampOutOfRangeValues() {
        var a = LatencyHistogram(), b = LatencyHistogram()
        for us in 1...1000 { a.record(microseconds: Int64(us) * 1000) }   // 1 ms ... 1 s
        for _ in 0..<1000 { b.record(microseconds: 2_000_000) }   // 2 s
        b.record(microseconds: -5)   // a clock step backwards: recorded as 0, not dropped
        b.record(microseconds: Int64.max)   // beyond an hour: recorded as the maximum
        var merged = a
        merged.add(b)
        XCTAssertEqual(merged.count, 2002)
        let s = try! XCTUnwrap(merged.summaryMilliseconds)
        XCTAssertEqual(s.p50, 1000, accuracy: 1)
        XCTAssertEqual(s.p90, 2000, accuracy: 2)
        XCTAssertEqual(s.max, 3_600_000, accuracy: 3600)
        XCTAssertEqual(try XCTUnwrap(a.summaryMilliseconds).p99, 990, accuracy: 1)
        XCTAssertNil(LatencyHistogram().summaryMilliseconds)
    }

    func testRecordersAddUp() {
        var a = Recorder(), b = Recorder()
        a.requests = 3; a.responses = 2; a.statuses[200] = 2; a.error("timeout")
        a.ttfbHeadCorrected.record(microseconds: 500)
        b.requests = 5; b.responses = 5; b.statuses[200] = 4; b.statuses[503] = 1; b.error("timeout");
        b.error("status_5xx")
        b.ttfbHeadCorrected.record(microseconds: 900)
        a.add(b)
        XCTAssertEqual(a.requests, 8)
        XCTAssertEqual(a.statuses, [200: 6, 503: 1])
        XCTAssertEqual(a.errors, ["timeout": 2, "status_5xx": 1])
        XCTAssertEqual(a.errorCount, 3)
        XCTAssertEqual(a.ttfbHeadCorrected.count, 2)
        let report = a.report(durationSeconds: 2, generatorBehind: false)
        XCTAssertEqual(report.requests_per_second, 3.5)
        XCTAssertEqual(report.statuses, ["200": 6, "503": 1])
    }
}
