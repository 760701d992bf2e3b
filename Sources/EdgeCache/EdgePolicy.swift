/// The edge's cache policy: an LRU/LFU hybrid built on S3-FIFO's queues, size-aware (byte
/// capacities, byte-based tuning), with a frequency sketch and pins.
///
/// - **Small** FIFO (recency): every admitted newcomer starts here, so a burst of new content (a
///   release drop) is cached at once. Entries requested again while in small move to main when
///   they reach its tail; the rest leave quickly, which makes one-off scans pass through.
/// - **Main** FIFO with reinsertion (frequency): each entry keeps a 2-bit hit counter; at the
///   tail, an entry with hits left is reinserted (counter decremented) instead of evicted — LFU
///   behaviour at FIFO cost, no list movement on a hit.
/// - **Ghost** FIFOs: keys and sizes (not data) recently evicted from small and from main, each
///   bounded by the capacity in bytes; a request for a ghost goes straight to main.
/// - **Frequency sketch** (count-min, 4-bit, periodically halved): an entry leaving small
///   unrequested still moves to main when the sketch rates it above main's next victim (TinyLFU's
///   duel) — content popular over hours whose re-requests come further apart than small holds.
/// - The small queue's share adapts the way ARC's does: a second ghost remembers keys evicted
///   from main; a request for a small-ghost means small is too short (grow it), for a main-ghost
///   that main is (shrink small), by the entry's bytes scaled by the ghosts' ratio, between 1%
///   and 12.5% of the capacity. Measured with `edgectl cachesim` (docs/ARCHITECTURE.md).
/// - **Pinned** entries (pre-warmed release content) sit outside the queues and are never
///   evicted before their pin expires; then they join main.
///
/// Pure data structure, no I/O: the server drives it from its cache index; `edgectl cachesim`
/// replays traces through the very same type.
///
/// A value type: the cache index holds it inside its locked state and changes it in place, so
/// exclusive access is proven when compiling. As a class, each of its stored properties a call
/// touched cost a run-time exclusivity check (`swift_beginAccess`): ten per cache hit, about 1,000
/// instructions (`loadtest/instructions.py`, edge-cache, 4 KiB ranges).
public struct EdgePolicy {
    public private(set) var capacityBytes: Int
    private var pool = NodePool()
    private var small = LinkedQueue(id: 1)
    private var main = LinkedQueue(id: 2)
    private var ghost = LinkedQueue(id: 3)
    private var pinned = LinkedQueue(id: 4)
    private var mainGhost = LinkedQueue(id: 5)
    private var sketch: FrequencySketch
    private var smallBytesTarget: Int
    private let adaptive: Bool
    let sketchAdmission: Int
    private var pinExpiry: [UInt64: Int64] = [:]
    /// The earliest pin expiry (a lower bound): `expirePins` scans only once it has passed, so
    /// calling it every second costs nothing while no pin is due.
    private var nextPinExpirySeconds = Int64.max

    public init(
        capacityBytes: Int, expectedEntries: Int, smallPercent: Double = 10, adaptive: Bool = true,
        sketchAdmission: Int = 2
    ) {
        self.capacityBytes = capacityBytes
        sketch = FrequencySketch(expectedEntries: max(expectedEntries, 16))
        smallBytesTarget = max(1, Int(Double(capacityBytes) * smallPercent / 100))
        self.adaptive = adaptive
        self.sketchAdmission = sketchAdmission
    }

    public var usedBytes: Int { small.bytes + main.bytes + pinned.bytes }
    public var count: Int { small.count + main.count + pinned.count }
    public func contains(_ key: UInt64) -> Bool {
        guard let n = pool.index[key] else { return false }
        return pool.queue[Int(n)] != ghost.id && pool.queue[Int(n)] != mainGhost.id
    }

    /// Records a request for `key`; returns whether it is cached. A hit costs a counter update.
    @discardableResult
    public mutating func recordAccess(_ key: UInt64) -> Bool {
        sketch.increment(key)
        guard let n = pool.index[key], pool.queue[Int(n)] != ghost.id, pool.queue[Int(n)] != mainGhost.id else {
            return false
        }
        pool.extra[Int(n)] = min(3, pool.extra[Int(n)] + 1)
        return true
    }

    /// Whether the sketch has seen `key` requested often enough (`sketchAdmission` times lately)
    /// to be worth bringing into this tier from a slower one: the disk tier's hits are promoted
    /// into RAM only then, so a one-off read does not cost a whole slice read.
    public func isRequestedOften(_ key: UInt64) -> Bool { sketch.frequency(key) >= sketchAdmission }

    /// Offers a missed entry of `size` bytes. Returns whether it was admitted and the keys evicted
    /// to make room (the caller deletes their data). Entries larger than the unpinned capacity are
    /// never admitted.
    public mutating func insert(_ key: UInt64, size: Int) -> (admitted: Bool, evicted: [UInt64]) {
        var wasGhost = false
        if let n = pool.index[key] {
            let q = pool.queue[Int(n)]
            guard q == ghost.id || q == mainGhost.id else { return (true, []) }
            // ARC's signal: a request for what small just dropped says small is too short; for
            // what main just dropped, that main is.
            if adaptive {
                let step = max(size, 1)
                if q == ghost.id {
                    let scale = max(1, mainGhost.bytes / max(ghost.bytes, 1))
                    smallBytesTarget = min(capacityBytes / 8, smallBytesTarget + step * scale)
                } else {
                    let scale = max(1, ghost.bytes / max(mainGhost.bytes, 1))
                    smallBytesTarget = max(max(1, capacityBytes / 100), smallBytesTarget - step * scale)
                }
            }
            if q == ghost.id { ghost.remove(n, &pool) } else { mainGhost.remove(n, &pool) }
            pool.release(n)
            wasGhost = true
        }
        guard size <= capacityBytes - pinned.bytes else { return (false, []) }
        var evicted: [UInt64] = []
        while usedBytes + size > capacityBytes {
            guard evictOne(&evicted) else { return (false, evicted) }
        }
        let n = pool.allocate(key, size, queue: wasGhost ? main.id : small.id)
        if wasGhost { main.pushHead(n, &pool) } else { small.pushHead(n, &pool) }
        return (true, evicted)
    }

    /// Frees one entry's worth of space; false when nothing evictable is left (all pinned).
    private mutating func evictOne(_ evicted: inout [UInt64]) -> Bool {
        if small.count > 0 && (small.bytes >= smallBytesTarget || main.count == 0) {
            let t = small.popTail(&pool)!
            let key = pool.key[Int(t)]
            if pool.extra[Int(t)] > 0 || admitByFrequency(key) {
                pool.extra[Int(t)] = 0
                main.pushHead(t, &pool)
                return true
            }
            evicted.append(key)
            ghost.pushHead(t, &pool)   // the node stays, as a ghost: key and size only
            while ghost.bytes > capacityBytes, let g = ghost.popTail(&pool) { pool.release(g) }
            return true
        }
        while let t = main.popTail(&pool) {
            if pool.extra[Int(t)] > 0 {
                pool.extra[Int(t)] -= 1
                main.pushHead(t, &pool)
            } else {
                evicted.append(pool.key[Int(t)])
                mainGhost.pushHead(t, &pool)
                while mainGhost.bytes > capacityBytes, let g = mainGhost.popTail(&pool) { pool.release(g) }
                return true
            }
        }
        return small.count > 0 ? evictOne(&evicted) : false
    }

    /// TinyLFU's duel: an entry leaving small unrequested still enters main when the sketch rates
    /// it above the entry main would evict next (and it has been seen `sketchAdmission` times).
    private func admitByFrequency(_ key: UInt64) -> Bool {
        let f = sketch.frequency(key)
        guard f >= sketchAdmission else { return false }
        guard main.tail >= 0 else { return true }
        return f > sketch.frequency(pool.key[Int(main.tail)])
    }

    /// A new capacity (a reload): unpinned entries are evicted, in the order `insert` would evict
    /// them, until what is cached fits (pinned entries stay, even above it: they leave when their
    /// pins expire); the small queue's target keeps its share and the ghosts are bounded anew.
    /// Returns the evicted keys (the caller deletes their data). The frequency sketch keeps its
    /// size and its counts.
    public mutating func resize(capacityBytes newCapacity: Int) -> [UInt64] {
        precondition(newCapacity >= 0, "a negative capacity")
        let share = Double(smallBytesTarget) / Double(max(capacityBytes, 1))
        capacityBytes = newCapacity
        smallBytesTarget = max(1, min(Int(Double(newCapacity) * share), newCapacity))
        var evicted: [UInt64] = []
        while usedBytes > capacityBytes, evictOne(&evicted) {}
        while ghost.bytes > capacityBytes, let g = ghost.popTail(&pool) { pool.release(g) }
        while mainGhost.bytes > capacityBytes, let g = mainGhost.popTail(&pool) { pool.release(g) }
        return evicted
    }

    /// Removes an entry (purge, or its data turned out bad).
    public mutating func remove(_ key: UInt64) {
        guard let n = pool.index[key] else { return }
        switch pool.queue[Int(n)] {
        case small.id: small.remove(n, &pool)
        case main.id: main.remove(n, &pool)
        case ghost.id: ghost.remove(n, &pool)
        case mainGhost.id: mainGhost.remove(n, &pool)
        default: pinned.remove(n, &pool)
        }
        pool.release(n)
        pinExpiry[key] = nil
    }

    /// Pins a cached entry until `untilSeconds`: it is never evicted before then.
    @discardableResult
    public mutating func pin(_ key: UInt64, untilSeconds: Int64) -> Bool {
        guard let n = pool.index[key], pool.queue[Int(n)] != ghost.id, pool.queue[Int(n)] != mainGhost.id else {
            return false
        }
        switch pool.queue[Int(n)] {
        case small.id: small.remove(n, &pool)
        case main.id: main.remove(n, &pool)
        default: pinned.remove(n, &pool)
        }
        pinned.pushHead(n, &pool)
        pinExpiry[key] = untilSeconds
        nextPinExpirySeconds = min(nextPinExpirySeconds, untilSeconds)
        return true
    }

    /// Ends a pin now: the entry joins main (it stays cached).
    public mutating func unpin(_ key: UInt64) {
        guard pinExpiry.removeValue(forKey: key) != nil, let n = pool.index[key], pool.queue[Int(n)] == pinned.id
        else { return }
        pinned.remove(n, &pool)
        main.pushHead(n, &pool)
    }

    /// Returns expired pins to main; the server calls it on its tick.
    public mutating func expirePins(nowSeconds: Int64) {
        guard nowSeconds >= nextPinExpirySeconds else { return }
        var next = Int64.max
        for (key, until) in pinExpiry {
            guard until <= nowSeconds else { next = min(next, until); continue }
            unpin(key)
        }
        nextPinExpirySeconds = next
    }

    public func isPinned(_ key: UInt64) -> Bool { pinExpiry[key] != nil }
    public func pinExpiry(_ key: UInt64) -> Int64? { pinExpiry[key] }
    public var pinnedBytes: Int { pinned.bytes }
}
