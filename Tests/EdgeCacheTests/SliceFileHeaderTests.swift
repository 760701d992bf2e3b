import XCTest
@testable import EdgeCache

/// Start-up reads slice headers from a disk it must not trust: every field is checked, a bad
/// header is a reason, never a trap.
final class SliceFileHeaderTests: XCTestCase {
    let limits = SliceFileHeader.Limits(sliceBytes: 65536, objectBytesMax: 1 << 32)
    let good = SliceFileHeader(
        path: "/audio/a/160.opus", index: 2, dataLength: 65536, objectSize: 200_000, storedAtSeconds: 1_800_000_000,
        digest: [UInt8](repeating: 7, count: 32), etag: "\"e\"", lastModified: "Sat, 21 Nov 2026 00:00:00 GMT",
        contentType: "audio/ogg")

    func decode(_ bytes: [UInt8], fileBytes: Int? = nil) -> SliceFileHeader.Decoded {
        bytes.withUnsafeBytes { SliceFileHeader.decode($0, fileBytes: fileBytes ?? (4096 + 65536), limits: limits) }
    }

    func patch(_ h: [UInt8], at offset: Int, u64 v: UInt64) -> [UInt8] {
        var h = h
        withUnsafeBytes(of: v.littleEndian) { for (i, b) in $0.enumerated() { h[offset + i] = b } }
        return h
    }

    func testRoundTrip() {
        XCTAssertEqual(decode(good.encoded()), .ok(good))
        var last = good; last.index = 3; last.dataLength = 200_000 - 3 * 65536
        XCTAssertEqual(decode(last.encoded(), fileBytes: 4096 + last.dataLength), .ok(last))
    }

    func testLyingFieldsAreRefusedNotTrapped() {
        let h = good.encoded()
        // data length (offset 12), object size (20), index (28): absurd values of every kind.
        for v: UInt64 in [0, UInt64(Int64.max), UInt64.max, 1 << 62, 1 << 40, 65537] {
            guard case .bad = decode(patch(h, at: 12, u64: v)) else { return XCTFail("data length \(v) accepted") }
        }
        for v: UInt64 in [0, UInt64(Int64.max), UInt64.max, 1_000_000_000_000_000_000, (1 << 32) + 1] {
            guard case .bad = decode(patch(h, at: 20, u64: v)) else { return XCTFail("object size \(v) accepted") }
        }
        for v: UInt64 in [UInt64.max, UInt64(Int64.max), 4, 1 << 50] {
            guard case .bad = decode(patch(h, at: 28, u64: v)) else { return XCTFail("index \(v) accepted") }
        }
        guard case .bad = decode(h, fileBytes: 4096 + 100) else { return XCTFail("a truncated file accepted") }
        guard case .bad = decode(Array(h.prefix(100))) else { return XCTFail("a short header accepted") }
        var magic = h; magic[0] = 0
        guard case .bad = decode(magic) else { return XCTFail("bad magic accepted") }
        var str = h; str[76] = 0xFF; str[77] = 0xFF   // key length 65535
        guard case .bad = decode(str) else { return XCTFail("string past the header accepted") }
    }

    func testEveryTruncationAndByteFlipDecodesOrFailsCleanly() {
        let h = good.encoded()
        for i in 0..<200 {
            var b = h
            b[i] ^= 0xA5
            _ = decode(b)   // must return, whatever it says
        }
    }
}
