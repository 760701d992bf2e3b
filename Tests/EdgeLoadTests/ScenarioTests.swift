import EdgeConfig
import Foundation
import XCTest

@testable import EdgeLoad

final class ScenarioTests: XCTestCase {
    let base = """
        thresholds = ["ttfb_p99_ms < 50", "time_to_first_audio_p99_ms <= 200", "error_rate < 0.001"]
        [target]
        edge = "http://127.0.0.1:8080"
        token_key_hex = "00112233"
        [content]
        tracks = ["a", "b"]
        [arrivals]
        model = "poisson"
        stages = [{ rate = 5, seconds = 2 }, { rate = 50, seconds = 3 }]
        """

    func testAScenarioParsesWithItsStagesAndThresholds() throws {
        let s = try Scenario.parse(base)
        XCTAssertEqual(
            s.arrivals, .open(poisson: true, stages: [.init(rate: 5, seconds: 2), .init(rate: 50, seconds: 3)]))
        XCTAssertEqual(s.arrivalSeconds, 5)
        XCTAssertEqual(s.durationSeconds, 65, "arrivals and a minute to finish, unless set")
        XCTAssertEqual(
            s.thresholds.map(\.text), ["ttfb_p99_ms < 50", "time_to_first_audio_p99_ms <= 200", "error_rate < 0.001"])
        XCTAssertTrue(s.http2)
        XCTAssertNil(s.auth)
    }

    /// The scenarios shipped in loadtest/scenarios parse (their track list from a packager listing).
    func testTheShippedScenariosParse() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let tracks = FileManager.default.temporaryDirectory.appendingPathComponent("tracks-\(getpid()).txt")
        try "t1\tDemo Track 1\nt2\tDemo Track 2\n".write(to: tracks, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: tracks) }
        for name in ["steady", "release-drop"] {
            let text = try String(
                contentsOf: root.appendingPathComponent("loadtest/scenarios/\(name).toml"), encoding: .utf8)
            let s = try Scenario.parse(text.replacingOccurrences(of: "run/tracks.txt", with: tracks.path))
            XCTAssertEqual(s.tracks, ["t1", "t2"], name)
            XCTAssertNotNil(s.auth, name)
            XCTAssertFalse(s.thresholds.isEmpty, name)
        }
        XCTAssertEqual(
            try Scenario.parse(
                String(contentsOf: root.appendingPathComponent("loadtest/scenarios/release-drop.toml"), encoding: .utf8)
                    .replacingOccurrences(of: "run/tracks.txt", with: tracks.path)
            ).arrivals, .releaseDrop(players: 2000, jitterMilliseconds: 2000))
    }

    func testEveryBadValueIsRefusedNamingItsKey() {
        let cases: [(String, String)] = [
            (base.replacingOccurrences(of: "token_key_hex = \"00112233\"", with: ""), "target.token_key_hex"),
            (base.replacingOccurrences(of: "[\"a\", \"b\"]", with: "[]"), "content.tracks"),
            (base.replacingOccurrences(of: "[\"a\", \"b\"]", with: "[\"../x\"]"), "content.tracks"),
            (base.replacingOccurrences(of: "rate = 5,", with: "rate = -5,"), "arrivals.stages[0].rate"),
            (base.replacingOccurrences(of: "seconds = 3", with: "seconds = 3, extra = 1"), "extra"),
            (base.replacingOccurrences(of: "\"poisson\"", with: "\"release_drop\""), "arrivals.players"),
            (base.replacingOccurrences(of: "\"poisson\"", with: "\"bursty\""), "arrivals.model"),
            (base.replacingOccurrences(of: "http://127.0.0.1:8080", with: "http://edge.example:8080"), "target.edge"),
            (base + "\n[auth]\nurl = \"http://127.0.0.1:1\"\n", "auth"),
            (base + "\n[auth]\nurl = \"https://127.0.0.1:1\"\njwt = \"x\"\n", "auth.url"),
            (base + "\n[player]\nprefetch_at = 1.5\n", "player.prefetch_at"),
            (base + "\n[run]\nthreads = 0\n", "run.threads"),
            (base + "\n[run]\nduration_seconds = 0\n", "run.duration_seconds"),
            (
                "thresholds = [\"latency < 5\"]\n" + base.split(separator: "\n").dropFirst().joined(separator: "\n"),
                "thresholds"
            ),
        ]
        for (text, key) in cases {
            XCTAssertThrowsError(try Scenario.parse(text), key) { e in
                XCTAssertTrue((e as? ConfigError)?.description.contains(key) ?? false, "\(e) should name \(key)")
            }
        }
    }

    func testThresholdsParseCheckAndFailWhenNotMeasured() throws {
        XCTAssertEqual(try Threshold.parse("ttfb_p99_ms<50").comparison, .less)
        XCTAssertEqual(try Threshold.parse(" rebuffers_per_play >= 0.5 ").comparison, .greaterOrEqual)
        XCTAssertThrowsError(try Threshold.parse("ttfb_p99_ms ~ 5"))
        XCTAssertThrowsError(try Threshold.parse("ttfb_p99_ms < fast"))
        XCTAssertThrowsError(try Threshold.parse("nope_ms < 5"))
        var rec = Recorder()
        rec.requests = 1000
        rec.error("timeout", count: 2)
        for us in 1...100 { rec.ttfbHeadCorrected.record(microseconds: Int64(us) * 1000) }
        let report = rec.report(durationSeconds: 1, generatorBehind: false)
        XCTAssertTrue(try Threshold.parse("ttfb_p99_ms < 100").check(report).passed)
        XCTAssertFalse(try Threshold.parse("ttfb_p99_ms < 98").check(report).passed)
        XCTAssertFalse(try Threshold.parse("error_rate < 0.001").check(report).passed)
        XCTAssertTrue(try Threshold.parse("error_rate <= 0.002").check(report).passed)
        let unmeasured = try Threshold.parse("time_to_first_audio_p99_ms < 1000").check(report)
        XCTAssertFalse(unmeasured.passed, "a figure the run did not measure fails its bound")
        XCTAssertNil(unmeasured.actual)
    }

    func testTimeSeriesMergeSecondBySecond() {
        var a = TimeSeries(), b = TimeSeries()
        a.record(second: 0, microseconds: 1000)
        b.record(second: 0, microseconds: 3000)
        b.record(second: 2, microseconds: 5000)
        b.record(second: TimeSeries.secondsMax, microseconds: 1)   // past the bound: not kept, no trap
        a.add(b)
        XCTAssertEqual(a.points.map(\.second), [0, 2])
        XCTAssertEqual(a.points.map(\.count), [2, 1])
        XCTAssertEqual(a.points[0].max, 3, accuracy: 0.05)
    }

    func testComparisonFlattensEveryNumberOfBothReports() {
        let a: [String: Any] = ["requests": 10, "ttfb_ms": ["corrected": ["p99": 5.0]], "only_a": 1]
        let b: [String: Any] = ["requests": 20, "ttfb_ms": ["corrected": ["p99": 2.5]], "ttfb_per_second": [1, 2]]
        let rows = ReportComparison.compare(a, b)
        XCTAssertEqual(rows.map(\.key), ["only_a", "requests", "ttfb_ms.corrected.p99"])
        XCTAssertEqual(rows[1].b, 20)
        XCTAssertNil(rows[0].b)
        let table = ReportComparison.table(rows, nameA: "A", nameB: "B")
        XCTAssertTrue(table.contains("0.500"), table)   // 2.5 / 5
    }

    func testTheHTMLReportIsSelfContainedAndEscapesWhatItQuotes() {
        var rec = Recorder()
        rec.requests = 3
        for us in [1000, 2000, 3000] as [Int64] {
            rec.ttfbHeadCorrected.record(microseconds: us)
            rec.players.timeToFirstAudio.record(microseconds: us * 10)
        }
        let html = HTMLReport.render(
            title: "run <script>", report: rec.report(durationSeconds: 1, generatorBehind: false, withPlayers: true),
            recorder: rec)
        XCTAssertFalse(html.contains("<script"))
        XCTAssertTrue(html.contains("run &lt;script&gt;"))
        for id in ["spectrum", "over-time", "hit-miss", "ttfa"] { XCTAssertTrue(html.contains("id=\"\(id)\""), id) }
        XCTAssertTrue(html.contains("<polyline"))
    }
}
