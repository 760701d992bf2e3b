import CEdgeRing
import EdgeConfig
import Glibc
import Synchronization

/// The running edge as the control plane sees it (the admin API, the main thread's signals):
/// readiness, metrics, the cache index's operator operations, reload. Every call either takes the
/// cache index's lock for a short critical section (as any worker does) or posts mail to a
/// worker; none waits for a worker, and no worker waits for it.
public final class EdgeControl: @unchecked Sendable {
    let settings: WorkerSettings
    let configPath: String?
    /// The running configuration (a reload replaces the parts it can change).
    private let running: Mutex<EdgeConfig>
    private let reloading = Mutex<Void>(())
    /// The TLS context new connections get (nil without TLS listeners).
    private let currentTLS: Mutex<TLSServerContext?>
    /// The regional-licensing gate workers apply (nil with `[geo]` off).
    private let currentGeo: Mutex<GeoGate?>
    let draining = Atomic<Bool>(false)
    private let nextWorker = Atomic<Int>(0)

    init(settings: WorkerSettings, configPath: String?) {
        self.settings = settings
        self.configPath = configPath
        running = Mutex(settings.config)
        currentTLS = Mutex(settings.tlsContext)
        currentGeo = Mutex(settings.router.geo)
    }

    /// The gate new requests are checked against (the admin API's `/admin/geo` answers with it).
    public var geo: GeoGate? { currentGeo.withLock { $0 } }

    public var config: EdgeConfig { running.withLock { $0 } }
    public var workerCount: Int { settings.directory.entries.count }
    /// Whether this edge caches (HTTP origins), or serves a directory.
    public var hasCache: Bool { settings.store != nil }
    public var sliceBytes: Int { settings.store?.sliceBytes ?? 0 }
    public var pinnedBytesMax: Int { settings.store?.pinnedBytesMax ?? 0 }

    // MARK: health

    /// Ready: the cache index is loaded (it is before any worker starts), every worker runs its
    /// listeners, and the edge is not draining. Otherwise the reason.
    public var readiness: (ready: Bool, reason: String) {
        if draining.load(ordering: .acquiring) { return (false, "draining") }
        // A worker counts once its listeners' accepts are armed.
        let started = settings.workersStarted.load(ordering: .acquiring)
        if started < workerCount { return (false, "workers starting (\(started) of \(workerCount))") }
        return (true, "ready")
    }

    // MARK: metrics

    public func metrics() -> MetricsSnapshot { MetricsSnapshot(settings.counters) }

    /// The cache index's figures (nil for a directory origin).
    public func cacheFigures() -> CacheFigures? {
        guard let f = settings.store?.figures else { return nil }
        return CacheFigures(
            ramBytes: f.ramBytes, diskBytes: f.diskBytes, ramSlices: f.ramSlices, diskSlices: f.diskSlices,
            objects: f.objects, fills: f.fills, pinnedBytes: f.pinnedBytes, ramEvictions: f.ramEvictions,
            diskEvictions: f.diskEvictions, ramRefused: f.ramRefused, diskRefused: f.diskRefused)
    }

    public struct CacheFigures: Sendable, Equatable {
        public var ramBytes: Int, diskBytes: Int, ramSlices: Int, diskSlices: Int, objects: Int, fills: Int
        public var pinnedBytes: Int
        public var ramEvictions: Int, diskEvictions: Int, ramRefused: Int, diskRefused: Int
    }

    // MARK: purge and listing

    public struct PurgeResult: Sendable, Equatable, Codable {
        public var objects: Int
        public var slices: Int
        public var fillsAbandoned: Int
        public var filesRemoved: Int
    }

    /// Removes one object or every object under a prefix from both tiers. Once the index's
    /// critical section ends, no lookup on any worker finds it and fills in flight for it store
    /// nothing; the slice files are then unlinked here, on the caller's thread (blocking: call it
    /// off any event loop). Nil for a directory origin.
    public func purge(path: String? = nil, prefix: String? = nil) -> PurgeResult? {
        guard let store = settings.store else { return nil }
        let p = store.purge(path: path, prefix: prefix)
        var removed = 0
        for d in p.diskSlices where unlink(store.directory + "/" + d.relativePath) == 0 { removed += 1 }
        return PurgeResult(
            objects: p.objects, slices: p.slices, fillsAbandoned: p.fillsAbandoned, filesRemoved: removed)
    }

    public func listing(prefix: String, limit: Int) -> (objects: [ObjectListing], more: Bool)? {
        settings.store?.listing(prefix: prefix, limit: limit)
    }

    // MARK: pre-warm

    public enum PrewarmSliceStart: Sendable, Equatable {
        /// Answered now (the ticket is not called).
        case done(PrewarmOutcome)
        /// The ticket will be called, once, from a worker.
        case pending
        /// Too many fills in flight (`cache.fills_max`) or the worker's mailbox is full: try later.
        case busy
    }

    /// Pre-warms slice `index` of `path` into the disk tier, pinned until `pinUntilSeconds` (0:
    /// no pin), through the same one-fetch-per-slice machinery as players. A fetch this starts
    /// runs on a worker chosen round-robin.
    public func prewarmSlice(
        path: String, index: Int, pinUntilSeconds: Int64, ticket: PrewarmTicket
    )
        -> PrewarmSliceStart
    {
        guard let store = settings.store else { return .done(.failed("this edge serves a directory, not a cache")) }
        let worker = nextWorker.add(1, ordering: .relaxed).oldValue % workerCount
        switch store.prewarm(
            SliceKey(path: path, index: index), pinUntilSeconds: pinUntilSeconds, ticket: ticket, worker: worker)
        {
        case .done(let outcome): return .done(outcome)
        case .joined: return .pending
        case .overloaded: return .busy
        case .started(let fill):
            guard settings.directory.post(.fetch(fill), to: worker) else {
                abandonUnposted(fill, store)
                return .busy
            }
            return .pending
        }
    }

    /// A pre-warm's fill no worker could take (its mailbox was full): nobody will fetch it, so it
    /// must not stay in the index as a fill in progress. Players may have joined it meanwhile:
    /// their workers are woken, look again and answer 503.
    func abandonUnposted(_ fill: Fill, _ store: SliceStore) {
        fill.failureStatus = 503
        fill.phase.store(Fill.Phase.failed.rawValue, ordering: .releasing)
        store.failFill(fill)
        atomicMemoryFence(ordering: .sequentiallyConsistent)   // see `CacheSource.park`
        var waiting = fill.waitingWorkers.load(ordering: .acquiring)
        while waiting != 0 {
            settings.directory.wake(waiting.trailingZeroBitCount)
            waiting &= waiting - 1
        }
    }

    /// The size of an object the index knows (its metadata), or nil.
    public func objectSize(_ path: String) -> Int? { settings.store?.meta(path)?.size }

    /// The bytes of a small cached object (a manifest), read from RAM or from its slice files on
    /// the caller's thread (blocking: call it off any event loop). Nil when not wholly cached.
    public func cachedBytes(_ path: String, bytesMax: Int) -> [UInt8]? {
        guard let store = settings.store, let (meta, slices) = store.cachedObject(path, bytesMax: bytesMax) else {
            return nil
        }
        let expected = meta.size == 0 ? 0 : (meta.size - 1) / store.sliceBytes + 1
        guard slices.count == expected else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(meta.size)
        for (_, slice) in slices {
            switch slice {
            case .memory(let bytes): out += bytes
            case .disk(let d):
                let fd = open(store.directory + "/" + d.relativePath, O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { return nil }
                defer { Glibc.close(fd) }
                var buffer = [UInt8](repeating: 0, count: d.length)
                let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, d.length, off_t(d.dataOffset)) }
                guard n == d.length else { return nil }
                out += buffer
            }
        }
        return out.count == meta.size ? out : nil
    }

    /// Drops the pins of these objects' slices (a cancelled job).
    public func unpin(paths: [String]) { settings.store?.unpin(paths: paths) }

    /// Pins past their expiry return to the policy (called every few seconds by the admin side).
    public func expirePins(nowSeconds: Int64) { settings.store?.expirePins(nowSeconds: nowSeconds) }

    // MARK: reload

    public struct ReloadResult: Sendable, Equatable {
        /// What changed and now applies ("token.key_hex", ...).
        public var applied: [String]
        /// What changed in the file but needs a restart (listen addresses, workers, cache dir, ...).
        public var needsRestart: [String]
    }

    /// Re-reads the configuration file, validates it in full and, when valid, swaps it in: every
    /// setting but those a running edge cannot change (`keepingRestartOnly`), which are named,
    /// not applied. Workers get the new settings by mail, each between two completions: token
    /// settings and signing keys for the next request, limits and origin settings for what starts
    /// next, the TLS context (when the certificate or key files changed, or `server.http2`) for
    /// connections accepted next; the cache index takes its new bounds at once (a smaller tier
    /// evicts). Responses in flight are unaffected. A file that does not parse or validate,
    /// certificate files that do not load, or an access log that cannot be opened change nothing
    /// (the error names the key).
    public func reload() throws -> ReloadResult {
        guard let configPath else { throw ConfigError(key: "", reason: "no configuration file to reload") }
        let fresh = try loadConfigFile(configPath, EdgeConfig.parse)
        return try reloading.withLock { _ in
            let old = config
            let next = try Self.keepingRestartOnly(of: old, in: fresh)
            // Everything that can fail is done before anything is swapped: the certificates are
            // loaded and checked, then the access log is opened under its new name.
            var tls: TLSServerContext? = nil
            if let current = currentTLS.withLock({ $0 }),
                TLSServerContext.filesDigest(
                    certificate: next.server.tlsCertificate, privateKey: next.server.tlsPrivateKey)
                    != current.filesDigest
                    || next.server.tlsCertificate != old.server.tlsCertificate
                    || next.server.tlsPrivateKey != old.server.tlsPrivateKey
                    || next.server.http2 != old.server.http2
            {
                tls = try TLSServerContext.load(
                    certificate: next.server.tlsCertificate, privateKey: next.server.tlsPrivateKey,
                    http2: next.server.http2
                ).get()
            }
            // The database is reopened when its settings changed or the file was replaced: a
            // file that does not open and check refuses the whole reload, and the old one serves on.
            let oldGeo = currentGeo.withLock { $0 }
            var geo: GeoGate?? = nil   // nil: unchanged
            var geoReopened = false
            if next.geo != old.geo || (next.geo.enabled && oldGeo?.database.isCurrent(path: next.geo.database) != true)
            {
                if let kept = oldGeo?.database, next.geo.enabled, kept.isCurrent(path: next.geo.database) {
                    geo = .some(GeoGate(next.geo, database: kept))   // only the policy changed
                } else {
                    geo = .some(try GeoGate.open(next.geo))
                    geoReopened = next.geo.enabled
                }
            }
            if next.server.accessLog != old.server.accessLog {
                let rc = edge_reopen_append(settings.accessLogFD, next.server.accessLog)
                guard rc == 0 else {
                    throw ConfigError(
                        key: "server.access_log", reason: "cannot open \(next.server.accessLog): errno \(-rc)")
                }
            }
            if let p = OriginTLS.problem(next.origin) { throw p }
            // Every reload resolves the upstreams' names again (mailed before the new settings).
            if let resolver = settings.resolver {
                resolver.update(next.origin)
                resolver.start()
            }
            var result = apply(next, tls: tls, geo: geo)
            if geoReopened && !result.applied.contains("geo.database") { result.applied.append("geo.database (file)") }
            result.needsRestart = Self.changedKeys(next, fresh)
            return result
        }
    }

    /// `fresh` with every setting a running edge cannot change taken from `old`: the listeners
    /// (bound at start), the workers (threads and rings), the ring's size and the read and receive
    /// buffers' (allocated per worker and per connection slot, and reused), the cache directory and slice size (the files on disk),
    /// the kind of origin (a directory, or HTTP upstreams with a cache), the admin listener and
    /// the pre-warm database, and the access log's kind (standard output, a file, or none); the
    /// certificate's names without TLS listeners. Throws when the mix breaks a rule that ties a
    /// reloadable setting to one of these.
    static func keepingRestartOnly(of old: EdgeConfig, in fresh: EdgeConfig) throws -> EdgeConfig {
        var next = fresh
        next.server.listen = old.server.listen
        next.server.listenTLS = old.server.listenTLS
        next.server.workers = old.server.workers
        if old.server.listenTLS.isEmpty {
            next.server.tlsCertificate = old.server.tlsCertificate
            next.server.tlsPrivateKey = old.server.tlsPrivateKey
        }
        let isFile = { (log: String) in log != "" && log != "-" }
        if !(isFile(old.server.accessLog) && isFile(fresh.server.accessLog)) {
            next.server.accessLog = old.server.accessLog
        }
        if old.origin.directory != nil || fresh.origin.directory != nil {
            next.origin.urls = old.origin.urls
            next.origin.upstreams = old.origin.upstreams
        }
        next.cache.directory = old.cache.directory
        next.cache.sliceBytes = old.cache.sliceBytes
        next.limits.ringEntries = old.limits.ringEntries
        next.limits.listenBacklog = old.limits.listenBacklog
        next.limits.readChunkBytes = old.limits.readChunkBytes
        next.limits.recvBufferBytes = old.limits.recvBufferBytes
        next.admin.listen = old.admin.listen
        next.admin.prewarmDatabase = old.admin.prewarmDatabase
        if next.limits.readChunkBytes > next.limits.outputBufferBytesMax {
            throw ConfigError(
                key: "limits.output_buffer_bytes_max",
                reason:
                    "must not be below limits.read_chunk_bytes (\(next.limits.readChunkBytes), which changes only with a restart)"
            )
        }
        return next
    }

    /// Swaps in `next` (restart-only settings already kept as they were). Returns what changed.
    /// `geo`: the new regional-licensing gate, or nil when it is unchanged.
    func apply(_ next: EdgeConfig, tls: TLSServerContext? = nil, geo: GeoGate?? = nil) -> ReloadResult {
        let old = config
        let tlsFiles = ["server.tls_certificate", "server.tls_private_key"]
        var result = ReloadResult(
            applied: Self.changedKeys(old, next).filter { !tlsFiles.contains($0) }, needsRestart: [])
        if tls != nil { result.applied.append("server.tls_certificate (files)") }
        running.withLock { $0 = next }
        if let tls {
            currentTLS.withLock { $0 = tls }
            for w in 0..<workerCount { settings.directory.post(.tls(tls), to: w, bounded: false) }
        }
        if let geo { currentGeo.withLock { $0 = geo } }
        if old.token != next.token || geo != nil {
            let router = Router(next.token, geo: currentGeo.withLock { $0 })
            for w in 0..<workerCount { settings.directory.post(.reload(router), to: w, bounded: false) }
        }
        if old.limits != next.limits || old.origin != next.origin || old.cache != next.cache
            || old.server.http2 != next.server.http2
        {
            for w in 0..<workerCount { settings.directory.post(.configure(next), to: w, bounded: false) }
        }
        if let store = settings.store, old.cache != next.cache {
            let r = store.reconfigure(
                ramBytes: next.cache.ramBytesLimit, diskBytes: next.cache.diskBytesLimit,
                fillsMax: next.cache.fillsMax, objectBytesMax: next.cache.objectBytesMax,
                pinnedBytesMax: next.cache.pinnedBytesMax)
            var removed = 0
            for d in r.diskSlices where unlink(store.directory + "/" + d.relativePath) == 0 { removed += 1 }
            if r.ramEvicted + r.diskEvicted + r.objectsOverMax > 0 {
                printError(
                    "edge: reload: new cache bounds evicted \(r.ramEvicted) RAM slices and \(r.diskEvicted) disk slices, purged \(r.objectsOverMax) objects over cache.object_bytes_max; \(removed) slice files removed"
                )
            }
        }
        return result
    }

    /// The settings that differ between two configurations, as "section.key".
    static func changedKeys(_ a: EdgeConfig, _ b: EdgeConfig) -> [String] {
        changedKeys(a.server, b.server, section: "server") + changedKeys(a.token, b.token, section: "token")
            + changedKeys(a.origin, b.origin, section: "origin") + changedKeys(a.cache, b.cache, section: "cache")
            + changedKeys(a.limits, b.limits, section: "limits") + changedKeys(a.admin, b.admin, section: "admin")
            + changedKeys(a.geo, b.geo, section: "geo")
            // The credentials' description leaves the secret out: a new secret alone is found here.
            + (a.origin.sigV4 != b.origin.sigV4
                && String(describing: a.origin.sigV4) == String(describing: b.origin.sigV4)
                ? ["origin.auth"] : [])
    }

    /// The fields of two values of one configuration struct that differ, as their keys in the
    /// file ("section.key").
    static func changedKeys<T>(_ a: T, _ b: T, section: String) -> [String] {
        zip(Mirror(reflecting: a).children, Mirror(reflecting: b).children).compactMap { x, y in
            guard let label = x.label, String(describing: x.value) != String(describing: y.value) else { return nil }
            return configKey(section: section, field: label)
        }
    }

    /// A configuration field's key in the file: its name in snake case, but for the few keys
    /// named otherwise; nil for a field derived from another key (`origin.upstreams` from
    /// `origin.urls`).
    static func configKey(section: String, field: String) -> String? {
        let key = "\(section).\(snakeCase(field))"
        switch key {
        case "origin.upstreams": return nil
        case "cache.directory": return "cache.dir"
        case "token.lifetime_seconds_max": return "token.max_lifetime_seconds"
        case "geo.allow_unknown": return "geo.unknown"
        case "origin.sig_v4": return "origin.auth"
        case "origin.parent_urls": return "origin.parents"
        case "origin.parents_fallback_to_origin": return "origin.parents_fallback"
        case "limits.keep_alive_timeout_milliseconds": return "limits.keepalive_timeout_milliseconds"
        default: return key
        }
    }

    /// "listenTLS" → "listen_tls", "h2ConcurrentStreamsMax" → "h2_concurrent_streams_max".
    static func snakeCase(_ name: String) -> String {
        var out = ""
        var previousUpper = false
        for ch in name {
            if ch.isUppercase {
                if !previousUpper { out += "_" }
                out += ch.lowercased()
            } else {
                out.append(ch)
            }
            previousUpper = ch.isUppercase
        }
        return out
    }

    /// The bearer token admin requests must carry (reloadable).
    public var adminToken: String { running.withLock { $0.admin.token } }
    /// The admin API's settings (its bounds are reloadable).
    public var adminLimits: AdminConfig { running.withLock { $0.admin } }
}
