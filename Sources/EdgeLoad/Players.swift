import CEdgeCrypto
import EdgeAuthToken
import EdgeEncoding
import Foundation

/// What a player reads of a manifest (`audio/<track>/manifest.json`).
struct PlayerManifest: Decodable {
    struct Segment: Decodable { var offset: Int; var length: Int }
    struct Chunk: Decodable { var offset: Int; var length: Int; var duration_ms: Int }
    struct Rendition: Decodable {
        var bitrate_kbps: Int
        var path: String
        var `init`: Segment?
        var chunks: [Chunk]
    }
    var renditions: [Rendition]
}

/// What a player reads of a playback-auth grant.
struct GrantReply: Decodable {
    struct Prefetch: Decodable { var track_id: String; var url: String; var range: String }
    var base_url: String
    var token: String
    var token_name: String
    var bitrate_kbps: Int
    var prefetch: [Prefetch]
}

/// One simulated listener: press play, (grant), manifest, init and the first chunk by range,
/// then a buffer kept `buffer_ahead_ms` ahead of a virtual playback clock, chunk by chunk; the
/// next track's first chunk fetched at `prefetch_at` of the track; seeks and bit-rate switches
/// at random. A rebuffer is the clock reaching the end of the buffered audio.
final class Player {
    enum Phase { case granting, manifest, loading, playing, done }
    enum Kind: Int { case grant = 1, manifest, initSegment, chunk, prefetch, prefetchManifest }

    let slot: Int
    var serial = 0
    var pressAt: Int64 = 0
    var tracks: [String] = []
    var isFirstTrack = true
    var trackWantedAt: Int64 = 0
    var phase = Phase.done
    var jwt = ""
    var endpoint: Endpoint? = nil
    var token = ""
    var tokenName = ""
    var bitrateKbpsMax = 0
    var grantPrefetch: [String: GrantReply.Prefetch] = [:]
    var prefetchRequested = false
    /// The next track's path whose first chunk (and init) arrived ahead of time.
    var prefetchedPath: String? = nil
    var prefetchedTrack: String? = nil
    var manifest: PlayerManifest? = nil
    var rendition = 0
    var chunkEndsMilliseconds: [Int] = []
    var initLoadedFor: Int? = nil
    var initInFlight = false
    var chunkInFlight: Int? = nil
    /// Bumped when what is in flight stops being wanted (seek, switch, next track).
    var sequence = 0
    /// Bumped by each track: a prefetch stays wanted through seeks and switches.
    var trackNumber = 0
    var positionMilliseconds = 0.0
    var bufferedEndMilliseconds = 0
    var clockRunning = false
    var lastClock: Int64 = 0
    var stallStart: Int64? = nil
    var stallIsRebuffer = false
    var pools: [Endpoint: ConnectionPool] = [:]
    var random: SplitMix64

    init(slot: Int, seed: UInt64) { self.slot = slot; random = SplitMix64(seed: seed) }

    var track: String { tracks[0] }
    var totalMilliseconds: Int { chunkEndsMilliseconds.last ?? 0 }
    var chunks: [PlayerManifest.Chunk] { manifest!.renditions[rendition].chunks }
    var current: PlayerManifest.Rendition { manifest!.renditions[rendition] }

    func tag(_ kind: Kind) -> Int {
        slot << 36 | (serial & 0xFFFF) << 20 | (expected(kind) & 0xFFFF) << 4 | kind.rawValue
    }
    func expected(_ kind: Kind) -> Int { kind == .prefetch || kind == .prefetchManifest ? trackNumber : sequence }
}

/// `loadtest run`: players on one io_uring loop (one engine per thread of the run).
public final class PlayerEngine: LoadLoop {
    let scenario: Scenario
    let share: (index: Int, threads: Int)
    var players: [Player] = []
    var freePlayers: [Int] = []
    var active = 0
    private var random: SplitMix64
    private let zipf: [Double]
    private let edgeEndpoint: Endpoint?
    private let authEndpoint: Endpoint?
    private var authPool: ConnectionPool? = nil
    private var sharedPools: [Endpoint: ConnectionPool] = [:]
    private let tokenKey: EdgeAuthKey?
    /// Open model: the next arrival's time; release drop: press times left, latest first.
    private var nextArrival: Int64 = 0
    private var pressTimes: [Int64] = []
    private var arrivalsEnd: Int64 = 0
    private var runEnd: Int64 = 0
    private var stopping = false
    private var tickCount = 0
    private var playerCounter = 0
    static let manifestBytesMax = 1 << 20
    static let grantBytesMax = 1 << 20

    public init(scenario: Scenario, share: (index: Int, threads: Int) = (0, 1), progress: Progress = Progress()) throws
    {
        self.scenario = scenario
        self.share = share
        random = SplitMix64(seed: scenario.seed &+ UInt64(share.index) &* 0x9E37_79B9)
        // Zipf over the track list: P(rank k) ∝ 1 / k^s.
        var cdf: [Double] = []
        var sum = 0.0
        for k in 1...scenario.tracks.count { sum += 1 / pow(Double(k), scenario.zipfExponent); cdf.append(sum) }
        zipf = cdf.map { $0 / sum }
        func endpoint(_ url: String, http2: Bool) -> Endpoint? {
            ReplayTarget.parse(url).map {
                Endpoint(host: $0.host, port: $0.port, tls: $0.tls, http2: http2, authority: $0.authority)
            }
        }
        edgeEndpoint = scenario.edge.isEmpty ? nil : endpoint(scenario.edge, http2: scenario.http2)
        authEndpoint = scenario.auth.flatMap { endpoint($0.url, http2: false) }
        tokenKey = scenario.auth == nil ? EdgeAuthKey(hex: scenario.tokenKeyHex) : nil
        if scenario.auth == nil && tokenKey == nil { throw LoadError("target.token_key_hex is not a key") }
        let playersMax = max(1, scenario.playersMax / share.threads)
        try super.init(
            ringEntries: min(playersMax, 4096) * 4 + 256, bufferBytes: 16384, caFile: scenario.caFile,
            timeoutMilliseconds: scenario.timeoutMilliseconds, lagLimitMilliseconds: scenario.lagLimitMilliseconds,
            progress: progress)
        if let authEndpoint {
            authPool = ConnectionPool(
                loop: self, endpoint: authEndpoint, connectionsMax: max(1, scenario.auth!.connections / share.threads),
                streamsMax: 1, queueMax: playersMax * 2)
        }
    }

    /// Runs the scenario on this thread's share; returns whether it completed and how long.
    public func run() throws -> (outcome: ReplayOutcome, seconds: Double) {
        let t0 = now
        startMicroseconds = t0
        arrivalsEnd = t0 + Int64(scenario.arrivalSeconds * 1_000_000)
        runEnd = t0 + Int64(scenario.durationSeconds * 1_000_000)
        switch scenario.arrivals {
        case .open(let poisson, _): nextArrival = poisson ? t0 + interArrival(at: t0) : t0
        case .releaseDrop(let n, let jitter):
            var times: [Int64] = []
            for i in 0..<n where i % share.threads == share.index {
                times.append(t0 + Int64(random.nextDouble() * Double(jitter) * 1000))
            }
            pressTimes = times.sorted(by: >)
        }
        try loop {
            let t = now
            if !stopping && (t >= runEnd || behind) { stopping = true }
            if !stopping && t >= arrivalsEnd && pressTimes.isEmpty && active == 0 { return true }
            return stopping && (inFlight == 0 || t >= runEnd + timeoutMicroseconds || behind)
        }
        let seconds = Double(min(now, runEnd) - startMicroseconds) / 1_000_000
        finish()
        return (behind ? .generatorBehind : .completed, seconds)
    }

    var inFlight: Int { connections.reduce(0) { $0 + $1.exchanges.count } }

    /// Seconds to the next arrival of the open model at time `t`, from the stage in force.
    private func interArrival(at t: Int64) -> Int64 {
        guard case .open(let poisson, let stages) = scenario.arrivals else { return .max }
        var elapsed = Double(t - startMicroseconds) / 1_000_000
        var rate = 0.0
        for s in stages {
            if elapsed < s.seconds { rate = s.rate; break }
            elapsed -= s.seconds
        }
        rate /= Double(share.threads)
        guard rate > 0 else { return 10_000 }   // a stage at rate 0: look again in 10 ms
        let u = max(random.nextDouble(), 1e-12)
        let seconds = poisson ? -log(u) / rate : 1 / rate
        return max(1, Int64(seconds * 1_000_000))
    }

    // MARK: the loop's events

    override func tick(now t: Int64) {
        if !stopping {
            if case .open = scenario.arrivals {
                while nextArrival <= t && nextArrival < arrivalsEnd {
                    let due = nextArrival
                    nextArrival += interArrival(at: due)
                    if stageRate(at: due) > 0 { press(at: due) }
                }
            }
            while let p = pressTimes.last, p <= t { pressTimes.removeLast(); press(at: p) }
        }
        tickCount += 1
        // Playback clocks every 10 ms: finer than any chunk, cheap for thousands of players.
        if tickCount % 10 == 0 || stopping {
            for p in players where p.phase != .done { step(p, now: t) }
            authPool?.pump(now: t)
            for (_, pool) in sharedPools { pool.pump(now: t) }
        }
        for c in connections where !c.exchanges.isEmpty { c.expire(now: t, timeoutMicroseconds: timeoutMicroseconds) }
    }

    private func stageRate(at t: Int64) -> Double {
        guard case .open(_, let stages) = scenario.arrivals else { return 0 }
        var elapsed = Double(t - startMicroseconds) / 1_000_000
        for s in stages {
            if elapsed < s.seconds { return s.rate }
            elapsed -= s.seconds
        }
        return 0
    }

    override func exchangeFailed(_ e: Exchange, kind: String) {
        super.exchangeFailed(e, kind: kind)
        guard let p = player(for: e.tag) else { return }
        fail(p)
    }

    override func exchangeCompleted(_ e: Exchange, on c: ClientConnection, now t: Int64) {
        let kind = Player.Kind(rawValue: e.tag & 0xF)
        if kind == .grant {
            recorder.responses += 1
            progress.responses.add(1)
        } else {
            record(e, now: t)
        }
        c.pool?.pump(now: t)
        guard let p = player(for: e.tag), let kind else { return }
        let stale = (e.tag >> 4) & 0xFFFF != p.expected(kind) & 0xFFFF
        guard e.status >= 200 && e.status < 300, !e.bodyTooLarge else {
            if kind == .grant { recorder.error("grant_status_\(e.status)") }
            if !stale { fail(p) }
            return
        }
        if stale { return }
        switch kind {
        case .grant:
            recorder.players.grant.record(microseconds: (e.head ?? t) - e.intended)
            guard let g = try? JSONDecoder().decode(GrantReply.self, from: Data(e.body)),
                let target = ReplayTarget.parse(g.base_url), ReplayEngine.isIPAddress(target.host)
            else {
                recorder.error("grant_unreadable"); fail(p); return
            }
            p.endpoint = Endpoint(
                host: target.host, port: target.port, tls: target.tls, http2: scenario.http2,
                authority: target.authority)
            p.token = g.token
            p.tokenName = g.token_name
            p.bitrateKbpsMax = g.bitrate_kbps
            p.grantPrefetch = Dictionary(g.prefetch.map { ($0.track_id, $0) }, uniquingKeysWith: { a, _ in a })
            requestManifest(p, now: t)
        case .manifest:
            guard let m = try? JSONDecoder().decode(PlayerManifest.self, from: Data(e.body)), !m.renditions.isEmpty,
                m.renditions.allSatisfy({ !$0.chunks.isEmpty })
            else {
                recorder.error("manifest_unreadable"); fail(p); return
            }
            load(p, manifest: m, now: t)
        case .initSegment:
            p.initInFlight = false
            p.initLoadedFor = p.rendition
            step(p, now: t)
        case .chunk:
            guard let i = p.chunkInFlight else { return }
            p.chunkInFlight = nil
            p.bufferedEndMilliseconds = max(p.bufferedEndMilliseconds, p.chunkEndsMilliseconds[i])
            if p.phase == .playing { maybeSeekOrSwitch(p, now: t) }
            step(p, now: t)
        case .prefetch:
            if p.tracks.count > 1 {
                recorder.players.prefetches += 1
                p.prefetchedTrack = p.tracks[1]
            }
        case .prefetchManifest:
            // Without a grant's prefetch list: the next track's manifest, then its first chunk.
            guard p.tracks.count > 1, let m = try? JSONDecoder().decode(PlayerManifest.self, from: Data(e.body)),
                let r = Self.choose(m, kbpsMax: p.bitrateKbpsMax)
            else { return }
            let first = m.renditions[r].chunks[0]
            p.prefetchedPath = m.renditions[r].path
            submit(
                p, .prefetch, path: "\(m.renditions[r].path)?\(p.tokenName)=\(token(p, track: p.tracks[1]))",
                headers: [("range", "bytes=0-\(first.offset + first.length - 1)")], now: t)
        }
    }

    private func player(for tag: Int) -> Player? {
        let slot = tag >> 36
        guard slot < players.count else { return nil }
        let p = players[slot]
        guard p.phase != .done, (tag >> 20) & 0xFFFF == p.serial & 0xFFFF else { return nil }
        return p
    }

    // MARK: players

    private func press(at intended: Int64) {
        guard active < max(1, scenario.playersMax / share.threads) else {
            recorder.error("players_refused"); return
        }
        let p: Player
        if let slot = freePlayers.popLast() {
            p = players[slot]
        } else {
            p = Player(slot: players.count, seed: random.next())
            players.append(p)
        }
        p.serial += 1
        playerCounter += 1
        active += 1
        recorder.players.plays += 1
        progress.playsStarted.add(1)
        progress.playsActive.add(1)
        p.pressAt = intended
        p.isFirstTrack = true
        p.tracks = playlist()
        p.jwt = scenario.auth.map { jwt(for: $0, player: "loadtest-\(share.index)-\(playerCounter)") } ?? ""
        startTrack(p, wantedAt: intended)
    }

    /// The tracks of one play: a release drop starts at an album position (Zipf: most at the
    /// first track) and follows the album; otherwise each track is drawn by popularity.
    private func playlist() -> [String] {
        let n = scenario.player.tracksPerPlay
        let tracks = scenario.tracks
        if case .releaseDrop = scenario.arrivals {
            let start = drawZipf()
            return (0..<n).map { tracks[(start + $0) % tracks.count] }
        }
        return (0..<n).map { _ in tracks[drawZipf()] }
    }

    private func drawZipf() -> Int {
        let u = random.nextDouble()
        var lo = 0, hi = zipf.count - 1
        while lo < hi {
            let mid = (lo + hi) / 2
            if zipf[mid] < u { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    private func startTrack(_ p: Player, wantedAt t: Int64) {
        p.sequence += 1
        p.trackNumber += 1
        p.trackWantedAt = t
        p.manifest = nil
        p.chunkInFlight = nil
        p.initInFlight = false
        p.initLoadedFor = nil
        p.positionMilliseconds = 0
        p.bufferedEndMilliseconds = 0
        p.clockRunning = false
        p.stallStart = nil
        p.prefetchRequested = false
        if let auth = scenario.auth {
            p.phase = .granting
            var body = "{\"track_id\":\(JSONText.quoted(p.track))"
            if let q = auth.quality { body += ",\"quality\":\(JSONText.quoted(q))" }
            if p.tracks.count > 1 { body += ",\"next\":[\(JSONText.quoted(p.tracks[1]))]" }
            body += "}"
            var e = Exchange(intended: t, sent: t)
            e.tag = p.tag(.grant)
            e.bodyMax = Self.grantBytesMax
            recorder.requests += 1
            progress.requests.add(1)
            let ok = authPool!.submit(
                .init(
                    method: "POST", path: "/v1/playback",
                    headers: [("authorization", "Bearer \(p.jwt)"), ("content-type", "application/json")],
                    body: Array(body.utf8), exchange: e))
            if !ok { super.exchangeFailed(e, kind: "queue_full"); fail(p) }
        } else {
            p.endpoint = edgeEndpoint
            p.tokenName = scenario.tokenName
            p.token = token(p, track: p.track)
            p.bitrateKbpsMax = scenario.player.bitrateKbps
            p.grantPrefetch = [:]
            requestManifest(p, now: t)
        }
    }

    /// Without playback-auth the player signs its own token (the edge's key from the scenario),
    /// for the track's files only.
    private func token(_ p: Player, track: String) -> String {
        guard let tokenKey else { return p.token }
        let t = Int(Date().timeIntervalSince1970)
        return EdgeAuthToken.sign(key: tokenKey, acl: ["/audio/\(track)/*"], startTime: t - 60, expiry: t + 3600)
    }

    private func requestManifest(_ p: Player, now t: Int64) {
        p.phase = .manifest
        submit(
            p, .manifest, path: "/audio/\(p.track)/manifest.json?\(p.tokenName)=\(p.token)", headers: [], now: t,
            intended: t, bodyMax: Self.manifestBytesMax)
    }

    /// The highest rendition at or below `kbpsMax`, else the lowest.
    static func choose(_ m: PlayerManifest, kbpsMax: Int) -> Int? {
        guard !m.renditions.isEmpty else { return nil }
        let sorted = m.renditions.indices.sorted { m.renditions[$0].bitrate_kbps < m.renditions[$1].bitrate_kbps }
        return sorted.last(where: { m.renditions[$0].bitrate_kbps <= kbpsMax }) ?? sorted.first
    }

    private func load(_ p: Player, manifest m: PlayerManifest, now t: Int64) {
        p.manifest = m
        p.rendition = Self.choose(m, kbpsMax: p.bitrateKbpsMax)!
        setChunkTable(p)
        p.phase = .loading
        if let path = p.prefetchedPath, p.prefetchedTrack == p.track, path == p.current.path {
            // The prefetch's range covered the init segment and the first chunk.
            p.initLoadedFor = p.rendition
            p.bufferedEndMilliseconds = p.chunkEndsMilliseconds[0]
            recorder.players.prefetchesUsed += 1
        }
        p.prefetchedPath = nil
        p.prefetchedTrack = nil
        step(p, now: t)
    }

    private func setChunkTable(_ p: Player) {
        var end = 0
        p.chunkEndsMilliseconds = p.chunks.map {
            end += max(0, min($0.duration_ms, 86_400_000)); return end
        }
    }

    /// Advances the player: its clock, stalls and resumes, what it fetches next.
    private func step(_ p: Player, now t: Int64) {
        guard p.phase == .loading || p.phase == .playing, p.manifest != nil else { return }
        let total = p.totalMilliseconds
        let speed = scenario.player.playbackSpeed
        if p.phase == .loading {
            let initReady = p.current.`init` == nil || p.initLoadedFor == p.rendition
            if initReady && p.bufferedEndMilliseconds >= min(scenario.player.firstAudioMilliseconds, total) {
                if p.isFirstTrack {
                    recorder.players.timeToFirstAudio.record(microseconds: t - p.pressAt)
                    recorder.players.playsWithAudio += 1
                    progress.firstAudio.add(1)
                } else {
                    recorder.players.nextTrackStart.record(microseconds: t - p.trackWantedAt)
                }
                p.phase = .playing
                p.clockRunning = true
                p.lastClock = t
            }
        } else if p.clockRunning {
            p.positionMilliseconds += Double(t - p.lastClock) / 1000 * speed
            p.lastClock = t
            if p.positionMilliseconds >= Double(total) {
                recorder.players.tracksCompleted += 1
                nextTrack(p, now: t)
                return
            }
            if p.positionMilliseconds >= Double(p.bufferedEndMilliseconds) {
                p.positionMilliseconds = Double(p.bufferedEndMilliseconds)
                p.clockRunning = false
                p.stallStart = t
                p.stallIsRebuffer = true
                recorder.players.rebuffers += 1
                progress.rebuffers.add(1)
            }
        } else if Double(p.bufferedEndMilliseconds) > p.positionMilliseconds {
            if let s = p.stallStart, p.stallIsRebuffer { recorder.players.rebufferDuration.record(microseconds: t - s) }
            p.stallStart = nil
            p.clockRunning = true
            p.lastClock = t
        }
        guard !stopping else { return }
        if let i = p.current.`init`, p.initLoadedFor != p.rendition, !p.initInFlight {
            p.initInFlight = true
            submit(
                p, .initSegment, path: mediaPath(p),
                headers: [("range", "bytes=\(i.offset)-\(i.offset + i.length - 1)")], now: t)
        }
        let ahead = p.bufferedEndMilliseconds - Int(p.positionMilliseconds)
        if p.chunkInFlight == nil, p.bufferedEndMilliseconds < total,
            p.phase == .loading || ahead < scenario.player.bufferAheadMilliseconds,
            let next = p.chunkEndsMilliseconds.firstIndex(where: { $0 > p.bufferedEndMilliseconds })
        {
            let c = p.chunks[next]
            p.chunkInFlight = next
            submit(
                p, .chunk, path: mediaPath(p), headers: [("range", "bytes=\(c.offset)-\(c.offset + c.length - 1)")],
                now: t)
        }
        if p.phase == .playing, !p.prefetchRequested, p.tracks.count > 1,
            p.positionMilliseconds >= scenario.player.prefetchAt * Double(total)
        {
            p.prefetchRequested = true
            let next = p.tracks[1]
            if let g = p.grantPrefetch[next], let target = ReplayTarget.parse(g.url) {
                p.prefetchedPath = String(target.path.prefix { $0 != "?" })
                submit(p, .prefetch, path: target.path, headers: [("range", g.range)], now: t)
            } else if scenario.auth == nil {
                submit(
                    p, .prefetchManifest, path: "/audio/\(next)/manifest.json?\(p.tokenName)=\(token(p, track: next))",
                    headers: [], now: t, intended: t, bodyMax: Self.manifestBytesMax)
            }
        }
    }

    private func mediaPath(_ p: Player) -> String { "\(p.current.path)?\(p.tokenName)=\(p.token)" }

    private func maybeSeekOrSwitch(_ p: Player, now t: Int64) {
        let total = p.totalMilliseconds
        if scenario.player.seekProbability > 0, p.random.nextDouble() < scenario.player.seekProbability, total > 0 {
            recorder.players.seeks += 1
            p.sequence += 1   // what is in flight is no longer wanted
            p.chunkInFlight = nil
            p.initInFlight = false
            let target = p.random.nextDouble() * Double(total) * 0.9
            let chunk = p.chunkEndsMilliseconds.firstIndex(where: { Double($0) > target }) ?? 0
            p.positionMilliseconds = target
            p.bufferedEndMilliseconds = chunk == 0 ? 0 : p.chunkEndsMilliseconds[chunk - 1]
            p.clockRunning = false
            p.stallStart = t
            p.stallIsRebuffer = false   // a seek waits by the listener's choice, not a rebuffer
            return
        }
        if scenario.player.switchProbability > 0, p.random.nextDouble() < scenario.player.switchProbability {
            let m = p.manifest!
            let others = m.renditions.indices.filter {
                $0 != p.rendition && m.renditions[$0].bitrate_kbps <= p.bitrateKbpsMax
            }
            guard !others.isEmpty else { return }
            recorder.players.bitrateSwitches += 1
            p.sequence += 1
            p.chunkInFlight = nil
            p.initInFlight = false
            p.rendition = others[p.random.next(below: others.count)]
            // The buffered audio stays; chunks from here on come from the new rendition.
            setChunkTable(p)
            p.bufferedEndMilliseconds = min(p.bufferedEndMilliseconds, p.totalMilliseconds)
        }
    }

    private func nextTrack(_ p: Player, now t: Int64) {
        p.tracks.removeFirst()
        guard !p.tracks.isEmpty, !stopping else { end(p); return }
        p.isFirstTrack = false
        startTrack(p, wantedAt: t)
    }

    private func fail(_ p: Player) {
        guard p.phase != .done else { return }
        if p.isFirstTrack && p.phase != .playing { recorder.players.playsFailed += 1 }
        end(p)
    }

    private func end(_ p: Player) {
        guard p.phase != .done else { return }
        p.phase = .done
        p.sequence += 1
        for (_, pool) in p.pools { pool.close() }
        p.pools.removeAll()
        active -= 1
        progress.playsActive.add(-1)
        freePlayers.append(p.slot)
    }

    private func submit(
        _ p: Player, _ kind: Player.Kind, path: String, headers: [(name: String, value: String)], now t: Int64,
        intended: Int64? = nil, bodyMax: Int = 0
    ) {
        guard let endpoint = p.endpoint else { fail(p); return }
        var e = Exchange(intended: intended ?? t, sent: t)
        e.tag = p.tag(kind)
        e.bodyMax = bodyMax
        recorder.requests += 1
        progress.requests.add(1)
        let pool = self.pool(for: p, endpoint)
        if !pool.submit(.init(path: path, headers: headers + [("user-agent", "edge-loadtest")], exchange: e)) {
            super.exchangeFailed(e, kind: "queue_full")
            fail(p)
        }
    }

    /// HTTP/2: one connection per player (its own flow-control windows). HTTP/1.1: a pool per
    /// edge shared by every player, at most `http1_connections`.
    private func pool(for p: Player, _ endpoint: Endpoint) -> ConnectionPool {
        if endpoint.http2 {
            if let pool = p.pools[endpoint] { return pool }
            let pool = ConnectionPool(
                loop: self, endpoint: endpoint, connectionsMax: 1, streamsMax: 100, queueMax: 1000)
            p.pools[endpoint] = pool
            return pool
        }
        if let pool = sharedPools[endpoint] { return pool }
        let pool = ConnectionPool(
            loop: self, endpoint: endpoint, connectionsMax: max(1, scenario.http1Connections / share.threads),
            streamsMax: 1, queueMax: max(1000, scenario.playersMax * 4))
        sharedPools[endpoint] = pool
        return pool
    }

    /// A JWT (HS256) for one player, as the identity provider would issue it.
    private func jwt(for auth: Scenario.Auth, player: String) -> String {
        guard !auth.jwtHS256Secret.isEmpty else { return auth.jwt }
        func b64(_ bytes: [UInt8]) -> String {
            Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
                .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        }
        let exp = Int(Date().timeIntervalSince1970) + 86_400
        let head = b64(Array("{\"alg\":\"HS256\",\"typ\":\"JWT\"}".utf8))
        let body = b64(
            Array(
                "{\"sub\":\(JSONText.quoted(player)),\"tier\":\(JSONText.quoted(auth.tier)),\"country\":\(JSONText.quoted(auth.country)),\"exp\":\(exp)}"
                    .utf8))
        let message = Array("\(head).\(body)".utf8)
        let key = Array(auth.jwtHS256Secret.utf8)
        var mac = [UInt8](repeating: 0, count: 32)
        _ = edge_hmac_sha256(key, key.count, message, message.count, &mac)
        return "\(head).\(body).\(b64(mac))"
    }

    /// In flight at the end (the run's duration cut them): counted, never dropped.
    private func finish() {
        var cut = 0
        for c in connections {
            cut += c.exchanges.values.filter { !$0.timedOut }.count
            c.exchanges.removeAll()
        }
        if cut > 0 { recorder.error("cut_at_end", count: cut) }
        for p in players where p.phase != .done {
            if p.isFirstTrack && p.phase != .playing { recorder.players.playsUnfinished += 1 }
            p.phase = .done
        }
        closeAll()
    }
}
