import EdgeCatalog
import EdgeConfig
import EdgeHTTP
import EdgeServer
import Foundation
import GRDB

/// What an operator asked to pre-warm, as validated.
struct PrewarmSpec: Codable, Sendable, Equatable {
    var paths: [String]?
    var tracks: [String]?
    var bitrates: [Int]?
    /// Unix seconds; 0: not pinned.
    var pinUntilSeconds: Int64
    var notBeforeSeconds: Int64
    var originConcurrency: Int
    /// 0: unlimited.
    var originBytesPerSecond: Int
}

/// One job's state, as the API shows it and as the database keeps it.
struct PrewarmJob: Codable, Sendable, Equatable {
    enum State: String, Codable, Sendable, CaseIterable { case queued, running, done, failed, cancelled }
    struct Failure: Codable, Sendable, Equatable {
        var path: String
        var slice: Int?
        var reason: String
    }
    var id: String
    var spec: PrewarmSpec
    var state: State
    var createdSeconds: Int64
    var startedSeconds: Int64?
    var finishedSeconds: Int64?
    var objectsTotal = 0
    var objectsDone = 0
    var bytesTotal = 0
    var bytesDone = 0
    /// Bytes this job brought from the origin (slices already cached cost none).
    var bytesFetched = 0
    var failuresCount = 0
    /// The first `failuresKeptMax` failures, with their reasons.
    var failures: [Failure] = []
    /// The objects the job resolved (what a cancel unpins).
    var objects: [String] = []
    var reason: String?

    static let failuresKeptMax = 100
    var isFinished: Bool { state == .done || state == .failed || state == .cancelled }
}

/// The API's view of a job: state, progress, rate and ETA.
struct PrewarmJobView: Encodable {
    var id: String
    var paths: [String]?
    var tracks: [String]?
    var bitrates: [Int]?
    var state: String
    var created_at: String
    var started_at: String?
    var finished_at: String?
    var pin_until: String?
    var not_before: String?
    var objects_done: Int
    var objects_total: Int
    var bytes_done: Int
    var bytes_total: Int
    var bytes_fetched: Int
    var bytes_per_second: Int
    var eta_seconds: Int?
    var failures_count: Int
    var failures: [PrewarmJob.Failure]
    var reason: String?

    init(_ j: PrewarmJob, nowSeconds: Int64) {
        id = j.id
        paths = j.spec.paths; tracks = j.spec.tracks; bitrates = j.spec.bitrates
        state = j.state.rawValue
        created_at = RFC3339.format(j.createdSeconds)
        started_at = j.startedSeconds.map(RFC3339.format)
        finished_at = j.finishedSeconds.map(RFC3339.format)
        pin_until = j.spec.pinUntilSeconds > 0 ? RFC3339.format(j.spec.pinUntilSeconds) : nil
        not_before = j.spec.notBeforeSeconds > 0 ? RFC3339.format(j.spec.notBeforeSeconds) : nil
        objects_done = j.objectsDone; objects_total = j.objectsTotal
        bytes_done = j.bytesDone; bytes_total = j.bytesTotal; bytes_fetched = j.bytesFetched
        let elapsed = max(1, (j.finishedSeconds ?? nowSeconds) - (j.startedSeconds ?? nowSeconds))
        bytes_per_second = j.startedSeconds == nil ? 0 : Int(Int64(j.bytesDone) / elapsed)
        eta_seconds =
            j.state == .running && bytes_per_second > 0 ? max(0, j.bytesTotal - j.bytesDone) / bytes_per_second : nil
        failures_count = j.failuresCount; failures = j.failures; reason = j.reason
    }
}

enum RFC3339 {
    static func parse(_ text: String) -> Int64? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        if let d = f.date(from: text) { return Int64(d.timeIntervalSince1970) }
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.date(from: text).map { Int64($0.timeIntervalSince1970) }
    }
    static func format(_ seconds: Int64) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
    }
}

/// Jobs persisted in SQLite (GRDB): one row per job, its state as JSON. A job that was queued or
/// running when the edge stopped runs again at start-up; the cache itself records what was done
/// (a slice on disk answers at once, with no origin request), so it resumes where it stopped.
struct PrewarmDatabase: Sendable {
    let queue: DatabaseQueue

    init(path: String) throws {
        queue = try DatabaseQueue(path: path)
        try queue.write { db in
            try db.execute(
                sql: """
                    CREATE TABLE IF NOT EXISTS prewarm_jobs (
                        id TEXT PRIMARY KEY,
                        created_at INTEGER NOT NULL,
                        state TEXT NOT NULL,
                        job TEXT NOT NULL)
                    """)
        }
    }

    func save(_ job: PrewarmJob) throws {
        let data = try JSONEncoder().encode(job)
        try queue.write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO prewarm_jobs (id, created_at, state, job) VALUES (?, ?, ?, ?)",
                arguments: [job.id, job.createdSeconds, job.state.rawValue, String(decoding: data, as: UTF8.self)])
        }
    }

    func delete(_ id: String) throws {
        try queue.write { db in try db.execute(sql: "DELETE FROM prewarm_jobs WHERE id = ?", arguments: [id]) }
    }

    /// Every job; a row that does not decode (a damaged file) is reported and skipped.
    func load(report: (String) -> Void) throws -> [PrewarmJob] {
        try queue.read { db in
            var jobs: [PrewarmJob] = []
            for row in try Row.fetchAll(db, sql: "SELECT id, job FROM prewarm_jobs ORDER BY created_at") {
                let id: String = row["id"]
                let text: String = row["job"]
                if let j = try? JSONDecoder().decode(PrewarmJob.self, from: Data(text.utf8)) {
                    jobs.append(j)
                } else {
                    report("prewarm job \(id): unreadable record, skipped")
                }
            }
            return jobs
        }
    }
}

/// Pre-warm jobs: each resolves its objects (paths, or the renditions of its tracks' manifests
/// read through the cache), then asks for every slice through `EdgeControl.prewarmSlice` — the
/// players' one-fetch-per-slice machinery — with at most `origin_concurrency` slices in flight
/// and at most `origin_bytes_per_second` fetched, pinning until `pin_until`.
actor PrewarmJobs {
    let control: EdgeControl
    let database: PrewarmDatabase?
    /// The `[admin]` bounds, as the last reload left them.
    var limits: AdminConfig { control.adminLimits }
    var jobs: [String: PrewarmJob] = [:]
    var tasks: [String: Task<Void, Never>] = [:]
    /// Bytes every job brought into the disk tier since start (the metric).
    var bytesFilled = 0
    let log: @Sendable (String) -> Void

    init(
        control: EdgeControl, database: PrewarmDatabase?, log: @escaping @Sendable (String) -> Void
    ) {
        self.control = control
        self.database = database
        self.log = log
    }

    static var nowSeconds: Int64 { Int64(Date().timeIntervalSince1970) }

    /// Loads persisted jobs; resumes those that had not finished, and re-pins those whose pins
    /// outlive the restart (pins live in memory).
    func restore() throws {
        guard let database else { return }
        for var j in try database.load(report: log) {
            if j.state == .running { j.state = .queued }
            jobs[j.id] = j
            let repin = j.state == .done && j.spec.pinUntilSeconds > Self.nowSeconds
            if j.state == .queued || repin {
                log("prewarm job \(j.id): \(repin ? "re-pinning after restart" : "resuming after restart")")
                start(j.id)
            }
        }
    }

    func counts() -> (byState: [PrewarmJob.State: Int], bytesFilled: Int) {
        var by: [PrewarmJob.State: Int] = [:]
        for j in jobs.values { by[j.state, default: 0] += 1 }
        return (by, bytesFilled)
    }

    func list() -> [PrewarmJob] { jobs.values.sorted { ($0.createdSeconds, $0.id) < ($1.createdSeconds, $1.id) } }
    func job(_ id: String) -> PrewarmJob? { jobs[id] }

    enum SubmitError: Error { case tooManyJobs }

    func submit(_ spec: PrewarmSpec) throws -> PrewarmJob {
        if jobs.count >= limits.prewarmJobsMax {
            // Forget the oldest finished job; refuse when every job is still live.
            guard let oldest = jobs.values.filter(\.isFinished).min(by: { $0.createdSeconds < $1.createdSeconds })
            else { throw SubmitError.tooManyJobs }
            jobs[oldest.id] = nil
            try? database?.delete(oldest.id)
        }
        var id = ""
        repeat { id = "pw-" + String(UInt64.random(in: 0...UInt64.max), radix: 16) } while jobs[id] != nil
        let job = PrewarmJob(id: id, spec: spec, state: .queued, createdSeconds: Self.nowSeconds)
        jobs[id] = job
        persist(job)
        start(id)
        return job
    }

    /// Cancels a job: it stops asking for slices; what it filled stays cached, unpinned.
    func cancel(_ id: String) -> PrewarmJob? {
        guard var j = jobs[id] else { return nil }
        tasks[id]?.cancel()
        tasks[id] = nil
        if j.state != .failed { j.state = .cancelled }
        j.finishedSeconds = j.finishedSeconds ?? Self.nowSeconds
        jobs[id] = j
        if j.spec.pinUntilSeconds > 0 { control.unpin(paths: j.objects) }
        persist(j)
        return j
    }

    private func persist(_ j: PrewarmJob) {
        do { try database?.save(j) } catch { log("prewarm job \(j.id): cannot persist: \(error)") }
    }

    private func start(_ id: String) {
        let control = control
        tasks[id] = Task { await self.run(id, control: control) }
    }

    private func update(_ id: String, persistNow: Bool = false, _ change: (inout PrewarmJob) -> Void) {
        guard var j = jobs[id] else { return }
        change(&j)
        jobs[id] = j
        if persistNow { persist(j) }
    }

    private func fail(_ id: String, path: String, slice: Int?, reason: String) {
        update(id) { j in
            j.failuresCount += 1
            if j.failures.count < PrewarmJob.failuresKeptMax {
                j.failures.append(.init(path: path, slice: slice, reason: reason))
            }
        }
    }

    // MARK: running a job

    private func run(_ id: String, control: EdgeControl) async {
        guard let job = jobs[id] else { return }
        let wasDone = job.state == .done
        let spec = job.spec
        let wait = spec.notBeforeSeconds - Self.nowSeconds
        if wait > 0 {
            try? await Task.sleep(for: .seconds(wait))
            if Task.isCancelled { return }
        }
        update(id, persistNow: true) { j in
            if !wasDone { j.state = .running }
            j.startedSeconds = j.startedSeconds ?? Self.nowSeconds
            j.failuresCount = 0; j.failures = []; j.objectsDone = 0; j.bytesDone = 0
        }
        let pacer = Pacer(bytesPerSecond: spec.originBytesPerSecond)
        let sliceBytes = control.sliceBytes

        // 1. The objects and their sizes: a manifest per track, or slice 0 of each path.
        var objects: [(path: String, size: Int?)] = []
        if let tracks = spec.tracks {
            for track in tracks {
                let manifestPath = "/audio/\(track)/manifest.json"
                guard let manifest = await readManifest(id, manifestPath, pacer: pacer, spec: spec) else { continue }
                objects.append((manifestPath, control.objectSize(manifestPath)))
                let wanted = spec.bitrates.map(Set.init)
                var found = Set<Int>()
                for r in manifest.renditions where wanted == nil || wanted!.contains(r.bitrate_kbps) {
                    guard case .ok(let path, let q) = PathRules.check(r.path), q.isEmpty,
                        path.hasPrefix("/audio/\(track)/"), r.bytes > 0
                    else {
                        fail(id, path: manifestPath, slice: nil, reason: "rendition path \(r.path) refused")
                        continue
                    }
                    found.insert(r.bitrate_kbps)
                    objects.append((path, r.bytes))
                }
                for b in (wanted ?? []).subtracting(found).sorted() {
                    fail(id, path: manifestPath, slice: nil, reason: "no \(b) kb/s rendition in the manifest")
                }
            }
        } else {
            objects = (spec.paths ?? []).map { ($0, nil) }
        }
        if Task.isCancelled { return }
        update(id, persistNow: true) { j in
            j.objects = objects.map(\.path)
            j.objectsTotal = objects.count
            j.bytesTotal = objects.reduce(0) { $0 + ($1.size ?? 0) }
        }
        // 2. Sizes unknown up front (plain paths): slice 0 first, which tells the size.
        var sized: [(path: String, size: Int)] = []
        for (path, size) in objects {
            if Task.isCancelled { return }
            if let size { sized.append((path, size)); continue }
            let outcome = await prewarmSlice(path, 0, spec: spec, pacer: pacer)
            guard case .cached = outcome, let size = control.objectSize(path) else {
                fail(id, path: path, slice: 0, reason: Self.describe(outcome))
                continue
            }
            sized.append((path, size))
        }
        let total = sized.reduce(0) { $0 + $1.size }
        update(id, persistNow: true) { j in j.bytesTotal = total }
        // 3. The pin budget, up front.
        if spec.pinUntilSeconds > 0 && !wasDone {
            let free = control.pinnedBytesMax - (control.cacheFigures()?.pinnedBytes ?? 0)
            if total > free {
                update(id, persistNow: true) { j in
                    j.state = .failed
                    j.finishedSeconds = Self.nowSeconds
                    j.reason =
                        "pin budget exceeded: the job needs \(total) bytes pinned, \(max(0, free)) of cache.pinned_bytes_max (\(control.pinnedBytesMax)) are free"
                }
                log("prewarm job \(id): failed: pin budget exceeded")
                return
            }
        }
        // 4. Every slice, at most `origin_concurrency` in flight.
        var work: [(String, Int, Int)] = []   // path, slice, bytes
        for (path, size) in sized {
            let n = size == 0 ? 0 : (size - 1) / sliceBytes + 1
            for i in 0..<n { work.append((path, i, min(sliceBytes, size - i * sliceBytes))) }
        }
        var slicesLeft: [String: Int] = [:]
        for (path, _, _) in work { slicesLeft[path, default: 0] += 1 }
        var lastPersist = Self.nowSeconds
        await withTaskGroup(of: (String, Int, Int, PrewarmOutcome).self) { group in
            var next = 0
            var inFlight = 0
            while next < work.count || inFlight > 0 {
                while inFlight < spec.originConcurrency && next < work.count && !Task.isCancelled {
                    let (path, slice, bytes) = work[next]
                    next += 1
                    inFlight += 1
                    group.addTask {
                        (path, slice, bytes, await self.prewarmSlice(path, slice, spec: spec, pacer: pacer))
                    }
                }
                guard let (path, slice, bytes, outcome) = await group.next() else { break }
                inFlight -= 1
                if case .cached = outcome {
                    update(id) { j in j.bytesDone += bytes }
                    slicesLeft[path]! -= 1
                    if slicesLeft[path] == 0 { update(id) { j in j.objectsDone += 1 } }
                } else {
                    fail(id, path: path, slice: slice, reason: Self.describe(outcome))
                }
                if Self.nowSeconds > lastPersist, let j = jobs[id] {
                    lastPersist = Self.nowSeconds
                    persist(j)
                }
            }
        }
        if Task.isCancelled { return }
        let fetched = await pacer.fetchedBytes
        bytesFilled += fetched
        update(id, persistNow: true) { j in
            j.bytesFetched += fetched
            if !wasDone {
                j.state = j.failuresCount == 0 ? .done : .failed
                j.finishedSeconds = Self.nowSeconds
                if j.failuresCount > 0 {
                    j.reason = "\(j.failuresCount) of the job's slices or objects failed (see failures)"
                }
            }
        }
        tasks[id] = nil
        if let j = jobs[id] {
            log(
                "prewarm job \(id): \(j.state.rawValue): \(j.objectsDone)/\(j.objectsTotal) objects, \(j.bytesDone) bytes, \(j.bytesFetched) from the origin"
            )
        }
    }

    /// A track's manifest, pre-warmed (and pinned) like the rest, then read from the cache.
    private func readManifest(_ id: String, _ path: String, pacer: Pacer, spec: PrewarmSpec) async -> Manifest? {
        var index = 0
        // Slices until the size says there are no more (a manifest is usually one slice).
        while true {
            let outcome = await prewarmSlice(path, index, spec: spec, pacer: pacer)
            guard case .cached = outcome else {
                fail(id, path: path, slice: index, reason: Self.describe(outcome))
                return nil
            }
            guard let size = control.objectSize(path) else { break }
            index += 1
            if index * control.sliceBytes >= size { break }
        }
        let control = control
        let bytes = await offloaded { control.cachedBytes(path, bytesMax: Self.manifestBytesMax) }
        guard let bytes else {
            fail(id, path: path, slice: nil, reason: "manifest not readable from the cache (over 4 MiB, or evicted)")
            return nil
        }
        do { return try JSONDecoder().decode(Manifest.self, from: Data(bytes)) } catch {
            fail(id, path: path, slice: nil, reason: "manifest is not valid JSON: \(error)")
            return nil
        }
    }

    static let manifestBytesMax = 4 << 20

    /// One slice, through the edge's cache: waits for the pacer, asks, and waits for the outcome
    /// (which a worker reports). Retries while the edge is too busy to start a fill.
    nonisolated private func prewarmSlice(
        _ path: String, _ slice: Int, spec: PrewarmSpec, pacer: Pacer
    ) async
        -> PrewarmOutcome
    {
        for attempt in 0..<Self.busyRetriesMax {
            await pacer.waitForBudget()
            let (outcome, fetched): (PrewarmOutcome, Bool) = await withCheckedContinuation { done in
                let ticket = PrewarmTicket { done.resume(returning: ($0, true)) }
                switch control.prewarmSlice(
                    path: path, index: slice, pinUntilSeconds: spec.pinUntilSeconds, ticket: ticket)
                {
                case .done(let o): done.resume(returning: (o, false))
                case .pending: break
                case .busy: done.resume(returning: (.originStatus(503), false))
                }
            }
            if outcome == .originStatus(503) && !fetched {
                try? await Task.sleep(for: .milliseconds(min(1000, 50 << min(attempt, 4))))
                continue
            }
            if fetched, case .cached(let bytes) = outcome { await pacer.spend(bytes) }
            return outcome
        }
        return .failed("edge busy: cache.fills_max fills in flight for too long")
    }

    static let busyRetriesMax = 60

    static func describe(_ o: PrewarmOutcome) -> String {
        switch o {
        case .cached: return "cached"
        case .originStatus(404), .originStatus(410): return "not found at the origin (\(o.status))"
        case .originStatus(503): return "edge busy (503)"
        case .originStatus(504): return "origin timeout (504)"
        case .originStatus(let s): return "origin error (\(s))"
        case .failed(let why): return why
        }
    }
}

extension PrewarmOutcome {
    var status: Int { if case .originStatus(let s) = self { s } else { 0 } }
}

/// Paces one job's origin traffic: a byte budget that refills at `bytesPerSecond`. A slice is
/// asked for when the budget is not in debt, and its bytes are charged when it arrives from the
/// origin (a slice already cached costs nothing), so the overshoot is bounded by the slices in
/// flight.
actor Pacer {
    let bytesPerSecond: Int
    private var budget: Double
    private var last = ContinuousClock.now
    private(set) var fetchedBytes = 0

    init(bytesPerSecond: Int) {
        self.bytesPerSecond = bytesPerSecond
        budget = Double(bytesPerSecond)
    }

    private func refill() {
        let now = ContinuousClock.now
        let elapsed = now - last
        last = now
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        budget = min(Double(bytesPerSecond), budget + seconds * Double(bytesPerSecond))
    }

    func waitForBudget() async {
        guard bytesPerSecond > 0 else { return }
        while true {
            refill()
            if budget >= 0 { return }
            try? await Task.sleep(for: .milliseconds(Int(min(1000, -budget / Double(bytesPerSecond) * 1000) + 1)))
            if Task.isCancelled { return }
        }
    }

    func spend(_ bytes: Int) {
        fetchedBytes += bytes
        guard bytesPerSecond > 0 else { return }
        refill()
        budget -= Double(bytes)
    }
}
