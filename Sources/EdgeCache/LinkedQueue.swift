import EdgeEncoding

/// Doubly-linked queues over one node pool, keyed by 64-bit hashes: the building block of every
/// policy here. O(1) push, remove, move; no allocation per operation once the pool has grown.
struct NodePool {
    var key: [UInt64] = []
    var size: [Int] = []
    var prev: [Int32] = []
    var next: [Int32] = []
    var queue: [UInt8] = []
    var extra: [Int] = []   // per-policy use (frequency, next-use time, ...)
    var free: [Int32] = []
    var index: [UInt64: Int32] = [:]

    mutating func allocate(_ k: UInt64, _ s: Int, queue q: UInt8) -> Int32 {
        let n: Int32
        if let f = free.popLast() {
            n = f
            key[Int(n)] = k; size[Int(n)] = s; prev[Int(n)] = -1; next[Int(n)] = -1; queue[Int(n)] = q;
            extra[Int(n)] = 0
        } else {
            n = Int32(key.count)
            key.append(k); size.append(s); prev.append(-1); next.append(-1); queue.append(q); extra.append(0)
        }
        index[k] = n
        return n
    }

    mutating func release(_ n: Int32) {
        index[key[Int(n)]] = nil
        free.append(n)
    }
}

/// A queue inside a pool: head is the most recent end, tail the oldest.
struct LinkedQueue {
    var head: Int32 = -1
    var tail: Int32 = -1
    var count = 0
    var bytes = 0
    let id: UInt8

    init(id: UInt8) { self.id = id }

    mutating func pushHead(_ n: Int32, _ p: inout NodePool) {
        p.queue[Int(n)] = id
        p.prev[Int(n)] = -1
        p.next[Int(n)] = head
        if head >= 0 { p.prev[Int(head)] = n }
        head = n
        if tail < 0 { tail = n }
        count += 1
        bytes += p.size[Int(n)]
    }

    mutating func remove(_ n: Int32, _ p: inout NodePool) {
        let a = p.prev[Int(n)], b = p.next[Int(n)]
        if a >= 0 { p.next[Int(a)] = b } else { head = b }
        if b >= 0 { p.prev[Int(b)] = a } else { tail = a }
        p.prev[Int(n)] = -1; p.next[Int(n)] = -1
        count -= 1
        bytes -= p.size[Int(n)]
    }

    mutating func popTail(_ p: inout NodePool) -> Int32? {
        guard tail >= 0 else { return nil }
        let n = tail
        remove(n, &p)
        return n
    }
}

/// Count-min sketch of 4-bit counters with periodic halving (TinyLFU's "reset"), so frequency
/// reflects recent popularity. Width is a power of two.
public struct FrequencySketch {
    private var table: [UInt64]
    private let mask: Int
    private var additions = 0
    private let sampleSize: Int
    private static let seeds: [UInt64] = [
        0xc3a5c85c97cb3127, 0xb492b66fbe98f273, 0x9ae16a3b2f90404f, 0xcbf29ce484222325,
    ]

    public init(expectedEntries: Int) {
        var width = 64
        while width < max(expectedEntries, 1) { width <<= 1 }
        table = [UInt64](repeating: 0, count: width)
        mask = width - 1
        sampleSize = 10 * width
    }

    @inline(__always) private func slot(_ key: UInt64, _ i: Int) -> (Int, UInt64) {
        var h = (key &+ Self.seeds[i]) &* 0x9E3779B97F4A7C15
        h ^= h >> 29
        let word = Int(truncatingIfNeeded: h) & mask
        let nibble = UInt64((h >> 32) & 15) * 4
        return (word, nibble)
    }

    public func frequency(_ key: UInt64) -> Int {
        var m = 15
        for i in 0..<4 {
            let (w, shift) = slot(key, i)
            m = min(m, Int((table[w] >> shift) & 15))
        }
        return m
    }

    public mutating func increment(_ key: UInt64) {
        let f = frequency(key)
        guard f < 15 else { return }
        for i in 0..<4 {   // conservative update: raise only the minimal counters
            let (w, shift) = slot(key, i)
            if Int((table[w] >> shift) & 15) == f { table[w] += 1 << shift }
        }
        additions += 1
        if additions >= sampleSize { halve() }
    }

    private mutating func halve() {
        for i in table.indices { table[i] = (table[i] >> 1) & 0x7777_7777_7777_7777 }
        additions /= 2
    }
}

/// The key hash the policies work on (FNV-1a 64 of the key).
@inline(__always) public func cacheKeyHash(_ s: String) -> UInt64 { FNV1a.hash(s) }
