import EdgeEncoding
import XCTest

@testable import EdgeServer

/// The access log's byte writers against the String functions they replaced.
final class AccessLogLineTests: XCTestCase {
    func text(_ fill: (ByteBuffer) -> Void) -> String {
        let b = ByteBuffer(capacity: 64)
        fill(b)
        return String(decoding: b.readable, as: UTF8.self)
    }

    func testJSONQuotingMatchesJSONText() {
        let cases = [
            "", "/audio/a.m4a?x=1", "say \"hi\"", "back\\slash", "tab\there", "nl\n", "\u{0}\u{1f}\u{7f}", "é✓🎵",
            "/a\"b\\c\u{1}d\u{7f}e",
        ]
        for s in cases { XCTAssertEqual(text { $0.append(jsonQuoted: s) }, JSONText.quoted(s), s) }
        // Growth past the initial capacity: every byte escaped to six.
        let long = String(repeating: "\u{1}", count: 1000)
        XCTAssertEqual(text { $0.append(jsonQuoted: long) }, JSONText.quoted(long))
    }

    func testDecimalsMatchDescription() {
        for v in [0, 7, 10, 99, 100, 65535, -1, -42, Int.max, Int.min] {
            XCTAssertEqual(text { $0.append(decimal: v) }, String(v), String(v))
        }
    }
}
