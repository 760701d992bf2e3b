import EdgeConfig
import Foundation
import TOMLKit

/// A `loadtest run` scenario (TOML): who the players are, where they go, how they arrive, what
/// counts as a pass. Every number is bounded here; an unknown key is an error naming it.
public struct Scenario: Sendable {
    /// The edge's base URL (`http://IP:port`), used when no `[auth]` hands one out per grant.
    public var edge: String = ""
    public var http2 = true
    /// HTTP/1.1: connections to one edge, shared by every player (a browser's pool, bounded).
    public var http1Connections = 64
    public var caFile: String? = nil

    public struct Auth: Sendable {
        public var url: String = ""
        /// Each player gets its own JWT (sub = player-N), signed with this HS256 secret...
        public var jwtHS256Secret = ""
        /// ...or every player presents this one.
        public var jwt = ""
        public var tier = "premium"
        public var country = "US"
        public var quality: String? = nil
        public var connections = 32
    }
    public var auth: Auth? = nil
    /// Without `[auth]`: players sign their own EdgeAuth token with this key.
    public var tokenKeyHex = ""
    public var tokenName = "hdnts"

    public var tracks: [String] = []
    public var zipfExponent = 1.0
    public var seed: UInt64 = 1

    public struct Player: Sendable {
        public var bufferAheadMilliseconds = 10_000
        public var firstAudioMilliseconds = 1000
        public var prefetchAt = 0.8
        public var seekProbability = 0.0
        public var switchProbability = 0.0
        /// Bit rate without `[auth]` (the grant chooses it otherwise): the highest at or below.
        public var bitrateKbps = 160
        public var tracksPerPlay = 1
        /// The virtual playback clock's speed: 10 listens to a 3-minute track in 18 s.
        public var playbackSpeed = 1.0
    }
    public var player = Player()

    public enum Arrivals: Sendable, Equatable {
        /// Players per second, stage by stage; Poisson or evenly spaced.
        case open(poisson: Bool, stages: [Stage])
        /// `players` press play on the album within `jitterMilliseconds` of the start.
        case releaseDrop(players: Int, jitterMilliseconds: Int)
    }
    public struct Stage: Sendable, Equatable {
        public var rate: Double
        public var seconds: Double
    }
    public var arrivals = Arrivals.open(poisson: true, stages: [Stage(rate: 10, seconds: 10)])

    /// The whole run's bound; a release drop ends sooner when every player is done.
    public var durationSeconds: Double = 0
    public var timeoutMilliseconds = 10_000
    public var lagLimitMilliseconds = 200
    /// Players at once, per run: arrivals beyond it are counted (`players_refused`), not started.
    public var playersMax = 20_000
    public var threads = 1
    public var thresholds: [Threshold] = []

    public init() {}

    /// Seconds over which players arrive.
    public var arrivalSeconds: Double {
        switch arrivals {
        case .open(_, let stages): return stages.reduce(0) { $0 + $1.seconds }
        case .releaseDrop(_, let jitter): return Double(jitter) / 1000
        }
    }

    public static func parse(_ text: String) throws -> Scenario {
        let r = Reader(root: try Reader.parse(text))
        try r.allowOnly(["target", "auth", "content", "player", "arrivals", "run", "thresholds"], in: "")
        var s = Scenario()
        let target = try r.table("target")
        try r.allowOnly(["edge", "protocol", "http1_connections", "ca", "token_key_hex", "token_name"], in: "target")
        s.edge = try r.string(target, "target.edge") ?? ""
        switch try r.string(target, "target.protocol") ?? "h2" {
        case "h2": s.http2 = true
        case "http1": s.http2 = false
        case let p: throw ConfigError(key: "target.protocol", reason: "\"\(p)\": h2 or http1")
        }
        s.http1Connections = try r.int(target, "target.http1_connections", 1...10_000) ?? 64
        s.caFile = try r.string(target, "target.ca")
        s.tokenKeyHex = try r.string(target, "target.token_key_hex") ?? ""
        s.tokenName = try r.string(target, "target.token_name") ?? "hdnts"

        if let a = try r.table("auth") {
            try r.allowOnly(
                ["url", "jwt_hs256_secret", "jwt", "tier", "country", "quality", "connections"], in: "auth")
            var auth = Auth()
            auth.url = try r.string(a, "auth.url") ?? ""
            guard let t = ReplayTarget.parse(auth.url), !t.tls, ReplayEngine.isIPAddress(t.host) else {
                throw ConfigError(
                    key: "auth.url", reason: "must be http://IP:port (playback-auth speaks cleartext HTTP/1.1)")
            }
            auth.jwtHS256Secret = try r.string(a, "auth.jwt_hs256_secret") ?? ""
            auth.jwt = try r.string(a, "auth.jwt") ?? ""
            guard auth.jwtHS256Secret.isEmpty != auth.jwt.isEmpty else {
                throw ConfigError(key: "auth", reason: "set one of jwt_hs256_secret (a JWT per player) or jwt")
            }
            auth.tier = try r.string(a, "auth.tier") ?? "premium"
            guard auth.tier == "free" || auth.tier == "premium" else {
                throw ConfigError(key: "auth.tier", reason: "free or premium")
            }
            auth.country = try r.string(a, "auth.country") ?? "US"
            auth.quality = try r.string(a, "auth.quality")
            if let q = auth.quality, !["low", "normal", "high", "very_high"].contains(q) {
                throw ConfigError(key: "auth.quality", reason: "low, normal, high or very_high")
            }
            auth.connections = try r.int(a, "auth.connections", 1...10_000) ?? 32
            s.auth = auth
        } else {
            guard let t = ReplayTarget.parse(s.edge), ReplayEngine.isIPAddress(t.host), t.path == "/" else {
                throw ConfigError(
                    key: "target.edge", reason: "must be http://IP:port or https://IP:port without [auth]")
            }
            guard s.tokenKeyHex.utf8.count >= 2, s.tokenKeyHex.utf8.count % 2 == 0,
                s.tokenKeyHex.utf8.allSatisfy({ $0 < 0x80 && Character(Unicode.Scalar($0)).isHexDigit })
            else {
                throw ConfigError(
                    key: "target.token_key_hex", reason: "the edge's token key in hex, needed without [auth]")
            }
        }

        let content = try r.table("content")
        try r.allowOnly(["tracks", "tracks_file", "zipf_exponent", "seed"], in: "content")
        s.tracks = try r.strings(content, "content.tracks") ?? []
        if let file = try r.string(content, "content.tracks_file") {
            // `packager demo-content`'s output: a track id first on each line (tab-separated).
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw ConfigError(key: "content.tracks_file", reason: "cannot read \(file)")
            }
            s.tracks += text.split(whereSeparator: \.isNewline).compactMap {
                $0.split(separator: "\t").first.map { String($0).trimmingCharacters(in: .whitespaces) }
            }.filter { !$0.isEmpty && !$0.hasPrefix("#") }
        }
        guard (1...100_000).contains(s.tracks.count) else {
            throw ConfigError(key: "content.tracks", reason: "1 to 100000 track ids")
        }
        for t in s.tracks where t.isEmpty || !t.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != 0x2F && $0 != 0x3F })
        {
            throw ConfigError(key: "content.tracks", reason: "\"\(t)\" is not a track id")
        }
        s.zipfExponent = try r.double(content, "content.zipf_exponent") ?? 1.0
        guard (0...5).contains(s.zipfExponent) else {
            throw ConfigError(key: "content.zipf_exponent", reason: "0 to 5")
        }
        s.seed = UInt64(try r.int(content, "content.seed", 0...Int.max) ?? 1)

        let p = try r.table("player")
        try r.allowOnly(
            [
                "buffer_ahead_ms", "first_audio_ms", "prefetch_at", "seek_probability", "switch_probability",
                "bitrate_kbps", "tracks_per_play", "playback_speed",
            ], in: "player")
        s.player.bufferAheadMilliseconds = try r.int(p, "player.buffer_ahead_ms", 1...600_000) ?? 10_000
        s.player.firstAudioMilliseconds = try r.int(p, "player.first_audio_ms", 1...600_000) ?? 1000
        s.player.prefetchAt = try fraction(r, p, "player.prefetch_at") ?? 0.8
        s.player.seekProbability = try fraction(r, p, "player.seek_probability") ?? 0
        s.player.switchProbability = try fraction(r, p, "player.switch_probability") ?? 0
        s.player.bitrateKbps = try r.int(p, "player.bitrate_kbps", 1...10_000) ?? 160
        s.player.tracksPerPlay = try r.int(p, "player.tracks_per_play", 1...10_000) ?? 1
        s.player.playbackSpeed = try r.double(p, "player.playback_speed") ?? 1
        guard (0.1...1000).contains(s.player.playbackSpeed) else {
            throw ConfigError(key: "player.playback_speed", reason: "0.1 to 1000")
        }

        let a = try r.table("arrivals")
        try r.allowOnly(["model", "rate", "seconds", "stages", "players", "jitter_ms"], in: "arrivals")
        let model = try r.string(a, "arrivals.model") ?? "poisson"
        switch model {
        case "poisson", "constant":
            var stages: [Stage] = []
            if let list = a?["stages"] {
                guard let array = list.array else {
                    throw ConfigError(key: "arrivals.stages", reason: "an array of { rate, seconds } tables")
                }
                for (i, e) in array.enumerated() {
                    guard let t = e.table else {
                        throw ConfigError(key: "arrivals.stages", reason: "an array of { rate, seconds } tables")
                    }
                    let sr = Reader(root: t)
                    try sr.allowOnly(["rate", "seconds"], in: "")
                    stages.append(
                        Stage(
                            rate: try bounded(
                                sr.double(t, "arrivals.stages[\(i)].rate"), "arrivals.stages[\(i)].rate", 0...100_000),
                            seconds: try bounded(
                                sr.double(t, "arrivals.stages[\(i)].seconds"), "arrivals.stages[\(i)].seconds",
                                0.001...86_400)))
                }
            } else {
                stages = [
                    Stage(
                        rate: try bounded(r.double(a, "arrivals.rate"), "arrivals.rate", 0...100_000),
                        seconds: try bounded(r.double(a, "arrivals.seconds"), "arrivals.seconds", 0.001...86_400))
                ]
            }
            guard !stages.isEmpty, stages.count <= 1000 else {
                throw ConfigError(key: "arrivals.stages", reason: "1 to 1000 stages")
            }
            s.arrivals = .open(poisson: model == "poisson", stages: stages)
        case "release_drop":
            let players = try r.int(a, "arrivals.players", 1...1_000_000) ?? 0
            guard players > 0 else { throw ConfigError(key: "arrivals.players", reason: "required for a release drop") }
            s.arrivals = .releaseDrop(
                players: players, jitterMilliseconds: try r.int(a, "arrivals.jitter_ms", 0...3_600_000) ?? 1000)
        default:
            throw ConfigError(key: "arrivals.model", reason: "\"\(model)\": poisson, constant or release_drop")
        }

        let run = try r.table("run")
        try r.allowOnly(["duration_seconds", "timeout_ms", "lag_limit_ms", "players_max", "threads"], in: "run")
        s.timeoutMilliseconds = try r.int(run, "run.timeout_ms", 1...3_600_000) ?? 10_000
        s.lagLimitMilliseconds = try r.int(run, "run.lag_limit_ms", 1...3_600_000) ?? 200
        s.playersMax = try r.int(run, "run.players_max", 1...1_000_000) ?? 20_000
        s.threads = try r.int(run, "run.threads", 1...256) ?? 1
        s.durationSeconds = try r.double(run, "run.duration_seconds") ?? (s.arrivalSeconds + 60)
        guard s.durationSeconds > 0, s.durationSeconds <= 86_400 else {
            throw ConfigError(key: "run.duration_seconds", reason: "more than 0, at most 86400")
        }
        if let list = root(r)["thresholds"] {
            guard let array = list.array else { throw ConfigError(key: "thresholds", reason: "an array of strings") }
            for e in array {
                guard let text = e.string else { throw ConfigError(key: "thresholds", reason: "an array of strings") }
                do { s.thresholds.append(try Threshold.parse(text)) } catch let e as LoadError {
                    throw ConfigError(key: "thresholds", reason: e.description)
                }
            }
        }
        return s
    }

    private static func root(_ r: Reader) -> TOMLTable { r.root }
    private static func fraction(_ r: Reader, _ t: TOMLTable?, _ key: String) throws -> Double? {
        guard let v = try r.double(t, key) else { return nil }
        guard (0...1).contains(v) else { throw ConfigError(key: key, reason: "0 to 1") }
        return v
    }
    private static func bounded(_ v: Double?, _ key: String, _ range: ClosedRange<Double>) throws -> Double {
        guard let v else { throw ConfigError(key: key, reason: "required") }
        guard range.contains(v) else {
            throw ConfigError(key: key, reason: "\(v) is out of range \(range.lowerBound)...\(range.upperBound)")
        }
        return v
    }
}
