/// W-TinyLFU (Einziger, Friedman, Manes): a window LRU, a segmented main LRU, and admission by
/// a count-min frequency sketch; byte capacities. The simulator's `wtinylfu` baseline (fixed 1%
/// window) — and, with `adaptive`, a hill-climbing window on the byte hit ratio.
public final class WTinyLFUPolicy {
    public let capacityBytes: Int
    private var pool = NodePool()
    private var window = LinkedQueue(id: 1)
    private var probation = LinkedQueue(id: 2)
    private var protected = LinkedQueue(id: 3)
    private var pinned = LinkedQueue(id: 4)
    private var sketch: FrequencySketch
    private var windowBytesMax: Int
    private var protectedBytesMax: Int
    private let adaptive: Bool
    // hill climbing state
    private var sampleHitBytes = 0, sampleRequestBytes = 0, sampleRequests = 0
    private var previousHitRatio = 0.0
    private var stepBytes: Int
    private let sampleRequestsPerStep: Int
    private var pinExpiry: [UInt64: Int64] = [:]

    /// - Parameters:
    ///   - windowPercent: the window's initial share of the capacity.
    ///   - adaptive: false gives the classic fixed-window W-TinyLFU (a simulator baseline).
    public init(capacityBytes: Int, expectedEntries: Int, windowPercent: Double = 1, adaptive: Bool = false) {
        self.capacityBytes = capacityBytes
        sketch = FrequencySketch(expectedEntries: max(expectedEntries, 16))
        windowBytesMax = max(1, Int(Double(capacityBytes) * windowPercent / 100))
        protectedBytesMax = Int(Double(capacityBytes - windowBytesMax) * 0.8)
        self.adaptive = adaptive
        stepBytes = max(1, capacityBytes / 16)
        sampleRequestsPerStep = 500
    }

    public var usedBytes: Int { window.bytes + probation.bytes + protected.bytes + pinned.bytes }
    public var count: Int { window.count + probation.count + protected.count + pinned.count }
    public func contains(_ key: UInt64) -> Bool { pool.index[key] != nil }

    /// Records a request for `key`; returns whether it is cached (and refreshes its place).
    @discardableResult
    public func recordAccess(_ key: UInt64) -> Bool {
        sketch.increment(key)
        guard let n = pool.index[key] else { return false }   // the miss is sampled by insert, which knows the size
        switch pool.queue[Int(n)] {
        case window.id:
            window.remove(n, &pool); window.pushHead(n, &pool)
        case probation.id:
            probation.remove(n, &pool); protected.pushHead(n, &pool)
            demoteProtectedOverflow()
        case protected.id:
            protected.remove(n, &pool); protected.pushHead(n, &pool)
        default:
            pinned.remove(n, &pool); pinned.pushHead(n, &pool)
        }
        sample(bytes: pool.size[Int(n)], hit: true)
        return true
    }

    /// Offers a missed entry for admission. Returns the keys evicted to make room (the caller
    /// deletes their data), and whether `key` itself was kept. Entries larger than the cache are
    /// never admitted.
    public func insert(_ key: UInt64, size: Int) -> (admitted: Bool, evicted: [UInt64]) {
        guard pool.index[key] == nil else { return (true, []) }
        sample(bytes: size, hit: false)
        guard size <= capacityBytes - pinned.bytes else { return (false, []) }
        let n = pool.allocate(key, size, queue: window.id)
        window.pushHead(n, &pool)
        var evicted: [UInt64] = []
        // Window overflow: its oldest entries are candidates for main.
        while window.bytes > windowBytesMax, let c = window.popTail(&pool) {
            probation.pushHead(c, &pool)
        }
        // Main overflow: the candidates just moved (at probation's head) duel the oldest main entries.
        evictMain(&evicted)
        let admitted = pool.index[key] != nil
        return (admitted, evicted)
    }

    private func evictMain(_ evicted: inout [UInt64]) {
        while usedBytes > capacityBytes {
            // Candidate: probation's head (the newest arrival from the window). Victim: the oldest
            // main entry, from probation, else protected, else the window.
            let candidate = probation.head
            var victim = probation.tail
            if victim == candidate { victim = protected.tail }
            if victim < 0 { victim = window.tail }
            if candidate >= 0 && victim >= 0 && victim != candidate {
                let cf = sketch.frequency(pool.key[Int(candidate)]), vf = sketch.frequency(pool.key[Int(victim)])
                // Byte for byte: every byte of an entry is requested as often as the entry, so the
                // more frequent one wins whatever the sizes; ties keep the incumbent.
                drop(cf > vf ? victim : candidate, &evicted)
            } else if victim >= 0 {
                drop(victim, &evicted)
            } else if candidate >= 0 {
                drop(candidate, &evicted)
            } else {
                return   // only pinned entries are left
            }
        }
    }

    private func drop(_ n: Int32, _ evicted: inout [UInt64]) {
        switch pool.queue[Int(n)] {
        case window.id: window.remove(n, &pool)
        case probation.id: probation.remove(n, &pool)
        case protected.id: protected.remove(n, &pool)
        default: pinned.remove(n, &pool)
        }
        evicted.append(pool.key[Int(n)])
        pool.release(n)
    }

    private func demoteProtectedOverflow() {
        while protected.bytes > protectedBytesMax, let n = protected.popTail(&pool) {
            probation.pushHead(n, &pool)
        }
    }

    /// Removes an entry (purge, or its data turned out bad).
    public func remove(_ key: UInt64) {
        guard let n = pool.index[key] else { return }
        var ignored: [UInt64] = []
        drop(n, &ignored)
        pinExpiry[key] = nil
    }

    // Hill climbing over the window size: keep moving it in the direction that raised the hit
    // ratio, turn back when it fell, and take smaller steps as the ratio settles.
    private func sample(bytes: Int, hit: Bool) {
        guard adaptive else { return }
        sampleRequests += 1
        sampleRequestBytes += bytes
        if hit { sampleHitBytes += bytes }
        guard sampleRequests >= sampleRequestsPerStep else { return }
        // Byte hit ratio: what the origin is spared.
        let ratio = Double(sampleHitBytes) / Double(max(sampleRequestBytes, 1))
        if ratio < previousHitRatio { stepBytes = -stepBytes }
        let magnitude = max(capacityBytes / 1000, Int(Double(abs(stepBytes)) * 0.95))
        stepBytes = stepBytes < 0 ? -magnitude : magnitude
        let windowMin = max(1, capacityBytes / 100)
        windowBytesMax = min(max(windowMin, windowBytesMax + stepBytes), capacityBytes - windowMin)
        protectedBytesMax = Int(Double(capacityBytes - windowBytesMax) * 0.8)
        previousHitRatio = ratio
        sampleHitBytes = 0
        sampleRequestBytes = 0
        sampleRequests = 0
    }
}
