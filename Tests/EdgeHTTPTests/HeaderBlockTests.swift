import XCTest
@testable import EdgeHTTP

final class HeaderBlockTests: XCTestCase {
    func block(_ fields: [(String, String)]) -> HeaderBlock {
        var b = HeaderBlock()
        for (n, v) in fields {
            Array(n.utf8).withUnsafeBytes { nb in Array(v.utf8).withUnsafeBytes { b.append(name: nb, value: $0) } }
        }
        return b
    }

    func testValueIsTheFirstExactMatch() {
        let b = block([("rang", "no"), ("range", "bytes=0-1"), ("ranges", "no"), ("range", "second"), ("x", "")])
        XCTAssertEqual(b.count, 5)
        XCTAssertEqual(b.value("range"), "bytes=0-1")
        XCTAssertEqual(b.value("rang"), "no")
        XCTAssertEqual(b.value("x"), "")
        XCTAssertNil(b.value("r"))
        XCTAssertNil(b.value("Range"))   // names are stored and asked for lower-case
        XCTAssertNil(HeaderBlock().value("range"))
        XCTAssertEqual(b.count(named: "range"), 2)
        XCTAssertEqual(b.count(named: "x"), 1)
        XCTAssertEqual(b.count(named: "y"), 0)
    }

    func testFieldsWalkBackInOrder() {
        let long = String(repeating: "v", count: 70_000)   // a value past 16 bits of length
        let b = block([("a", "1"), ("user-agent", long), ("é", "ü")])
        XCTAssertEqual(b.fields, [HeaderField("a", "1"), HeaderField("user-agent", long), HeaderField("é", "ü")])
        XCTAssertEqual(HeaderBlock(b.fields), b)
        XCTAssertEqual(b.value(named: "é"), "ü")
        XCTAssertEqual(b.value(named: String(repeating: "user-agent", count: 1)), long)
    }

    func testLowercasingAppendFoldsOnlyASCIILetters() {
        var b = HeaderBlock()
        Array("X-Az@[`{".utf8).withUnsafeBytes { n in
            Array("Keep Case".utf8).withUnsafeBytes { b.append(lowercasingName: n, value: $0) }
        }
        XCTAssertEqual(b.fields, [HeaderField("x-az@[`{", "Keep Case")])
    }

    func testJoinMergesEveryCrumbAtTheEnd() {
        var b = block([("cookie", "a=1"), ("range", "bytes=0-1"), ("cookie", "b=2"), ("cookie", ""), ("x", "y")])
        b.join(named: "cookie", separator: "; ")
        XCTAssertEqual(
            b.fields, [HeaderField("range", "bytes=0-1"), HeaderField("x", "y"), HeaderField("cookie", "a=1; b=2; ")])
        var none = block([("x", "y")])
        none.join(named: "cookie", separator: "; ")
        XCTAssertEqual(none.fields, [HeaderField("x", "y")])
    }

    func testRemoveAllEmpties() {
        var b = block([("a", "1"), ("b", "2")])
        b.removeAll()
        XCTAssertEqual(b.count, 0)
        XCTAssertEqual(b.fields, [])
        XCTAssertNil(b.value("a"))
        XCTAssertEqual(b, HeaderBlock())
    }
}

extension HeaderBlockTests {
    /// A copy is a value: appending to one leaves the other as it was, both before and after the
    /// storage grows.
    func testCopiesAreIndependent() {
        var a = block([("a", "1")])
        var b = a
        b.append("b", "2")
        XCTAssertEqual(a.fields, [HeaderField("a", "1")])
        XCTAssertEqual(b.fields, [HeaderField("a", "1"), HeaderField("b", "2")])
        a.append("c", String(repeating: "x", count: 500))   // past the first allocation
        XCTAssertEqual(a.count, 2)
        XCTAssertNil(a.value("b"))
        XCTAssertNil(b.value("c"))
        XCTAssertEqual(b.value("b"), "2")
    }
}
