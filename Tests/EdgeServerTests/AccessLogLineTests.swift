import Foundation
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

    /// A whole line in exactly the room `lineRoom` gives, both when the buffer has room for the
    /// worst case and when it does not (the exact escaped size): every quoted field all escapes,
    /// every number at its longest. The line must fit and be the JSON it claims to be.
    func testAWholeLineFitsTheRoomReservedForIt() throws {
        let escapes = String(repeating: "\u{1}\"", count: 40)
        let r = AccessLog.Record(
            client: "[2001:db8::1]:65535", protocolName: "HTTP/2", method: escapes, path: "/a" + escapes,
            status: Int.min, bytesSent: Int.min, range: escapes, ttfbMicroseconds: Int64.min,
            totalMicroseconds: Int64.min, token: String(repeating: "t", count: 300), cache: escapes)
        let prefix = "2026-11-23T16:40:00"
        for writable in [0, Int.max] {
            let room = AccessLog.lineRoom(r, timePrefix: prefix, writable: writable)
            let line = text(room: room) { AccessLog.write(r, timePrefix: prefix, milliseconds: 999, into: &$0) }
            XCTAssertEqual(line.last, "\n")
            let object = try XCTUnwrap(
                JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "writable \(writable)")
            XCTAssertEqual(object["path"] as? String, "/a" + escapes)
            XCTAssertEqual(object["cache"] as? String, escapes)
            XCTAssertEqual(object["time"] as? String, prefix + ".999Z")
        }
    }
}
