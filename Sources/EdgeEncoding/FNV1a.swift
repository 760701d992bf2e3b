/// FNV-1a, 64-bit: a fast, stable (across runs and machines) non-cryptographic hash, for cache
/// keys and rendezvous weights. Not for anything an attacker may choose to collide on.
public struct FNV1a {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325
    public init() {}

    @inline(__always) public mutating func add(_ byte: UInt8) {
        value = (value ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
    }
    /// A native string's bytes in place: iterating its `utf8` view cost about 30 instructions a
    /// byte, where this loop costs a few.
    public mutating func add(_ s: String) {
        var v = value
        let done = s.utf8.withContiguousStorageIfAvailable { bytes in
            for b in bytes { v = (v ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        }
        if done == nil { for b in s.utf8 { v = (v ^ UInt64(b)) &* 0x0000_0100_0000_01b3 } }
        value = v
    }

    public static func hash(_ s: String) -> UInt64 {
        var h = FNV1a()
        h.add(s)
        return h.value
    }
}

/// Rendezvous (highest-random-weight) hashing: each key goes to the node with the highest
/// weight, so a node's keys move only when it leaves, and only to the next best node.
public enum Rendezvous {
    public static func weight(node: String, key: String) -> UInt64 {
        var fnv = FNV1a()
        fnv.add(node)
        fnv.add(0xFF)   // never in UTF-8: ("ab", "c") and ("a", "bc") differ
        fnv.add(key)
        var h = fnv.value
        h ^= h >> 33; h = h &* 0xff51afd7ed558ccd; h ^= h >> 33
        return h
    }
}
