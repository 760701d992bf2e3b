import XCTest
import CEdgeCrypto
@testable import EdgePackager

final class OggTests: XCTestCase {
    /// A page with `body` bytes in one or more 255-byte lacing segments.
    func page(granule: Int64, body: [UInt8]) -> [UInt8] {
        var lacing: [UInt8] = []
        var n = body.count
        repeat { lacing.append(UInt8(min(n, 255))); n -= 255 } while n >= 0 && lacing.last == 255
        var h: [UInt8] = Array("OggS".utf8) + [0, 0]
        for k in 0..<8 { h.append(UInt8(truncatingIfNeeded: granule >> (8 * Int64(k)))) }
        h += [1, 0, 0, 0] + [0, 0, 0, 0] + [0, 0, 0, 0] + [UInt8(lacing.count)] + lacing
        return h + body
    }

    func opusHead(preSkip: Int) -> [UInt8] {
        Array("OpusHead".utf8) + [1, 2, UInt8(preSkip & 0xFF), UInt8(preSkip >> 8), 0x80, 0xBB, 0, 0, 0, 0, 0]
    }

    func testLayout() throws {
        var stream =
            page(granule: 0, body: opusHead(preSkip: 312))
            + page(granule: 0, body: Array("OpusTags".utf8) + [UInt8](repeating: 0, count: 20))
        let initLength = stream.count
        for s in 1...25 {
            stream += page(granule: Int64(s) * 48000 + 312, body: [UInt8](repeating: UInt8(s), count: 300 + s))
        }   // 1 s pages
        let pages = try Ogg.pages(stream)
        XCTAssertEqual(pages.count, 27)
        XCTAssertEqual(try Ogg.opusPreSkip(stream, pages[0]), 312)
        let l = try Ogg.layout(pages, preSkip: 312, seconds: 10)
        XCTAssertEqual(l.initLength, initLength)
        XCTAssertEqual(l.chunks.count, 3)
        var at = initLength
        for c in l.chunks { XCTAssertEqual(c.offset, at); at += c.length }
        XCTAssertEqual(at, stream.count)
        XCTAssertEqual(l.chunks.map(\.durationMs), [10000, 10000, 5000])
        XCTAssertEqual(l.durationMs, 25000)
    }

    func testBrokenStreams() {
        let good = page(granule: 0, body: opusHead(preSkip: 0))
        XCTAssertThrowsError(try Ogg.pages([]))
        XCTAssertThrowsError(try Ogg.pages(good + [0x00, 0x01]))
        XCTAssertThrowsError(try Ogg.pages(Array(good.dropLast(3))))
        XCTAssertThrowsError(try Ogg.layout(try Ogg.pages(good), preSkip: 0, seconds: 10))   // headers only
        XCTAssertThrowsError(
            try Ogg.opusPreSkip(
                page(granule: 0, body: Array("Vorbis..........".utf8)),
                try Ogg.pages(page(granule: 0, body: Array("Vorbis..........".utf8)))[0]))
    }

    /// NIST SP 800-38A, F.5.1 (CTR-AES128.Encrypt): an independent answer, not this code's own.
    /// The counter block ends in ...fe ff, so the fourth block checks the carry into the next byte.
    func testCTRMatchesNISTVectors() {
        let key = hexBytes("2b7e151628aed2a6abf7158809cf4f3c"), iv = hexBytes("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
        let plain = hexBytes(
            "6bc1bee22e409f96e93d7e117393172a" + "ae2d8a571e03ac9c9eb76fac45af8e51"
                + "30c81c46a35ce411e5fbc1191a0a52ef" + "f69f2445df4f9b17ad2b417be66c3710")
        let expected = hexBytes(
            "874d6191b620e3261bef6864990db6ce" + "9806f66b7970fdff8617187bb9fffdff"
                + "5ae4df3edbd5d35e5b4f09020db03eab" + "1e031dda2fbe03d1792170a0f3009cee")
        var cipher = [UInt8](repeating: 0, count: plain.count)
        XCTAssertEqual(edge_aes128_ctr(key, iv, 0, plain, &cipher, plain.count), 0)
        XCTAssertEqual(cipher, expected)
        // Any range alone, starting mid-block, matches the same published bytes.
        for (start, count) in [(1, 15), (16, 16), (17, 30), (47, 17), (63, 1), (5, 59)] {
            var out = [UInt8](repeating: 0, count: count)
            XCTAssertEqual(
                edge_aes128_ctr(key, iv, UInt64(start), Array(plain[start..<(start + count)]), &out, count), 0)
            XCTAssertEqual(out, Array(expected[start..<(start + count)]), "range \(start)+\(count)")
        }
    }

    private func hexBytes(_ text: String) -> [UInt8] {
        var bytes: [UInt8] = []
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(index, offsetBy: 2)
            bytes.append(UInt8(text[index..<next], radix: 16)!)
            index = next
        }
        return bytes
    }

    func testCTRAnyRangeDecryptsAlone() {
        var key = [UInt8](repeating: 0, count: 16), iv = [UInt8](repeating: 0, count: 16)
        _ = edge_random_bytes(&key, 16); _ = edge_random_bytes(&iv, 8)
        iv[15] = 0xF0   // counters carry across bytes
        let plain = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 * 31 + 7) }
        var cipher = [UInt8](repeating: 0, count: plain.count)
        XCTAssertEqual(edge_aes128_ctr(key, iv, 0, plain, &cipher, plain.count), 0)
        XCTAssertNotEqual(cipher, plain)
        for _ in 0..<200 {
            let a = Int.random(in: 0..<plain.count), n = Int.random(in: 1...min(5000, plain.count - a))
            var out = [UInt8](repeating: 0, count: n)
            _ = edge_aes128_ctr(key, iv, UInt64(a), Array(cipher[a..<(a + n)]), &out, n)
            XCTAssertEqual(out, Array(plain[a..<(a + n)]), "range \(a)+\(n)")
        }
    }
}

/// Found by the Ogg fuzzer: granule positions come from the file and must be bounded before any
/// arithmetic.
final class OggHostileTests: XCTestCase {
    func testHugeOrBackwardGranulesAreErrorsNotTraps() {
        let header = Ogg.Page(offset: 0, length: 47, granule: 0)
        for granules: [Int64] in [[Int64.max], [Int64.max / 1000 + 1], [Int64.min], [-2], [480_000, 100]] {
            var pages = [header]
            var offset = 47
            for g in granules { pages.append(Ogg.Page(offset: offset, length: 100, granule: g)); offset += 100 }
            XCTAssertThrowsError(try Ogg.layout(pages, preSkip: 312, seconds: 10), "\(granules)")
        }
        XCTAssertThrowsError(
            try Ogg.layout([header, Ogg.Page(offset: 47, length: 100, granule: 480_000)], preSkip: -1, seconds: 10))
        // -1 (no packet ends on the page) inside a stream is fine.
        let ok = try? Ogg.layout(
            [
                header, Ogg.Page(offset: 47, length: 100, granule: -1),
                Ogg.Page(offset: 147, length: 100, granule: 480_312),
            ],
            preSkip: 312, seconds: 10)
        XCTAssertEqual(ok?.durationMs, 10_000)
    }
}
