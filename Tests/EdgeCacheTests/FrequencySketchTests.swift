import EdgeEncoding
import XCTest
@testable import EdgeCache

/// The count-min sketch's contract, which the policies' admission duels rely on.
final class FrequencySketchTests: XCTestCase {
    /// A key counted n times reads n (up to the counters' 15) when nothing else shares its
    /// counters: conservative update raises each of its four counters once per increment.
    func testAKeyAloneReadsItsCountUpToFifteen() {
        var sketch = FrequencySketch(expectedEntries: 1024)
        for n in 1...20 {
            sketch.increment(7)
            XCTAssertEqual(sketch.frequency(7), min(n, 15), "after \(n) increments")
        }
        XCTAssertEqual(sketch.frequency(8), 0, "a key never counted shares no counter with the one that was")
    }

    /// Count-min never under-estimates: with many keys sharing counters, each reads at least its
    /// own count (before any halving; the counts stay below the sample size).
    func testNoKeyReadsLessThanItsCount() {
        var sketch = FrequencySketch(expectedEntries: 64)   // 64 words: keys collide a lot
        var rng = SplitMix64(seed: 11)
        var counts: [UInt64: Int] = [:]
        for _ in 0..<600 {   // under 10 × width, the halving point
            let key = rng.next() % 300
            sketch.increment(key)
            counts[key, default: 0] += 1
        }
        for (key, n) in counts {
            XCTAssertGreaterThanOrEqual(sketch.frequency(key), min(n, 15), "key \(key) counted \(n) times")
        }
    }

    /// Every 10 × width increments every counter halves: what was popular fades.
    func testCountsHalveAtTheSampleSize() {
        var sketch = FrequencySketch(expectedEntries: 64)
        for _ in 0..<12 { sketch.increment(1) }
        XCTAssertEqual(sketch.frequency(1), 12)
        // 640 increments in all reach the sample size; the last of them is key 2's.
        var k: UInt64 = 1_000
        for _ in 12..<639 {
            sketch.increment(k)
            k += 1
        }
        XCTAssertEqual(sketch.frequency(1), 12, "no halving before the sample size")
        sketch.increment(2)
        XCTAssertEqual(sketch.frequency(1), 6, "halved at the sample size")
    }
}
