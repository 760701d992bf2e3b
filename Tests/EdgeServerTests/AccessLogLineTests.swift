import EdgeEncoding
import XCTest

@testable import EdgeServer

/// The access log's byte writers: JSON quoting against literal expectations, decimals against `String(Int)`.
final class AccessLogLineTests: XCTestCase {
    func text(_ fill: (ByteBuffer) -> Void) -> String {
        let b = ByteBuffer(capacity: 64)
        fill(b)
        return String(decoding: b.readable, as: UTF8.self)
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
            XCTAssertEqual(text { $0.append(jsonQuoted: s) }, want, s)
            XCTAssertEqual(JSONText.quoted(s), want, s)
        }
        // Growth past the buffer's initial capacity: every byte escaped to six.
        let long = String(repeating: "\u{1}", count: 1000)
        XCTAssertEqual(text { $0.append(jsonQuoted: long) }, "\"" + String(repeating: "\\u0001", count: 1000) + "\"")
    }

    func testDecimalsMatchDescription() {
        for v in [0, 7, 10, 99, 100, 65535, -1, -42, Int.max, Int.min] {
            XCTAssertEqual(text { $0.append(decimal: v) }, String(v), String(v))
        }
    }
}
