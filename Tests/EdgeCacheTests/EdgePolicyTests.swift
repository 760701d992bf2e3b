import EdgeEncoding
import XCTest
@testable import EdgeCache
import Foundation

final class EdgePolicyTests: XCTestCase {
    func testNeverExceedsCapacityAndReportsEvictions() {
        var rng = SplitMix64(seed: 42)
        var p = EdgePolicy(capacityBytes: 100_000, expectedEntries: 1000)
        var cached = Set<UInt64>()
        for _ in 0..<50_000 {
            let key = rng.next() % 2000
            let size = Int(rng.next() % 20_000) + 1
            if p.recordAccess(key) { XCTAssertTrue(cached.contains(key)); continue }
            XCTAssertFalse(cached.contains(key))
            let (admitted, evicted) = p.insert(key, size: size)
            for e in evicted { XCTAssertTrue(cached.remove(e) != nil, "evicted a key that was not cached") }
            if admitted { cached.insert(key) }
            XCTAssertLessThanOrEqual(p.usedBytes, 100_000)
            XCTAssertEqual(p.count, cached.count)
        }
        for k in cached { XCTAssertTrue(p.contains(k)) }
    }

    func testOversizedNeverAdmitted() {
        var p = EdgePolicy(capacityBytes: 1000, expectedEntries: 10)
        XCTAssertFalse(p.insert(1, size: 1001).admitted)
        XCTAssertFalse(p.contains(1))
        XCTAssertTrue(p.insert(2, size: 1000).admitted)
    }

    func testScanResistance() {
        // A hot set requested over and over survives a long one-off scan; under LRU it does not.
        let capacity = 100 * 1000
        let edge = EdgePolicySimulation(
            name: "edge", policy: EdgePolicy(capacityBytes: capacity, expectedEntries: 10_000))
        let lru = LRUPolicy(capacityBytes: capacity)
        for policy in [edge, lru] as [SimulatedPolicy] {
            for _ in 0..<20 { for k in 0..<50 { _ = policy.access(UInt64(k), size: 1000) } }
            for k in 1000..<6000 { _ = policy.access(UInt64(k), size: 1000) }   // the scan
        }
        let edgeHits = (0..<50).filter { edge.access(UInt64($0), size: 1000) }.count
        let lruHits = (0..<50).filter { lru.access(UInt64($0), size: 1000) }.count
        XCTAssertGreaterThanOrEqual(edgeHits, 45)
        XCTAssertEqual(lruHits, 0)
    }

    func testPinsHoldUntilExpiry() {
        var p = EdgePolicy(capacityBytes: 10_000, expectedEntries: 100)
        _ = p.insert(7, size: 4000)
        XCTAssertTrue(p.pin(7, untilSeconds: 100))
        XCTAssertFalse(p.pin(8, untilSeconds: 100), "only cached entries can be pinned")
        for k in 100..<300 { _ = p.recordAccess(UInt64(k)); _ = p.insert(UInt64(k), size: 1000) }
        XCTAssertTrue(p.contains(7))
        XCTAssertLessThanOrEqual(p.usedBytes, 10_000)
        // Unpinned capacity is what is left: an entry bigger than that is refused.
        XCTAssertFalse(p.insert(999, size: 7000).admitted)
        p.expirePins(nowSeconds: 99)
        XCTAssertTrue(p.isPinned(7))
        p.expirePins(nowSeconds: 100)
        XCTAssertFalse(p.isPinned(7))
        // Newcomers requested twice earn their place in main and push the old entry out.
        for k in 300..<400 {
            _ = p.recordAccess(UInt64(k)); _ = p.insert(UInt64(k), size: 1000); _ = p.recordAccess(UInt64(k))
        }
        XCTAssertFalse(p.contains(7), "after the pin expires it is evictable again")
    }

    func testResizeEvictsDownToTheNewCapacityButNeverAPin() {
        var p = EdgePolicy(capacityBytes: 20_000, expectedEntries: 100)
        for k in 0..<20 { XCTAssertTrue(p.insert(UInt64(k), size: 1000).admitted) }
        XCTAssertTrue(p.pin(3, untilSeconds: 100))
        for k in 10..<20 { _ = p.recordAccess(UInt64(k)) }   // the second half is the hot half
        let evicted = Set(p.resize(capacityBytes: 8000))
        XCTAssertEqual(p.capacityBytes, 8000)
        XCTAssertEqual(p.usedBytes, 8000)
        XCTAssertEqual(evicted.count, 12)
        XCTAssertFalse(evicted.contains(3), "a pinned entry is never evicted")
        for k in 0..<20 { XCTAssertEqual(p.contains(UInt64(k)), !evicted.contains(UInt64(k)), "key \(k)") }
        XCTAssertTrue(evicted.isSuperset(of: [0, 1, 2, 4, 5, 6, 7, 8, 9]), "the cold entries go first")
        // Pinned bytes above the new capacity stay; everything else goes, and nothing new fits.
        XCTAssertEqual(Set(p.resize(capacityBytes: 500)).count, 7)
        XCTAssertEqual(p.usedBytes, 1000)
        XCTAssertTrue(p.contains(3))
        XCTAssertFalse(p.insert(50, size: 100).admitted)
        // Growing evicts nothing and makes room.
        XCTAssertEqual(p.resize(capacityBytes: 30_000), [])
        for k in 100..<129 { XCTAssertTrue(p.insert(UInt64(k), size: 1000).admitted) }
        XCTAssertEqual(p.usedBytes, 30_000)
    }

    func testRemove() {
        var p = EdgePolicy(capacityBytes: 10_000, expectedEntries: 100)
        _ = p.insert(1, size: 500)
        p.remove(1)
        XCTAssertFalse(p.contains(1))
        XCTAssertEqual(p.usedBytes, 0)
    }

    func testGhostHitGoesToMain() {
        var p = EdgePolicy(capacityBytes: 10_000, expectedEntries: 100, adaptive: false)
        _ = p.insert(1, size: 1000)
        for k in 10..<22 { _ = p.insert(UInt64(k), size: 1000) }   // 1 falls out of small into the ghost
        XCTAssertFalse(p.contains(1))
        XCTAssertTrue(p.insert(1, size: 1000).admitted)
        for k in 40..<50 { _ = p.insert(UInt64(k), size: 1000) }   // a short burst of newcomers
        XCTAssertTrue(p.contains(1), "from the ghost straight to main, it outlives the newcomers")
    }
}

final class SimulatorTests: XCTestCase {
    func randomTrace(_ n: Int, seed: UInt64) -> [TraceRequest] {
        var rng = SplitMix64(seed: seed)
        return (0..<n).map { i in
            let k = UInt64(Double(500) * pow(rng.nextDouble(), 3))   // skewed
            return TraceRequest(time: Int64(i), key: k, size: Int(k % 17 + 1) * 100)
        }
    }

    func testBeladyIsALowerBound() {
        let trace = randomTrace(20_000, seed: 9)
        let unique = Trace.uniqueBytes(trace)
        for fraction in [0.01, 0.1, 0.3] {
            let size = Int(Double(unique) * fraction)
            let bound = CacheSimulator.run(trace: trace, policy: "belady", capacityBytes: size).byteMissRatio
            for name in CacheSimulator.policyNames where name != "belady" {
                let r = CacheSimulator.run(trace: trace, policy: name, capacityBytes: size)
                XCTAssertGreaterThanOrEqual(r.byteMissRatio + 1e-9, bound, "\(name) at \(fraction)")
                XCTAssert((0...1).contains(r.objectMissRatio))
            }
        }
    }

    func testColdStartLRUByHand() {
        // a b a c a b with room for two: misses a b . c . b → 4 of 6
        let t: [TraceRequest] = ["a", "b", "a", "c", "a", "b"].enumerated().map {
            TraceRequest(time: Int64($0.offset), key: cacheKeyHash($0.element), size: 10)
        }
        let r = CacheSimulator.run(trace: t, policy: "lru", capacityBytes: 20)
        XCTAssertEqual(r.objectMissRatio, 4.0 / 6.0, accuracy: 1e-9)
    }

    func testParseCSV() throws {
        let t = try Trace.parseCSV("time,key,size_bytes\n1,/a,10\n2,/b,20\r\n")
        XCTAssertEqual(t.count, 2)
        XCTAssertEqual(t[1].size, 20)
        XCTAssertThrowsError(try Trace.parseCSV("time,key,size_bytes\n1,/a\n")) {
            XCTAssertTrue("\($0)".contains("line 2"))
        }
        XCTAssertThrowsError(try Trace.parseCSV("1,/a,-5\n"))
    }

    func testTraceGeneratorDeterministicWithReleases() {
        var g = AudioTraceGenerator()
        g.tracks = 200; g.sessions = 2000; g.days = 2; g.releases = 1; g.releaseTracks = 5
        let a = g.generate(), b = g.generate()
        XCTAssertEqual(a.map(\.key), b.map(\.key))
        XCTAssertTrue(a.allSatisfy { [120_000, 200_000, 400_000].contains($0.size) })
        XCTAssertEqual(a.map(\.time), a.map(\.time).sorted())
        // After the drop, the new album (ids 200...204) is the most requested content.
        let drop = a.first { $0.key.hasPrefix("/audio/t00200/") }!.time
        var counts: [String: Int] = [:]
        for r in a where r.time >= drop { counts[String(r.key.split(separator: "/")[1]), default: 0] += 1 }
        let top = counts.max { $0.value < $1.value }!.key
        XCTAssertTrue(["t00200", "t00201", "t00202", "t00203", "t00204"].contains(top), top)
    }
}
