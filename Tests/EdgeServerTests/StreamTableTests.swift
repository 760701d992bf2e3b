import EdgeEncoding
import XCTest

@testable import EdgeServer

/// The session's stream-id table against `Dictionary` as the reference, including the cases open
/// addressing gets wrong: chains that wrap past the end, removal from the middle of a chain, and
/// keys a peer picks so that they share a slot.
final class StreamTableTests: XCTestCase {
    func contents(_ t: StreamTable<Int>) -> [Int32: Int] {
        var d: [Int32: Int] = [:]
        t.forEach { k, v in
            XCTAssertNil(d[k], "key \(k) twice")
            d[k] = v
        }
        return d
    }

    func testMatchesDictionaryUnderRandomOperations() {
        for seed in UInt64(1)...20 {
            var rng = SplitMix64(seed: seed)
            let table = StreamTable<Int>()
            var reference: [Int32: Int] = [:]
            // Few distinct keys, so inserts, overwrites and removals of present keys all happen.
            let keySpace = Int32(1 + rng.next() % 300)
            for step in 0..<4000 {
                let key = Int32(truncatingIfNeeded: rng.next() % UInt64(keySpace)) * 2 + 1
                switch rng.next() % 3 {
                case 0, 1:
                    table[key] = step
                    reference[key] = step
                default:
                    XCTAssertEqual(table.removeValue(forKey: key), reference.removeValue(forKey: key), "seed \(seed)")
                }
                XCTAssertEqual(table[key], reference[key], "seed \(seed) step \(step)")
                XCTAssertEqual(table.count, reference.count, "seed \(seed) step \(step)")
            }
            XCTAssertEqual(contents(table), reference, "seed \(seed)")
            for (k, v) in reference { XCTAssertEqual(table[k], v) }
        }
    }

    /// Ids a peer could pick to share the last slot of a 16-slot table: one chain, wrapping past
    /// the end, removed from its middle and front, still finds every other key.
    func testCollidingIdsStayReachable() {
        let table = StreamTable<Int>()
        var ids: [Int32] = []
        var id: Int32 = 1
        while ids.count < 7 {
            if table.home(id) == 15 { ids.append(id) }
            id += 2
        }
        for (n, id) in ids.enumerated() { table[id] = n }
        XCTAssertEqual(table.count, 7)
        XCTAssertEqual(Set(ids.map(table.home)), [15], "the chain's ids share one slot")
        XCTAssertEqual(table.removeValue(forKey: ids[3]), 3)
        XCTAssertEqual(table.removeValue(forKey: ids[0]), 0)
        XCTAssertNil(table.removeValue(forKey: ids[0]))
        XCTAssertEqual(contents(table), [ids[1]: 1, ids[2]: 2, ids[4]: 4, ids[5]: 5, ids[6]: 6])
        for n in [1, 2, 4, 5, 6] { XCTAssertEqual(table[ids[n]], n) }
        XCTAssertNil(table[ids[3]])
        // A key homed inside the wrapped part of the chain (slot 0..2) is still found after
        // removals shifted the chain back.
        var early: Int32 = 1
        while table.home(early) != 1 { early += 2 }
        table[early] = 99
        XCTAssertEqual(table.removeValue(forKey: ids[1]), 1)
        XCTAssertEqual(table[early], 99)
        XCTAssertEqual(contents(table), [ids[2]: 2, ids[4]: 4, ids[5]: 5, ids[6]: 6, early: 99])
    }

    func testGrowsAndEmpties() {
        let table = StreamTable<Int>()
        for id in stride(from: Int32(1), through: 2001, by: 2) { table[id] = Int(id) }
        XCTAssertEqual(table.count, 1001)
        XCTAssertEqual(table[1999], 1999)
        XCTAssertNil(table[2003])
        // Stream 0 (the connection) is never a key: asking for it, or removing it, finds nothing
        // and takes no empty slot for an entry.
        XCTAssertNil(table[0])
        XCTAssertNil(table.removeValue(forKey: 0))
        XCTAssertEqual(table.count, 1001)
        XCTAssertEqual(table[1], 1)
        XCTAssertFalse(table.contains { $0 == 4 })
        XCTAssertTrue(table.contains { $0 == 2001 })
        table.removeAll()
        XCTAssertTrue(table.isEmpty)
        XCTAssertNil(table[1])
        XCTAssertEqual(contents(table), [:])
    }

    final class Census { var alive = 0 }
    final class Tracked {
        let id: Int
        let census: Census
        init(_ id: Int, _ census: Census) { self.id = id; self.census = census; census.alive += 1 }
        deinit { census.alive -= 1 }
    }

    /// The table's values live in memory it manages by hand: every value it was given is released
    /// once, whether it was overwritten, removed, moved by a removal's backward shift or by growth,
    /// handed back by `removeAll`, or still held when the table goes away.
    func testReleasesEveryValueOnce() {
        let census = Census()
        do {
            let table = StreamTable<Tracked>()
            for id in stride(from: Int32(1), through: 201, by: 2) { table[id] = Tracked(Int(id), census) }   // grows 16 → 256
            XCTAssertEqual(census.alive, 101)
            table[1] = Tracked(-1, census)   // overwrite: the old value goes
            XCTAssertEqual(census.alive, 101)
            XCTAssertEqual(table[1]?.id, -1)
            for id in stride(from: Int32(3), through: 101, by: 2) {
                XCTAssertEqual(table.removeValue(forKey: id)?.id, Int(id))
            }
            XCTAssertEqual(census.alive, 51)
            for id in stride(from: Int32(103), through: 201, by: 2) { XCTAssertEqual(table[id]?.id, Int(id)) }
            let taken = table.removeAll()
            XCTAssertEqual(taken.count, 51)
            XCTAssertEqual(Set(taken.map(\.id)), Set([-1] + Array(stride(from: 103, through: 201, by: 2))))
            XCTAssertTrue(table.isEmpty)
            XCTAssertEqual(census.alive, 51, "handed back, still held by the caller")
            _ = taken
            table[7] = Tracked(7, census)
            table[9] = Tracked(9, census)
        }
        XCTAssertEqual(census.alive, 0, "the table released what it still held when it went away")
    }
}
