import Foundation
import EdgeEncoding
import XCTest

final class EncodingTests: XCTestCase {
    func testHexRoundTripAndStrictDecode() {
        XCTAssertEqual(Hex.encode([0x00, 0x0f, 0xa5, 0xff]), "000fa5ff")
        XCTAssertEqual(Hex.decode("000FA5ff"), [0x00, 0x0f, 0xa5, 0xff])
        XCTAssertEqual(Hex.decode(""), [])
        // The decoder it replaced parsed pairs with UInt8(_:radix:), which accepts a sign: "+f" was 15.
        XCTAssertNil(Hex.decode("+f"))
        XCTAssertNil(Hex.decode("-1"))
        XCTAssertNil(Hex.decode("abc"), "odd length")
        XCTAssertNil(Hex.decode("0g"))
        XCTAssertEqual(Hex.encode(0xab, width: 2), "ab")
        XCTAssertEqual(Hex.encode(5, width: 4), "0005")
        XCTAssertEqual(Hex.encode(0x1ff, width: 2), "ff", "higher digits dropped")
        // Every byte value, from contiguous storage and from a sequence without it (both paths).
        let all = (0...255).map { UInt8($0) }
        let expected = all.map { String(format: "%02x", $0) }.joined()
        XCTAssertEqual(Hex.encode(all), expected)
        XCTAssertEqual(Hex.encode(all[...]), expected)
        XCTAssertEqual(Hex.encode(all.lazy.map { $0 }), expected)
        XCTAssertEqual(Hex.encode([UInt8]()), "")
        XCTAssertEqual(Hex.decode(expected), all)
    }

    func testDecimalTextAgainstLiterals() {
        func text(_ v: Int) -> String {
            withUnsafeTemporaryAllocation(byteCount: DecimalText.bytesMax, alignment: 1) { buf in
                let n = DecimalText.write(v, into: buf.baseAddress!)
                return String(decoding: UnsafeRawBufferPointer(rebasing: buf[0..<n]), as: UTF8.self)
            }
        }
        XCTAssertEqual(text(0), "0")
        XCTAssertEqual(text(7), "7")
        XCTAssertEqual(text(10), "10")
        XCTAssertEqual(text(-1), "-1")
        XCTAssertEqual(text(120_000), "120000")
        XCTAssertEqual(text(Int.max), "9223372036854775807")
        XCTAssertEqual(text(Int.min), "-9223372036854775808")
        // Each digit count's first and last value, either sign, and seeded random values of every
        // magnitude: the digits are counted and written two at a time, so each length is its own case.
        var p = 1
        for _ in 0..<18 {
            for v in [p, p - 1, 10 * p - 1, -p, -(10 * p - 1)] { XCTAssertEqual(text(v), String(v)) }
            p *= 10
        }
        var rng = SplitMix64(seed: 12)
        for _ in 0..<2000 {
            let v = Int(truncatingIfNeeded: rng.next() >> (rng.next() % 64))
            XCTAssertEqual(text(v), String(v))
            if v != Int.min { XCTAssertEqual(text(-v), String(-v)) }
        }
    }

    func testSameBytes() {
        XCTAssertTrue(sameBytes("/audio/t0000/96/008.bin", "/audio/t0000/96/" + "008.bin"))
        XCTAssertTrue(sameBytes("", ""))
        XCTAssertFalse(sameBytes("/audio/a", "/audio/b"))
        XCTAssertFalse(sameBytes("/audio/a", "/audio/ab"))
        XCTAssertFalse(sameBytes("", "a"))
        // One character, two spellings: equal to `==`, not as bytes (nor to an FNV-1a of them).
        let composed = "/audio/\u{E9}", decomposed = "/audio/e\u{301}"
        XCTAssertEqual(composed, decomposed)
        XCTAssertFalse(sameBytes(composed, decomposed))
        XCTAssertNotEqual(FNV1a.hash(composed), FNV1a.hash(decomposed))
    }

    func testJSONQuoting() {
        XCTAssertEqual(JSONText.quoted("a\"b\\c"), "\"a\\\"b\\\\c\"")
        XCTAssertEqual(JSONText.quoted("\n\u{1}\u{7f}"), "\"\\u000a\\u0001\\u007f\"")
        XCTAssertEqual(JSONText.quoted("é♪"), "\"é♪\"")
        // Nothing to escape: the bytes as they are, between quotes.
        XCTAssertEqual(JSONText.quoted(""), "\"\"")
        XCTAssertEqual(JSONText.quoted("exp=1~acl=/audio/*~hmac=ab"), "\"exp=1~acl=/audio/*~hmac=ab\"")
        // Escapes at the start, the end, side by side and between runs of plain bytes.
        XCTAssertEqual(JSONText.quoted("\"ab\\\\c\n"), "\"\\\"ab\\\\\\\\c\\u000a\"")
        XCTAssertEqual(JSONText.quoted("\u{1}"), "\"\\u0001\"")
        // Seeded byte strings against a byte-at-a-time rendering of the escaping rules: the
        // writer copies runs of plain bytes whole, and every boundary between a run and an escape
        // is met here.
        var rng = SplitMix64(seed: 12)
        for _ in 0..<2000 {
            let length = Int(rng.next() % 40)
            let alphabet: [UInt8] = [0x00, 0x09, 0x0A, 0x1F, 0x20, 0x22, 0x41, 0x5C, 0x61, 0x7E, 0x7F, 0xC3, 0xA9]
            let bytes = (0..<length).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }
            var want: [UInt8] = [0x22]
            for b in bytes {
                if b == 0x22 || b == 0x5C {
                    want += [0x5C, b]
                } else if b < 0x20 || b == 0x7F {
                    want += Array(String(format: "\\u%04x", Int(b)).utf8)
                } else {
                    want.append(b)
                }
            }
            want.append(0x22)
            let got = bytes.withUnsafeBufferPointer { src -> [UInt8] in
                let count = JSONText.quotedCount(src)
                let out = UnsafeMutableRawPointer.allocate(byteCount: count, alignment: 1)
                defer { out.deallocate() }
                let n = JSONText.writeQuoted(src, into: out)
                XCTAssertEqual(n, count)
                return Array(UnsafeRawBufferPointer(start: out, count: n))
            }
            XCTAssertEqual(got, want, "\(bytes)")
        }
    }

    func testFNV1aPublishedValues() {
        // FNV-1a 64 test vectors (Fowler, Noll, Vo): "" and "a".
        XCTAssertEqual(FNV1a.hash(""), 0xcbf2_9ce4_8422_2325)
        XCTAssertEqual(FNV1a.hash("a"), 0xaf63_dc4c_8601_ec8c)
        XCTAssertEqual(FNV1a.hash("foobar"), 0x8594_4171_f739_67e8)
        // Longer than a small string's 15 bytes (stored apart), and a byte at a time through
        // `add(_: UInt8)`: the same value (computed with Python from the definition).
        let long = "/audio/t0000/96/008.bin/with-a-path-longer-than-fifteen-bytes"
        XCTAssertEqual(FNV1a.hash(long), 0x87d0_32f6_cc27_50ce)
        var bytewise = FNV1a()
        for b in Array(long.utf8) { bytewise.add(b) }
        XCTAssertEqual(bytewise.value, 0x87d0_32f6_cc27_50ce)
    }

    func testSplitMix64IsSeededAndBounded() {
        var a = SplitMix64(seed: 7), b = SplitMix64(seed: 7), c = SplitMix64(seed: 8)
        let first = a.next()
        XCTAssertEqual(first, b.next())
        XCTAssertNotEqual(first, c.next())
        for _ in 0..<1000 { XCTAssertTrue((0..<3).contains(a.next(below: 3))) }
    }
}
