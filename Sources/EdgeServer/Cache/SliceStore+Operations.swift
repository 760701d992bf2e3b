import EdgeCache

/// What became of one slice a pre-warm asked for.
public enum PrewarmOutcome: Sendable, Equatable {
    /// On disk (and pinned, when the job pins): `bytes` long.
    case cached(bytes: Int)
    /// The origin answered this status (404, 410, 416, 5xx as 502, 503 when the edge is overloaded).
    case originStatus(Int)
    case failed(String)
}

/// A pre-warm waiting for one slice: answered exactly once, on whichever worker finishes the
/// slice (or on the admin thread when it was already cached). The report must not block.
public final class PrewarmTicket: Sendable {
    let report: @Sendable (PrewarmOutcome) -> Void
    public init(_ report: @escaping @Sendable (PrewarmOutcome) -> Void) { self.report = report }
}

/// One object of the operators' cache listing.
public struct ObjectListing: Sendable, Codable, Equatable {
    public var path: String
    public var size: Int
    public var etag: String
    public var slicesTotal: Int
    public var ramSlices: Int
    public var ramBytes: Int
    public var diskSlices: Int
    public var diskBytes: Int
    public var filling: Int
    /// The latest pin expiry among its slices (0: none pinned).
    public var pinnedUntilSeconds: Int64
    public var pinnedBytes: Int
    public var hits: Int
    public var lastAccessSeconds: Int64
}

/// The operators' side of the index: pre-warm, pins, the cache listing, the figures for metrics.
extension SliceStore {
    enum PrewarmStart {
        /// Answered at once (on disk already, pinned if asked).
        case done(PrewarmOutcome)
        /// A fill is running (a player's or another job's): the ticket rides on it.
        case joined
        /// Nobody has it: the caller must have a worker fetch this fill (`WorkerMail.fetch`).
        case started(Fill)
        case overloaded
    }

    /// Pre-warms one slice: the same one-fetch-per-slice rule players follow (a player asking
    /// meanwhile joins the fill; a fill already running is joined, never doubled). No access is
    /// recorded: a pre-warm is not demand, and must not skew the policies' frequency counts.
    func prewarm(_ key: SliceKey, pinUntilSeconds: Int64, ticket: PrewarmTicket, worker: Int) -> PrewarmStart {
        state.withLock { s in
            if s.disk[key] != nil { return .done(pinIfAsked(&s, key, until: pinUntilSeconds)) }
            if let f = s.fills[key] {
                f.prewarmTickets.append(ticket)
                f.pinUntilSeconds = max(f.pinUntilSeconds, pinUntilSeconds)
                return .joined
            }
            guard s.fills.count < fillsMax else { return .overloaded }
            let f = Fill(key: key, owner: worker, capacity: sliceBytes)
            f.prewarmTickets = [ticket]
            f.pinUntilSeconds = pinUntilSeconds
            s.fills[key] = f
            s.fillsByPath[key.path, default: 0] += 1
            s.keys[key.hash] = key
            return .started(f)
        }
    }

    /// Pins that reached their expiry go back to the policy's main queue.
    func expirePins(nowSeconds: Int64) {
        state.withLock { s in s.diskPolicy.expirePins(nowSeconds: nowSeconds) }
    }

    /// Drops the pins of every slice of these objects (a cancelled pre-warm: what was filled stays).
    func unpin(paths: [String]) {
        state.withLock { s in
            for p in paths {
                for i in s.slicesByPath[p] ?? [] { s.diskPolicy.unpin(SliceKey(path: p, index: i).hash) }
            }
        }
    }

    /// An object's metadata and where each cached slice of it is (RAM bytes copied out, disk
    /// slices by file), for the control plane to read a small object such as a manifest.
    func cachedObject(_ path: String, bytesMax: Int) -> (meta: ObjectMeta, slices: [(Int, CachedSliceBytes)])? {
        state.withLock { s in
            guard let meta = s.meta[path], meta.size <= bytesMax else { return nil }
            var out: [(Int, CachedSliceBytes)] = []
            for i in (s.slicesByPath[path] ?? []).sorted() {
                let k = SliceKey(path: path, index: i)
                if let r = s.ram[k] {
                    out.append((i, .memory(Array(UnsafeRawBufferPointer(start: r.buffer.bytes, count: r.length)))))
                } else if let d = s.disk[k] {
                    out.append((i, .disk(d)))
                }
            }
            return (meta, out)
        }
    }

    enum CachedSliceBytes { case memory([UInt8]), disk(DiskSlice) }

    /// Objects whose path starts with `prefix`, sorted by path, at most `limit`. The index is held
    /// only to copy its keys and then for batches of `listingBatch` objects: a listing of a large
    /// cache never stalls the workers for long.
    func listing(prefix: String, limit: Int) -> (objects: [ObjectListing], more: Bool) {
        let keys = state.withLock { s in s.meta.paths }
        let matching = keys.filter { $0.hasPrefix(prefix) }.sorted()
        let wanted = matching.prefix(limit)
        var out: [ObjectListing] = []
        out.reserveCapacity(wanted.count)
        var start = wanted.startIndex
        while start < wanted.endIndex {
            let end = min(start + Self.listingBatch, wanted.endIndex)
            state.withLock { s in
                for p in wanted[start..<end] {
                    guard let m = s.meta[p] else { continue }
                    var o = ObjectListing(
                        path: p, size: m.size, etag: m.etag,
                        slicesTotal: m.size == 0 ? 0 : (m.size - 1) / sliceBytes + 1, ramSlices: 0, ramBytes: 0,
                        diskSlices: 0, diskBytes: 0, filling: s.fillsByPath[p] ?? 0, pinnedUntilSeconds: 0,
                        pinnedBytes: 0, hits: m.hits, lastAccessSeconds: m.lastAccessSeconds)
                    for i in s.slicesByPath[p] ?? [] {
                        let k = SliceKey(path: p, index: i)
                        if let r = s.ram[k] { o.ramSlices += 1; o.ramBytes += r.length }
                        if let d = s.disk[k] {
                            o.diskSlices += 1
                            o.diskBytes += d.length
                            if let until = s.diskPolicy.pinExpiry(k.hash) {
                                o.pinnedUntilSeconds = max(o.pinnedUntilSeconds, until)
                                o.pinnedBytes += d.length
                            }
                        }
                    }
                    out.append(o)
                }
            }
            start = end
        }
        return (out, matching.count > wanted.count)
    }

    static let listingBatch = 256

    /// The figures the metrics read, in one critical section.
    struct Figures: Sendable {
        var ramBytes = 0, diskBytes = 0, ramSlices = 0, diskSlices = 0, objects = 0, fills = 0
        var pinnedBytes = 0
        var ramEvictions = 0, diskEvictions = 0, ramRefused = 0, diskRefused = 0
    }
    var figures: Figures {
        state.withLock { s in
            Figures(
                ramBytes: s.ramPolicy.usedBytes, diskBytes: s.diskPolicy.usedBytes, ramSlices: s.ram.count,
                diskSlices: s.disk.count, objects: s.meta.count, fills: s.fills.count,
                pinnedBytes: s.diskPolicy.pinnedBytes, ramEvictions: s.ramEvictions, diskEvictions: s.diskEvictions,
                ramRefused: s.ramRefused, diskRefused: s.diskRefused)
        }
    }
}
