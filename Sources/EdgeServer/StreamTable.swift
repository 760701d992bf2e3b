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
struct StreamTable<Value> {
    /// Stream ids; 0 marks an empty slot (stream 0 is the connection, never a stream's key).
    private var keys: [Int32]
    private var values: [Value?]
    private var shift: UInt32
    private(set) var count = 0

    init() {
        keys = Array(repeating: 0, count: 16)
        values = Array(repeating: nil, count: 16)
        shift = 32 - 4
    }

    var isEmpty: Bool { count == 0 }

    /// The slot a key's probe starts at (internal for the tests that build colliding chains).
    @inline(__always) func home(_ key: Int32) -> Int {
        Int((UInt32(bitPattern: key) &* 0x9E37_79B1) >> shift)
    }

    subscript(key: Int32) -> Value? {
        get {
            guard key != 0 else { return nil }   // never stored: 0 marks an empty slot
            let mask = keys.count - 1
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

    /// Only streams nghttp2 has accepted are inserted, and their ids are 1 or more.
    private mutating func insert(_ key: Int32, _ value: consuming Value) {
        precondition(key != 0, "stream 0 is the connection")
        let mask = keys.count - 1
        var i = home(key)
        while keys[i] != 0 {
            if keys[i] == key { values[i] = value; return }
            i = (i + 1) & mask
        }
        keys[i] = key
        values[i] = value
        count += 1
        // At most half full: probes stay short, and an empty slot always ends a search.
        if count * 2 > keys.count { grow() }
    }

    private mutating func grow() {
        let oldKeys = keys, oldValues = values
        keys = Array(repeating: 0, count: oldKeys.count * 2)
        values = Array(repeating: nil, count: oldKeys.count * 2)
        shift -= 1
        count = 0
        for i in oldKeys.indices where oldKeys[i] != 0 { insert(oldKeys[i], oldValues[i].unsafelyUnwrapped) }
    }

    @discardableResult
    mutating func removeValue(forKey key: Int32) -> Value? {
        guard key != 0 else { return nil }   // never stored; a search for it would take an empty slot for it
        let mask = keys.count - 1
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
                values.swapAt(hole, j)   // the hole's nil moves on with it
                hole = j
            }
            j = (j + 1) & mask
        }
        keys[hole] = 0
        count -= 1
        return removed
    }

    mutating func removeAll() { self = StreamTable() }

    /// Calls `body` with every (stream id, value) pair, in no particular order.
    func forEach(_ body: (_ key: Int32, _ value: Value) -> Void) {
        for i in keys.indices where keys[i] != 0 { body(keys[i], values[i]!) }
    }

    func contains(where predicate: (Value) -> Bool) -> Bool {
        for i in keys.indices where keys[i] != 0 { if predicate(values[i]!) { return true } }
        return false
    }
}
