/// Baseline policies for the simulator, byte-capacity versions of the classics. Each answers
/// `access(key, size) -> hit` and admits on a miss by its own rule.
public protocol SimulatedPolicy: AnyObject {
    var name: String { get }
    func access(_ key: UInt64, size: Int) -> Bool
}

public final class LRUPolicy: SimulatedPolicy {
    public let name = "lru"
    let capacity: Int
    var pool = NodePool()
    var q = LinkedQueue(id: 1)
    public init(capacityBytes: Int) { capacity = capacityBytes }
    public func access(_ key: UInt64, size: Int) -> Bool {
        if let n = pool.index[key] { q.remove(n, &pool); q.pushHead(n, &pool); return true }
        guard size <= capacity else { return false }
        q.pushHead(pool.allocate(key, size, queue: 1), &pool)
        while q.bytes > capacity, let t = q.popTail(&pool) { pool.release(t) }
        return false
    }
}

/// In-cache LFU (frequency since admission, LRU among equals), evicting the least frequent.
public final class LFUPolicy: SimulatedPolicy {
    public let name = "lfu"
    let capacity: Int
    var pool = NodePool()
    var buckets: [Int: LinkedQueue] = [:]
    var minFrequency = 1
    var bytes = 0
    public init(capacityBytes: Int) { capacity = capacityBytes }
    public func access(_ key: UInt64, size: Int) -> Bool {
        if let n = pool.index[key] {
            let f = pool.extra[Int(n)]
            buckets[f]!.remove(n, &pool)
            if buckets[f]!.count == 0 { buckets[f] = nil; if minFrequency == f { minFrequency = f + 1 } }
            pool.extra[Int(n)] = f + 1
            buckets[f + 1, default: LinkedQueue(id: 1)].pushHead(n, &pool)
            return true
        }
        guard size <= capacity else { return false }
        while bytes + size > capacity {
            while buckets[minFrequency] == nil { minFrequency += 1 }
            let t = buckets[minFrequency]!.popTail(&pool)!
            if buckets[minFrequency]!.count == 0 { buckets[minFrequency] = nil }
            bytes -= pool.size[Int(t)]
            pool.release(t)
        }
        let n = pool.allocate(key, size, queue: 1)
        pool.extra[Int(n)] = 1
        buckets[1, default: LinkedQueue(id: 1)].pushHead(n, &pool)
        minFrequency = 1
        bytes += size
        return false
    }
}

/// ARC (Megiddo & Modha) with byte accounting: T1/T2 resident, B1/B2 ghosts, target p in bytes.
public final class ARCPolicy: SimulatedPolicy {
    public let name = "arc"
    let c: Int
    var p = 0
    var pool = NodePool()
    var t1 = LinkedQueue(id: 1), t2 = LinkedQueue(id: 2), b1 = LinkedQueue(id: 3), b2 = LinkedQueue(id: 4)
    public init(capacityBytes: Int) { c = capacityBytes }

    private func move(_ n: Int32, to id: UInt8) {
        switch pool.queue[Int(n)] {
        case 1: t1.remove(n, &pool);
        case 2: t2.remove(n, &pool);
        case 3: b1.remove(n, &pool);
        default: b2.remove(n, &pool)
        }
        switch id {
        case 1: t1.pushHead(n, &pool);
        case 2: t2.pushHead(n, &pool);
        case 3: b1.pushHead(n, &pool);
        default: b2.pushHead(n, &pool)
        }
    }

    private func replace(inB2: Bool, need: Int) {
        while t1.bytes + t2.bytes + need > c {
            if t1.count > 0 && (t1.bytes > p || (inB2 && t1.bytes == p) || t2.count == 0) {
                move(t1.tail, to: 3)
            } else if t2.count > 0 {
                move(t2.tail, to: 4)
            } else {
                return
            }
        }
    }

    private func trimGhosts() {
        while t1.bytes + b1.bytes > c, let n = b1.popTail(&pool) { pool.release(n) }
        while t1.bytes + t2.bytes + b1.bytes + b2.bytes > 2 * c, let n = b2.popTail(&pool) { pool.release(n) }
    }

    public func access(_ key: UInt64, size: Int) -> Bool {
        if let n = pool.index[key] {
            switch pool.queue[Int(n)] {
            case 1, 2:
                move(n, to: 2)
                return true
            case 3:
                p = min(c, p + max(size, b2.bytes / max(b1.bytes, 1) * size))
                if size <= c {
                    replace(inB2: false, need: size); move(n, to: 2)
                } else {
                    b1.remove(n, &pool); pool.release(n)
                }
                trimGhosts()
                return false
            default:
                p = max(0, p - max(size, b1.bytes / max(b2.bytes, 1) * size))
                if size <= c {
                    replace(inB2: true, need: size); move(n, to: 2)
                } else {
                    b2.remove(n, &pool); pool.release(n)
                }
                trimGhosts()
                return false
            }
        }
        guard size <= c else { return false }
        replace(inB2: false, need: size)
        t1.pushHead(pool.allocate(key, size, queue: 1), &pool)
        trimGhosts()
        return false
    }
}

/// S3-FIFO (Yang et al., SOSP 2023): a small FIFO (10%), a main FIFO with 2-bit frequency and
/// reinsertion, and a ghost FIFO of keys evicted from small.
public final class S3FIFOPolicy: SimulatedPolicy {
    public let name = "s3fifo"
    let capacity: Int
    let smallMax: Int
    var pool = NodePool()
    var small = LinkedQueue(id: 1), main = LinkedQueue(id: 2), ghost = LinkedQueue(id: 3)
    public init(capacityBytes: Int) { capacity = capacityBytes; smallMax = max(1, capacityBytes / 10) }

    public func access(_ key: UInt64, size: Int) -> Bool {
        if let n = pool.index[key], pool.queue[Int(n)] != 3 {
            pool.extra[Int(n)] = min(3, pool.extra[Int(n)] + 1)
            return true
        }
        guard size <= capacity else { return false }
        while small.bytes + main.bytes + size > capacity { evict() }
        if let g = pool.index[key] {   // ghost hit: straight to main
            ghost.remove(g, &pool); pool.release(g)
            main.pushHead(pool.allocate(key, size, queue: 2), &pool)
        } else {
            small.pushHead(pool.allocate(key, size, queue: 1), &pool)
        }
        return false
    }

    private func evict() {
        if small.bytes >= smallMax || main.count == 0 {
            guard let t = small.popTail(&pool) else { evictMain(); return }
            if pool.extra[Int(t)] > 0 {
                pool.extra[Int(t)] = 0
                main.pushHead(t, &pool)
            } else {
                ghost.pushHead(t, &pool)
                while ghost.bytes > capacity, let g = ghost.popTail(&pool) { pool.release(g) }
            }
        } else {
            evictMain()
        }
    }

    private func evictMain() {
        while let t = main.popTail(&pool) {
            if pool.extra[Int(t)] > 0 {
                pool.extra[Int(t)] -= 1
                main.pushHead(t, &pool)
            } else {
                pool.release(t)
                return
            }
        }
    }
}

public final class WTinyLFUSimulation: SimulatedPolicy {
    public let name = "wtinylfu"
    let policy: WTinyLFUPolicy
    public init(policy: WTinyLFUPolicy) { self.policy = policy }
    public func access(_ key: UInt64, size: Int) -> Bool {
        if policy.recordAccess(key) { return true }
        _ = policy.insert(key, size: size)
        return false
    }
}

/// The edge's policy under the simulator's interface.
public final class EdgePolicySimulation: SimulatedPolicy {
    public let name: String
    var policy: EdgePolicy
    public init(name: String, policy: EdgePolicy) { self.name = name; self.policy = policy }
    public func access(_ key: UInt64, size: Int) -> Bool {
        if policy.recordAccess(key) { return true }
        _ = policy.insert(key, size: size)
        return false
    }
}

/// Belady's MIN, size-aware variant: on a miss, evict the entries whose next request is farthest
/// in the future (never-again first), and do not admit an object whose own next use is farther
/// than every victim's. Offline: needs the whole trace. A bound, not a policy.
public final class BeladyPolicy: SimulatedPolicy {
    public let name = "belady"
    let capacity: Int
    var resident: [UInt64: (size: Int, next: Int)] = [:]
    var heap = MaxHeap()
    var bytes = 0
    var nextUse: [Int]
    var position = 0

    public init(capacityBytes: Int, keys: [UInt64]) {
        capacity = capacityBytes
        nextUse = [Int](repeating: Int.max, count: keys.count)
        var last: [UInt64: Int] = [:]
        for i in stride(from: keys.count - 1, through: 0, by: -1) {
            nextUse[i] = last[keys[i]] ?? Int.max
            last[keys[i]] = i
        }
    }

    public func access(_ key: UInt64, size: Int) -> Bool {
        let next = nextUse[position]
        position += 1
        if let r = resident[key] {
            resident[key] = (r.size, next)
            heap.push(next, key)
            return true
        }
        guard size <= capacity, next != Int.max else { return false }
        while bytes + size > capacity {
            guard let (when, victim) = heap.pop() else { break }
            guard let r = resident[victim], r.next == when else { continue }   // stale heap entry
            if when < next {   // everything resident is needed sooner than the newcomer: skip it
                heap.push(when, victim)
                return false
            }
            resident[victim] = nil
            bytes -= r.size
        }
        resident[key] = (size, next)
        heap.push(next, key)
        bytes += size
        return false
    }
}

struct MaxHeap {
    var items: [(Int, UInt64)] = []
    mutating func push(_ p: Int, _ k: UInt64) {
        items.append((p, k))
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2; if items[parent].0 >= items[i].0 { break }; items.swapAt(parent, i); i = parent
        }
    }
    mutating func pop() -> (Int, UInt64)? {
        guard !items.isEmpty else { return nil }
        let top = items[0]
        items[0] = items[items.count - 1]
        items.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < items.count && items[l].0 > items[m].0 { m = l }
            if r < items.count && items[r].0 > items[m].0 { m = r }
            if m == i { break }
            items.swapAt(i, m); i = m
        }
        return top
    }
}
