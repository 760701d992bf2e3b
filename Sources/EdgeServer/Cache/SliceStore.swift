import Synchronization
import EdgeCache
import CEdgeRing
import EdgeHTTP
import EdgeEncoding

/// What the origin told us about an object; every slice of it must agree.
struct ObjectMeta: Sendable, Equatable {
    /// What the head said, shared by every copy: a hit copies the metadata out of the index
    /// several times, and three `String`s meant three retains and releases per copy.
    final class Representation: Sendable {
        let size: Int
        let etag: String
        let lastModified: String
        let contentType: String
        let storedAtSeconds: Int64
        init(size: Int, etag: String, lastModified: String, contentType: String, storedAtSeconds: Int64) {
            self.size = size; self.etag = etag; self.lastModified = lastModified; self.contentType = contentType
            self.storedAtSeconds = storedAtSeconds
        }
    }
    let representation: Representation
    var size: Int { representation.size }
    var etag: String { representation.etag }
    var lastModified: String { representation.lastModified }
    var contentType: String { representation.contentType }
    var storedAtSeconds: Int64 { representation.storedAtSeconds }
    /// Requests answered from this metadata, and the last one's wall-clock second (the operators'
    /// cache listing).
    var hits = 0
    var lastAccessSeconds: Int64 = 0

    init(size: Int, etag: String, lastModified: String, contentType: String, storedAtSeconds: Int64) {
        representation = Representation(
            size: size, etag: etag, lastModified: lastModified, contentType: contentType,
            storedAtSeconds: storedAtSeconds)
    }

    static func == (a: ObjectMeta, b: ObjectMeta) -> Bool {
        a.size == b.size && a.etag == b.etag && a.lastModified == b.lastModified && a.contentType == b.contentType
            && a.storedAtSeconds == b.storedAtSeconds && a.hits == b.hits && a.lastAccessSeconds == b.lastAccessSeconds
    }

    /// The same representation: every slice of an object must agree on these.
    func sameVersion(as other: ObjectMeta) -> Bool { size == other.size && etag == other.etag }
}

/// An object's path as a key of the index: its hash (`cacheKeyHash`, FNV-1a over the bytes)
/// computed once and kept, equality by bytes. Keyed by the `String`, each lookup hashed the path's
/// bytes with SipHash and compared them by canonical equivalence, about 550 instructions per cache
/// hit (`loadtest/instructions.py`).
struct PathKey: Hashable, Sendable {
    let path: String
    let hash: UInt64

    init(_ path: String) { self.init(path, hash: cacheKeyHash(path)) }
    /// `hash`: `cacheKeyHash(path)`, when the caller has it already.
    init(_ path: String, hash: UInt64) { self.path = path; self.hash = hash }

    static func == (a: PathKey, b: PathKey) -> Bool { a.hash == b.hash && sameBytes(a.path, b.path) }
    func hash(into hasher: inout Hasher) { hasher.combine(hash) }
}

/// Slice `index` of the object at `path`. Its 64-bit hash (the path's FNV-1a, mixed with the
/// index) is the policies' key, and what the index's dictionaries hash: computed once per key, and
/// once per path for a request's keys (`pathHash`). Hashing the path's bytes on every dictionary
/// lookup (three per cache hit) cost about 500 instructions per hit (`loadtest/instructions.py`).
/// Equality still compares the path: two paths whose hashes collide are two keys.
struct SliceKey: Hashable, Sendable {
    let pathKey: PathKey
    let index: Int
    let hash: UInt64
    var path: String { pathKey.path }

    init(path: String, index: Int) { self.init(path: path, pathHash: cacheKeyHash(path), index: index) }

    /// `pathHash`: `cacheKeyHash(path)`, when the caller has it already.
    init(path: String, pathHash: UInt64, index: Int) {
        pathKey = PathKey(path, hash: pathHash)
        self.index = index
        hash = pathHash &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(truncatingIfNeeded: index)
    }

    static func == (a: SliceKey, b: SliceKey) -> Bool {
        a.hash == b.hash && a.index == b.index && sameBytes(a.pathKey.path, b.pathKey.path)
    }

    func hash(into hasher: inout Hasher) { hasher.combine(hash) }
}

/// Objects' metadata by path (`PathKey`); a `String` subscript for the paths of the control plane.
struct MetaIndex {
    private var entries: [PathKey: ObjectMeta] = [:]

    subscript(key: PathKey) -> ObjectMeta? {
        get { entries[key] }
        set { entries[key] = newValue }
    }
    subscript(path: String) -> ObjectMeta? {
        get { entries[PathKey(path)] }
        set { entries[PathKey(path)] = newValue }
    }
    var count: Int { entries.count }
    var paths: [String] { entries.keys.map(\.path) }
    func paths(where include: (ObjectMeta) -> Bool) -> [String] {
        entries.compactMap { include($0.value) ? $0.key.path : nil }
    }

    /// A request's access to the object: its hit count and last access time move, in place.
    mutating func touch(_ key: PathKey, nowSeconds: Int64) -> ObjectMeta? {
        guard let i = entries.index(forKey: key) else { return nil }
        entries.values[i].hits &+= 1
        entries.values[i].lastAccessSeconds = nowSeconds
        return entries.values[i]
    }
}

/// A slice's bytes in memory. Written once, front to back, by the worker that fills it; bytes
/// below `available` never change again, so any worker may read them while the fill goes on
/// (read-while-writer) — `available` is stored with release and loaded with acquire ordering.
final class SliceBuffer: @unchecked Sendable {
    let bytes: UnsafeMutableRawPointer
    let capacity: Int
    let available = Atomic<Int>(0)
    init(capacity: Int) {
        self.capacity = capacity
        bytes = .allocate(byteCount: max(capacity, 1), alignment: 4096)
    }
    deinit { bytes.deallocate() }
}

/// One fetch of one slice, shared by every request (on any worker) that wants it: from the origin,
/// or (`promotedFrom`) a disk slice read whole into memory for the RAM tier.
final class Fill: @unchecked Sendable {
    enum Phase: Int { case requested = 0, head = 1, complete = 2, failed = 3 }
    let key: SliceKey
    let owner: Int
    let buffer: SliceBuffer
    let phase = Atomic<Int>(0)
    /// Workers with requests parked on this fill, one bit each.
    let waitingWorkers = Atomic<UInt64>(0)
    // Written by the owner before `phase` moves past `.requested` (release), read after (acquire).
    var meta: ObjectMeta?
    var length = 0
    var failureStatus = 502
    var failureContentRange: String?
    /// A parent edge's Cache-Status for this slice (the shield tier), listed before ours.
    var upstreamCacheStatus: String?
    /// Purged while it ran (an operator purge, or the object changed): it still serves the
    /// requests waiting on it, but its bytes and metadata are never stored. Set and read under
    /// the store's lock.
    var abandoned = false
    /// Pre-warm jobs waiting for this slice to reach the disk tier, and the pin they want (the
    /// latest expiry asked for). Both under the store's lock.
    var prewarmTickets: [PrewarmTicket] = []
    var pinUntilSeconds: Int64 = 0
    /// The slice file this fill reads into RAM (a disk hit promoted), nil for an origin fetch.
    let promotedFrom: DiskSlice?

    init(key: SliceKey, owner: Int, capacity: Int, promotedFrom: DiskSlice? = nil) {
        self.key = key; self.owner = owner; self.promotedFrom = promotedFrom
        buffer = SliceBuffer(capacity: capacity)
    }
    var currentPhase: Phase { Phase(rawValue: phase.load(ordering: .acquiring))! }
}

/// A slice on disk: its file (relative to the cache directory) and where the data starts.
struct DiskSlice: Sendable, Equatable {
    var relativePath: String
    var dataOffset: Int
    var length: Int
}

/// The cache index shared by all workers: object metadata, RAM and disk slices, fills in
/// progress, and the two policies (one per tier). One mutex; every critical section is a few
/// dictionary operations, never I/O.
/// A slice in the RAM tier: its buffer, and how many of its bytes are the slice.
typealias RAMSlice = (buffer: SliceBuffer, length: Int)

final class SliceStore: @unchecked Sendable {
    let sliceBytes: Int
    let directory: String
    // Reloadable bounds (`reconfigure`): read without the lock where they bound work about to
    // start; a value a moment old is harmless.
    private let fillsMaxValue: Atomic<Int>
    private let pinnedBytesMaxValue: Atomic<Int>
    private let objectBytesMaxValue: Atomic<Int>
    var fillsMax: Int { fillsMaxValue.load(ordering: .relaxed) }
    /// Bytes the disk tier may hold pinned.
    var pinnedBytesMax: Int { pinnedBytesMaxValue.load(ordering: .relaxed) }
    /// The largest object size accepted from an origin or a slice file.
    var objectBytesMax: Int { objectBytesMaxValue.load(ordering: .relaxed) }

    struct State {
        var meta = MetaIndex()
        var ram: [SliceKey: RAMSlice] = [:]
        var disk: [SliceKey: DiskSlice] = [:]
        var fills: [SliceKey: Fill] = [:]
        var keys: [UInt64: SliceKey] = [:]
        var ramPolicy: EdgePolicy
        var diskPolicy: EdgePolicy
        var slicesByPath: [String: Set<Int>] = [:]
        /// Fills in progress per object: its metadata stays while any runs.
        var fillsByPath: [String: Int] = [:]
        /// What the policies did, for the metrics (read on scrape).
        var ramEvictions = 0
        var diskEvictions = 0
        var ramRefused = 0
        var diskRefused = 0
    }
    let state: Mutex<State>

    init(
        config: (directory: String, sliceBytes: Int, fillsMax: Int, ramBytes: Int, diskBytes: Int), objectBytesMax: Int,
        pinnedBytesMax: Int = 0
    ) {
        objectBytesMaxValue = Atomic(objectBytesMax)
        pinnedBytesMaxValue = Atomic(pinnedBytesMax)
        sliceBytes = config.sliceBytes
        fillsMaxValue = Atomic(config.fillsMax)
        directory = config.directory
        let expectedRAM = max(16, config.ramBytes / max(config.sliceBytes, 1))
        let expectedDisk = max(16, min(config.diskBytes / max(config.sliceBytes, 1), 4_000_000))
        state = Mutex(
            State(
                ramPolicy: EdgePolicy(capacityBytes: config.ramBytes, expectedEntries: expectedRAM),
                diskPolicy: EdgePolicy(capacityBytes: config.diskBytes, expectedEntries: expectedDisk)))
    }

    enum Lookup {
        case ram(SliceBuffer, length: Int)
        case disk(DiskSlice)
        case filling(Fill)
        /// Nobody has it: the caller now owns this fill and must fetch it.
        case startFill(Fill)
        /// On disk and requested often: the caller now owns this fill and must read the slice
        /// file into it (`SlicePromoter`); on completion the slice enters the RAM tier.
        case promote(Fill, DiskSlice)
        case overloaded
        /// The object is now another version than the one the caller is sending (it changed at
        /// the origin since the response began): its slices must not be spliced into it.
        case changed
    }

    /// Finds a slice or joins/starts its fill, atomically: however many workers ask at once,
    /// exactly one gets `.startFill`. `etag`: the version the caller's response sends; `.changed`
    /// when the index knows the object as another one.
    func lookup(_ key: SliceKey, worker: Int, etag: String? = nil) -> Lookup {
        state.withLock { s in
            if let etag, let current = s.meta[key.pathKey], current.etag != etag { return .changed }
            return lookupLocked(&s, key, worker: worker)
        }
    }

    /// `counts`: this is a request for the slice (the policies record it); false when the same
    /// request looks again (a miss answered once its fill's head arrived), so a miss is not
    /// counted twice in the frequency sketches.
    /// `ram`: `s.ram[key]`, when the caller has looked it up in this critical section already.
    private func lookupLocked(
        _ s: inout State, _ key: SliceKey, worker: Int, counts: Bool = true, ram: RAMSlice?? = nil
    ) -> Lookup {
        let h = key.hash
        let ramHit = counts ? s.ramPolicy.recordAccess(h) : s.ramPolicy.contains(h)
        let diskHit = counts ? s.diskPolicy.recordAccess(h) : s.diskPolicy.contains(h)
        if ramHit, let r = ram ?? s.ram[key] { return .ram(r.buffer, length: r.length) }
        if let f = s.fills[key] { return .filling(f) }
        if diskHit, let d = s.disk[key] {
            // Hot disk slices move into RAM (read once, through a fill other readers join); a
            // slice read once in a while is served from its file. Promotions count as fills.
            guard s.fills.count < fillsMax, d.length <= s.ramPolicy.capacityBytes, s.ramPolicy.isRequestedOften(h),
                let meta = s.meta[key.pathKey]
            else { return .disk(d) }
            let f = Fill(key: key, owner: worker, capacity: d.length, promotedFrom: d)
            f.meta = meta
            f.length = d.length
            f.phase.store(Fill.Phase.head.rawValue, ordering: .releasing)
            s.fills[key] = f
            s.fillsByPath[key.path, default: 0] += 1
            return .promote(f, d)
        }
        guard s.fills.count < fillsMax else { return .overloaded }
        let f = Fill(key: key, owner: worker, capacity: sliceBytes)
        s.fills[key] = f
        s.fillsByPath[key.path, default: 0] += 1
        s.keys[h] = key
        return .startFill(f)
    }

    func meta(_ path: String) -> ObjectMeta? { state.withLock { $0.meta[path] } }

    /// A request for a known object, answered in one critical section: the plan built from the
    /// object's metadata (returned beside this, so the caller owns it alone and changes it without
    /// a copy), whether any slice it reads is neither in RAM nor on disk (a partial hit), and —
    /// when the body will be read — the lookup of the first slice it reads.
    struct Hit {
        var meta: ObjectMeta
        var partial: Bool
        var firstSlice: (index: Int, lookup: Lookup)?
    }

    /// Nil when the object's metadata is unknown (a miss). `known`: metadata the caller already has
    /// (a fill's head), used even if the index has dropped the object since. `stamp` adds to the
    /// plan what depends on whether the hit is partial (Cache-Status): changed here, before it is
    /// returned, the plan reaches the response without a copy.
    func hit(
        _ path: String, known: ObjectMeta? = nil, worker: Int, nowSeconds: Int64 = 0, readsBody: Bool,
        plan build: (ObjectMeta) -> ResponsePlan,
        stamp: (inout ResponsePlan, _ meta: ObjectMeta, _ partial: Bool) -> Void = { _, _, _ in }
    ) -> (hit: Hit, plan: ResponsePlan)? {
        let pathKey = PathKey(path)   // hashed before the lock is taken
        return state.withLock { s in
            let meta: ObjectMeta
            if let known {
                meta = known
            } else {
                guard let m = s.meta.touch(pathKey, nowSeconds: nowSeconds) else { return nil }
                meta = m
            }
            var plan = build(meta)
            let pathHash = pathKey.hash
            var partial = false
            var firstIndex: Int? = nil
            // The first slice's RAM entry as the walk below found it, for its lookup after: a second
            // dictionary lookup of the same key cost about 400 instructions per hit.
            var firstRAM: RAMSlice?? = nil
            for case .content(let offset, let length) in plan.segments where length > 0 {
                let first = offset / sliceBytes, last = (offset + length - 1) / sliceBytes
                if firstIndex == nil { firstIndex = first }
                var i = first
                while !partial && i <= last {
                    let k = SliceKey(path: path, pathHash: pathHash, index: i)
                    let r = s.ram[k]
                    if i == firstIndex && firstRAM == nil { firstRAM = .some(r) }
                    partial = r == nil && s.disk[k] == nil
                    i += 1
                }
            }
            var firstSlice: (Int, Lookup)? = nil
            if readsBody, let i = firstIndex {
                let k = SliceKey(path: path, pathHash: pathHash, index: i)
                firstSlice = (i, lookupLocked(&s, k, worker: worker, counts: known == nil, ram: firstRAM))
            }
            stamp(&plan, meta, partial)
            return (Hit(meta: meta, partial: partial, firstSlice: firstSlice), plan)
        }
    }

    /// The first head of an object sets its metadata; a later one that disagrees (the object
    /// changed at the origin) purges everything cached for it and reports false.
    /// Returns the object's metadata as stored (the first head's: one `storedAt`, so one `Age`
    /// for every slice), or nil when the object changed.
    func recordMeta(_ f: Fill, _ m: ObjectMeta) -> ObjectMeta? {
        let path = f.key.path
        return state.withLock { s in
            if f.abandoned { return m }   // serves its waiters; records nothing
            if let old = s.meta[path] {
                if old.sameVersion(as: m) { return old }
                Self.purgeLocked(&s, path: path)
                return nil
            }
            s.meta[path] = m
            return m
        }
    }

    /// A fill finished whole: the slice enters the RAM tier (by its policy) and, if the disk
    /// policy admits it, the caller writes it to disk (pinned, when a pre-warm asked). Returns the
    /// disk slices to delete, and the pre-warm tickets to answer now (nil outcome: they wait for
    /// the disk write, which carries them on the fill).
    func completeFill(
        _ f: Fill
    ) -> (
        writeToDisk: Bool, diskEvicted: [DiskSlice], tickets: [PrewarmTicket], ticketOutcome: PrewarmOutcome?
    ) {
        let h = f.key.hash
        return state.withLock { s in
            Self.removeFill(&s, f)
            let tickets = f.prewarmTickets
            // Purged meanwhile (or replaced by another version): not stored. The version is size
            // and ETag; comparing whole metadata would also compare when each head arrived.
            guard !f.abandoned, let current = s.meta[f.key.path], let mine = f.meta, current.sameVersion(as: mine)
            else {
                Self.forgetIfGone(&s, h, key: f.key)
                f.prewarmTickets = []
                return (false, [], tickets, .failed("purged or changed at the origin while it was fetched"))
            }
            Self.admitToRAM(&s, f)
            var diskEvicted: [DiskSlice] = []
            var write = false
            var outcome: PrewarmOutcome? = nil
            if s.disk[f.key] == nil {
                let d = s.diskPolicy.insert(h, size: f.length)
                s.diskEvictions += d.evicted.count
                if !d.admitted { s.diskRefused += 1 }
                for e in d.evicted {
                    if let k = s.keys[e], let ds = s.disk.removeValue(forKey: k) { diskEvicted.append(ds) }
                    Self.forgetIfGone(&s, e)
                }
                write = d.admitted
                if !d.admitted {
                    outcome = .failed("not admitted to the disk tier (disk_bytes_limit, less what is pinned)")
                } else if f.pinUntilSeconds > 0 && !pinLocked(&s, h, size: f.length, until: f.pinUntilSeconds) {
                    outcome = .failed("pin budget exceeded (cache.pinned_bytes_max \(pinnedBytesMax))")
                }
            } else {
                outcome = pinIfAsked(&s, f.key, until: f.pinUntilSeconds)
            }
            Self.forgetIfGone(&s, h)   // admitted by neither tier
            if outcome != nil || !write { f.prewarmTickets = [] } else { return (write, diskEvicted, [], nil) }
            return (write, diskEvicted, tickets, outcome ?? .failed("not written to disk"))
        }
    }

    /// Offers a whole fill's slice to the RAM tier's policy (the caller forgets it if neither tier
    /// keeps it).
    private static func admitToRAM(_ s: inout State, _ f: Fill) {
        let h = f.key.hash
        s.keys[h] = f.key
        s.slicesByPath[f.key.path, default: []].insert(f.key.index)
        let r = s.ramPolicy.insert(h, size: f.length)
        s.ramEvictions += r.evicted.count
        if !r.admitted { s.ramRefused += 1 }
        for e in r.evicted { if let k = s.keys[e] { s.ram[k] = nil; Self.forgetIfGone(&s, e) } }
        if r.admitted { s.ram[f.key] = (f.buffer, f.length) }
    }

    /// A promotion read its slice file whole and verified it: the slice enters the RAM tier (by
    /// its policy) unless the object was purged or changed meanwhile. Returns the pre-warm tickets
    /// that joined it (only when the file vanished from the index meanwhile) and their outcome.
    func completePromotion(_ f: Fill) -> (tickets: [PrewarmTicket], outcome: PrewarmOutcome) {
        state.withLock { s in
            Self.removeFill(&s, f)
            let tickets = f.prewarmTickets
            f.prewarmTickets = []
            guard !f.abandoned, let current = s.meta[f.key.path], let mine = f.meta, current.sameVersion(as: mine)
            else {
                Self.forgetIfGone(&s, f.key.hash, key: f.key)
                return (tickets, .failed("purged or changed while it was read from disk"))
            }
            Self.admitToRAM(&s, f)
            let outcome: PrewarmOutcome =
                s.disk[f.key] != nil
                ? pinIfAsked(&s, f.key, until: f.pinUntilSeconds) : .failed("evicted from disk while it was read")
            Self.forgetIfGone(&s, f.key.hash)
            return (tickets, outcome)
        }
    }

    func pinIfAsked(_ s: inout State, _ key: SliceKey, until: Int64) -> PrewarmOutcome {
        guard until > 0, let d = s.disk[key] else { return .cached(bytes: s.disk[key]?.length ?? 0) }
        return pinLocked(&s, key.hash, size: d.length, until: until)
            ? .cached(bytes: d.length) : .failed("pin budget exceeded (cache.pinned_bytes_max \(pinnedBytesMax))")
    }

    /// Pins a slice of the disk tier, within `pinnedBytesMax`. Re-pinning keeps the later expiry.
    func pinLocked(_ s: inout State, _ h: UInt64, size: Int, until: Int64) -> Bool {
        if let current = s.diskPolicy.pinExpiry(h) {
            if until > current { s.diskPolicy.pin(h, untilSeconds: until) }
            return true
        }
        guard s.diskPolicy.pinnedBytes + size <= pinnedBytesMax else { return false }
        return s.diskPolicy.pin(h, untilSeconds: until)
    }

    /// A fill failed: it leaves nothing behind, not its key and, when no slice of the object is
    /// cached, not the object's metadata either. Returns the pre-warm tickets it carried.
    @discardableResult
    func failFill(_ f: Fill) -> [PrewarmTicket] {
        state.withLock { s in
            let tickets = f.prewarmTickets
            f.prewarmTickets = []
            guard s.fills[f.key] === f else { return tickets }
            Self.removeFill(&s, f)
            Self.forgetIfGone(&s, f.key.hash, key: f.key)
            return tickets
        }
    }

    /// A slice file landed. False when the slice was evicted or purged while it was being
    /// written: the caller deletes the file, or it would sit on disk outside the limit. The
    /// pre-warm tickets the fill carried are returned to be answered.
    func diskWritten(_ f: Fill, _ d: DiskSlice) -> (stored: Bool, tickets: [PrewarmTicket]) {
        let key = f.key
        return state.withLock { s in
            let tickets = f.prewarmTickets
            f.prewarmTickets = []
            guard s.diskPolicy.contains(key.hash), s.meta[key.pathKey] != nil else { return (false, tickets) }
            s.disk[key] = d
            return (true, tickets)
        }
    }

    /// A slice write failed or was not started (too many in flight): the disk tier forgets it.
    /// Returns the pre-warm tickets the fill carried.
    @discardableResult
    func diskWriteFailed(_ f: Fill) -> [PrewarmTicket] {
        let key = f.key
        return state.withLock { s in
            let tickets = f.prewarmTickets
            f.prewarmTickets = []
            s.diskPolicy.remove(key.hash)
            s.disk[key] = nil
            Self.forgetIfGone(&s, key.hash, key: key)
            return tickets
        }
    }

    /// A slice file the index lists is not on disk (evicted and unlinked by another worker, or
    /// removed behind the edge's back): the disk tier forgets it, so the next lookup fetches it
    /// again instead of failing on it forever.
    func diskSliceMissing(_ key: SliceKey, relativePath: String) {
        state.withLock { s in
            guard let d = s.disk[key], d.relativePath == relativePath else { return }
            s.disk[key] = nil
            s.diskPolicy.remove(key.hash)
            Self.forgetIfGone(&s, key.hash, key: key)
        }
    }

    /// Drops an object's metadata and every slice of it (the origin changed it, or an operator purge).
    func purge(_ path: String) -> [DiskSlice] {
        state.withLock { s in Self.purgeLocked(&s, path: path) }
    }

    /// What an operator purge removed.
    struct Purged: Equatable {
        var objects = 0
        var slices = 0
        var fillsAbandoned = 0
        /// Slice files to unlink (their index entries are already gone).
        var diskSlices: [DiskSlice] = []
    }

    /// An operator purge of one object or of every object under a prefix, in one critical
    /// section: once it returns, no worker's lookup finds any of it, and fills running for it
    /// finish for their waiters without storing anything.
    func purge(path: String? = nil, prefix: String? = nil) -> Purged {
        precondition((path == nil) != (prefix == nil), "purge takes a path or a prefix")
        return state.withLock { s in
            var paths = Set<String>()
            let matches: (String) -> Bool = { p in path.map { p == $0 } ?? p.hasPrefix(prefix!) }
            for p in s.meta.paths where matches(p) { paths.insert(p) }
            for p in s.slicesByPath.keys where matches(p) { paths.insert(p) }
            for k in s.fills.keys where matches(k.path) { paths.insert(k.path) }
            var purged = Purged()
            for p in paths {
                if s.meta[p] != nil { purged.objects += 1 }
                purged.slices += s.slicesByPath[p]?.count ?? 0
                purged.fillsAbandoned += s.fills.keys.filter { $0.path == p }.count
                purged.diskSlices += Self.purgeLocked(&s, path: p)
            }
            return purged
        }
    }

    @discardableResult
    static func purgeLocked(_ s: inout State, path: String) -> [DiskSlice] {
        s.meta[path] = nil
        // Fills in flight for it: new requests no longer join them, and their bytes are dropped.
        if s.fillsByPath[path] != nil {
            for (k, f) in s.fills where k.path == path {
                f.abandoned = true
                s.fills[k] = nil
            }
            s.fillsByPath[path] = nil
        }
        var removed: [DiskSlice] = []
        for i in s.slicesByPath.removeValue(forKey: path) ?? [] {
            let k = SliceKey(path: path, index: i)
            s.ram[k] = nil
            if let d = s.disk.removeValue(forKey: k) { removed.append(d) }
            s.ramPolicy.remove(k.hash)
            s.diskPolicy.remove(k.hash)
            s.keys[k.hash] = nil
        }
        return removed
    }

    private static func removeFill(_ s: inout State, _ f: Fill) {
        guard s.fills[f.key] === f else { return }
        s.fills[f.key] = nil
        let n = (s.fillsByPath[f.key.path] ?? 1) - 1
        s.fillsByPath[f.key.path] = n > 0 ? n : nil
    }

    /// Drops everything the index keeps about a slice that neither tier holds any more (and no
    /// fill is filling), and the object's metadata with its last slice: the index is bounded by
    /// the tiers' contents, never by the number of objects ever fetched.
    private static func forgetIfGone(_ s: inout State, _ h: UInt64, key: SliceKey? = nil) {
        guard !s.ramPolicy.contains(h) && !s.diskPolicy.contains(h) else { return }
        guard let k = s.keys[h] ?? key, s.fills[k] == nil else { return }
        s.keys[h] = nil
        s.ram[k] = nil
        s.disk[k] = nil
        if var set = s.slicesByPath[k.path] {
            set.remove(k.index)
            s.slicesByPath[k.path] = set.isEmpty ? nil : set
        }
        if s.slicesByPath[k.path] == nil && s.fillsByPath[k.path] == nil { s.meta[k.pathKey] = nil }
    }

    /// What a reload's new cache bounds removed.
    struct Reconfigured: Equatable {
        var ramEvicted = 0
        var diskEvicted = 0
        var objectsOverMax = 0
        /// Slice files to unlink (their index entries are already gone).
        var diskSlices: [DiskSlice] = []
    }

    /// A reload's new bounds, in one critical section: each tier's policy takes its new capacity
    /// (a smaller one evicts, by the policy's own order, until what is not pinned fits), objects
    /// larger than a lowered `objectBytesMax` are purged (no fetch would accept them again), and
    /// `fillsMax` and `pinnedBytesMax` bound what starts next (pins already held stay until they
    /// expire).
    func reconfigure(
        ramBytes: Int, diskBytes: Int, fillsMax: Int, objectBytesMax: Int, pinnedBytesMax: Int
    ) -> Reconfigured {
        state.withLock { s in
            fillsMaxValue.store(fillsMax, ordering: .relaxed)
            objectBytesMaxValue.store(objectBytesMax, ordering: .relaxed)
            pinnedBytesMaxValue.store(pinnedBytesMax, ordering: .relaxed)
            var out = Reconfigured()
            for p in s.meta.paths(where: { $0.size > objectBytesMax }) {
                out.objectsOverMax += 1
                out.diskSlices += Self.purgeLocked(&s, path: p)
            }
            let ram = s.ramPolicy.capacityBytes == ramBytes ? [] : s.ramPolicy.resize(capacityBytes: ramBytes)
            s.ramEvictions += ram.count
            out.ramEvicted = ram.count
            for e in ram { if let k = s.keys[e] { s.ram[k] = nil; Self.forgetIfGone(&s, e) } }
            let disk = s.diskPolicy.capacityBytes == diskBytes ? [] : s.diskPolicy.resize(capacityBytes: diskBytes)
            s.diskEvictions += disk.count
            out.diskEvicted = disk.count
            for e in disk {
                if let k = s.keys[e], let d = s.disk.removeValue(forKey: k) { out.diskSlices.append(d) }
                Self.forgetIfGone(&s, e)
            }
            return out
        }
    }

    /// Start-up: a verified slice found on disk.
    func adopt(_ key: SliceKey, meta: ObjectMeta, disk: DiskSlice) -> [DiskSlice] {
        state.withLock { s in
            if let old = s.meta[key.pathKey], old.etag != meta.etag || old.size != meta.size { return [disk] }   // older version: drop
            s.meta[key.pathKey] = meta
            let d = s.diskPolicy.insert(key.hash, size: disk.length)
            var dropped: [DiskSlice] = []
            for e in d.evicted {
                if let k = s.keys[e], let ds = s.disk.removeValue(forKey: k) { dropped.append(ds) };
                Self.forgetIfGone(&s, e)
            }
            guard d.admitted else { dropped.append(disk); return dropped }
            s.keys[key.hash] = key
            s.disk[key] = disk
            s.slicesByPath[key.path, default: []].insert(key.index)
            return dropped
        }
    }

    struct Stats: Equatable {
        var ramBytes: Int; var diskBytes: Int; var objects: Int; var fills: Int; var diskSlices: Int; var ramSlices: Int
        var keys: Int; var objectsWithSlices: Int; var objectsFilling: Int
    }
    var stats: Stats {
        state.withLock { s in
            Stats(
                ramBytes: s.ramPolicy.usedBytes, diskBytes: s.diskPolicy.usedBytes, objects: s.meta.count,
                fills: s.fills.count,
                diskSlices: s.disk.count, ramSlices: s.ram.count, keys: s.keys.count,
                objectsWithSlices: s.slicesByPath.count,
                objectsFilling: s.fillsByPath.count)
        }
    }
}
