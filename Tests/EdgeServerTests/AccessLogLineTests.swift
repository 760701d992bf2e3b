import EdgeEncoding
import XCTest

@testable import EdgeServer

/// The access log's line writer: JSON quoting against literal expectations, decimals against `String(Int)`.
final class AccessLogLineTests: XCTestCase {
    /// What `fill` writes, in memory of exactly `room` bytes (the writer must stay inside it).
    func text(room: Int = 64, _ fill: (inout AccessLog.LineWriter) -> Void) -> String {
        let base = UnsafeMutableRawPointer.allocate(byteCount: room, alignment: 1)
        defer { base.deallocate() }
        var w = AccessLog.LineWriter(base: base)
        fill(&w)
        XCTAssertLessThanOrEqual(w.count, room)
        return String(decoding: UnsafeRawBufferPointer(start: base, count: w.count), as: UTF8.self)
    }

    func testJSONQuotingEscapesQuotesBackslashesAndControlCharacters() {
        let cases: [(String, String)] = [
            ("", #""""#),
            ("/audio/a.m4a?x=1", #""/audio/a.m4a?x=1""#),
            ("say \"hi\"", #""say \"hi\"""#),
            ("back\\slash", #""back\\slash""#),
            ("tab\there\n", #""tab\u0009here\u000a""#),
            ("\u{0}\u{1f}\u{7f}", #""\u0000\u001f\u007f""#),
            ("é✓🎵", "\"é✓🎵\""),
        ]
        for (s, want) in cases {
            XCTAssertEqual(text { $0.quoted(s) }, want, s)
            XCTAssertEqual(AccessLog.quotedCount(s), want.utf8.count, s)
            XCTAssertEqual(JSONText.quoted(s), want, s)
        }
        // Every byte escaped to six, in memory of exactly the size `quotedCount` gives.
        let long = String(repeating: "\u{1}", count: 1000)
        XCTAssertEqual(
            text(room: AccessLog.quotedCount(long)) { $0.quoted(long) },
            "\"" + String(repeating: "\\u0001", count: 1000) + "\"")
    }

    func testDecimalsMatchDescription() {
        for v in [0, 7, 10, 99, 100, 65535, -1, -42, Int.max, Int.min] {
            XCTAssertEqual(text { $0.decimal(v) }, String(v), String(v))
        }
    }
}
