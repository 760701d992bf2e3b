/// A map from HTTP/2 stream id to a stream's state, for the session's per-stream tables.
///
/// Why not `Dictionary`: a Swift dictionary hashes every key with SipHash (`Hasher`), about 75
/// instructions for an `Int32`, and a request did eight lookups, inserts and removals across the
/// session's three tables: about 1,500 instructions of a 4 KiB range request
/// (loadtest/instructions.py). Here a key is hashed by one multiplication (Fibonacci hashing) and
/// probed linearly; removal shifts the chain back, so there are no tombstones.
///
/// The size is bounded by the streams nghttp2 lets a peer open (`h2_concurrent_streams_max`). A
/// peer picks its stream ids, so it could choose ids that share a slot; the worst case is then a
/// probe over every open stream of its own connection, bounded by the same limit.
///
/// Why a class over raw memory: as `Array` properties of the session, every lookup, insert and
/// removal paid a dynamic exclusivity check (`swift_beginAccess`, about 95 instructions with its
/// thread-local lookup), a dozen per request. The session holds each table by `let`, so reaching it
/// needs no check, and the table's own properties are integers and pointers only this worker's
/// thread touches (see "Exclusivity checks" in docs/ARCHITECTURE.md). The price is memory managed
/// by hand: every slot of `values` is always initialized (nil when empty), and `deinit`,
/// `removeAll` and `grow` deinitialize each slot exactly once (`StreamTableTests` checks that
/// every value is released).
final class StreamTable<Value> {
    // `@exclusivity(unchecked)`: see "Exclusivity checks" in docs/ARCHITECTURE.md.
    /// Stream ids; 0 marks an empty slot (stream 0 is the connection, never a stream's key).
    @exclusivity(unchecked) private var keys: UnsafeMutablePointer<Int32>
    /// The value of each slot; nil where the slot is empty. Always initialized, all `capacity` slots.
    @exclusivity(unchecked) private var values: UnsafeMutablePointer<Value?>
    @exclusivity(unchecked) private var capacity: Int
    @exclusivity(unchecked) private var shift: UInt32
    @exclusivity(unchecked) private(set) var count = 0

    private static var capacityMin: Int { 16 }

    init() {
        capacity = Self.capacityMin
        shift = 32 - 4
        (keys, values) = Self.allocate(Self.capacityMin)
    }

    deinit { Self.deallocate(keys, values, capacity) }

    private static func allocate(_ n: Int) -> (UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Value?>) {
        let k = UnsafeMutablePointer<Int32>.allocate(capacity: n)
        k.initialize(repeating: 0, count: n)
        let v = UnsafeMutablePointer<Value?>.allocate(capacity: n)
        v.initialize(repeating: nil, count: n)
        return (k, v)
    }

    private static func deallocate(_ k: UnsafeMutablePointer<Int32>, _ v: UnsafeMutablePointer<Value?>, _ n: Int) {
        v.deinitialize(count: n)
        v.deallocate()
        k.deallocate()
    }

    var isEmpty: Bool { count == 0 }

    /// The slot a key's probe starts at (internal for the tests that build colliding chains).
    @inline(__always) func home(_ key: Int32) -> Int {
        Int((UInt32(bitPattern: key) &* 0x9E37_79B1) >> shift)
    }

    subscript(key: Int32) -> Value? {
        get {
            guard key != 0 else { return nil }   // never stored: 0 marks an empty slot
            let mask = capacity - 1
            var i = home(key)
            while true {
                let k = keys[i]
                if k == key { return values[i] }
                if k == 0 { return nil }
                i = (i + 1) & mask
            }
        }
        set {
            if let newValue { insert(key, newValue) } else { removeValue(forKey: key) }
        }
    }

    /// Only streams nghttp2 has accepted are inserted, and their ids are 1 or more. Called
    /// directly, the value moves in: through the subscript's setter it was retained twice and
    /// released twice more (`loadtest/instructions.py`).
    func insert(_ key: Int32, _ value: consuming Value) {
        precondition(key != 0, "stream 0 is the connection")
        let mask = capacity - 1
        var i = home(key)
        while keys[i] != 0 {
            if keys[i] == key { values[i] = value; return }
            i = (i + 1) & mask
        }
        keys[i] = key
        values[i] = value
        count += 1
        // At most half full: probes stay short, and an empty slot always ends a search.
        if count * 2 > capacity { grow() }
    }

    private func grow() {
        let oldKeys = keys, oldValues = values, oldCapacity = capacity
        capacity = oldCapacity * 2
        shift -= 1
        (keys, values) = Self.allocate(capacity)
        count = 0
        for i in 0..<oldCapacity where oldKeys[i] != 0 { insert(oldKeys[i], oldValues[i].take()!) }
        Self.deallocate(oldKeys, oldValues, oldCapacity)
    }

    @discardableResult
    func removeValue(forKey key: Int32) -> Value? {
        guard key != 0 else { return nil }   // never stored; a search for it would take an empty slot for it
        let mask = capacity - 1
        var i = home(key)
        while keys[i] != key {
            if keys[i] == 0 { return nil }
            i = (i + 1) & mask
        }
        let removed = values[i].take()   // moved out: no retain and release of a class value
        // Backward-shift deletion: each later entry of the chain that may move into the hole
        // (its home is not cyclically in (hole, j]) moves, so a lookup never meets a gap before
        // its key.
        var hole = i
        var j = (i + 1) & mask
        while keys[j] != 0 {
            let h = home(keys[j])
            let stays = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j)
            if !stays {
                keys[hole] = keys[j]
                values[hole] = values[j].take()   // the hole's nil moves on with it
                hole = j
            }
            j = (j + 1) & mask
        }
        keys[hole] = 0
        count -= 1
        return removed
    }

    /// Empties the table and hands back what it held, in no particular order: the caller can act
    /// on each value (ending an exchange may reach the table again) after the table is empty.
    @discardableResult
    func removeAll() -> [Value] {
        var taken: [Value] = []
        taken.reserveCapacity(count)
        for i in 0..<capacity where keys[i] != 0 { taken.append(values[i].take()!) }
        Self.deallocate(keys, values, capacity)
        capacity = Self.capacityMin
        shift = 32 - 4
        (keys, values) = Self.allocate(capacity)
        count = 0
        return taken
    }

    /// Calls `body` with every (stream id, value) pair, in no particular order. `body` must not
    /// insert or remove.
    func forEach(_ body: (_ key: Int32, _ value: Value) -> Void) {
        for i in 0..<capacity where keys[i] != 0 { body(keys[i], values[i]!) }
    }

    func contains(where predicate: (Value) -> Bool) -> Bool {
        for i in 0..<capacity where keys[i] != 0 { if predicate(values[i]!) { return true } }
        return false
    }
}
