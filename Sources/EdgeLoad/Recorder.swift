import Histogram
import Synchronization

/// Latencies in microseconds, 1 µs to 1 hour at three significant digits (HdrHistogram). Values
/// above the range are recorded as the maximum, never dropped.
public struct LatencyHistogram: Sendable {
    public static let highestMicroseconds: UInt64 = 3_600_000_000
    public private(set) var histogram = Histogram<UInt64>(
        lowestDiscernibleValue: 1, highestTrackableValue: highestMicroseconds, numberOfSignificantValueDigits: .three)

    public init() {}

    public mutating func record(microseconds: Int64) {
        _ = histogram.record(UInt64(min(max(microseconds, 0), Int64(Self.highestMicroseconds))))
    }

    /// Merges another histogram without loss (same range and precision).
    public mutating func add(_ other: LatencyHistogram) { histogram.add(other.histogram) }

    public var count: UInt64 { histogram.totalCount }

    /// p50, p90, p99, p99.9 and max, in milliseconds (nil when empty).
    public var summaryMilliseconds: Summary? {
        guard count > 0 else { return nil }
        func ms(_ us: UInt64) -> Double { Double(us) / 1000 }
        return Summary(
            p50: ms(histogram.valueAtPercentile(50)), p90: ms(histogram.valueAtPercentile(90)),
            p99: ms(histogram.valueAtPercentile(99)), p999: ms(histogram.valueAtPercentile(99.9)),
            max: ms(histogram.max), count: Int(count))
    }

    public struct Summary: Codable, Sendable, Equatable {
        public var p50: Double, p90: Double, p99: Double, p999: Double, max: Double, count: Int
    }
}

/// TTFB second by second (by intended send time), for the report's chart: two significant digits
/// from 1 µs to 1 minute (about 20 KiB a second with data), at most `secondsMax` seconds.
public struct TimeSeries: Sendable {
    public static let secondsMax = 3600
    public private(set) var seconds: [Histogram<UInt64>?] = []
    public init() {}

    public mutating func record(second: Int, microseconds: Int64) {
        guard second >= 0, second < Self.secondsMax else { return }
        if seconds.count <= second { seconds += Array(repeating: nil, count: second + 1 - seconds.count) }
        if seconds[second] == nil {
            seconds[second] = Histogram<UInt64>(
                lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .two)
        }
        _ = seconds[second]!.record(UInt64(min(max(microseconds, 0), 60_000_000)))
    }

    public mutating func add(_ o: TimeSeries) {
        for (i, h) in o.seconds.enumerated() {
            guard let h else { continue }
            if seconds.count <= i { seconds += Array(repeating: nil, count: i + 1 - seconds.count) }
            if seconds[i] == nil { seconds[i] = h } else { seconds[i]!.add(h) }
        }
    }

    /// (second, count, p50 ms, p99 ms, max ms) for each second with data.
    public var points: [Point] {
        seconds.enumerated().compactMap { i, h in
            guard let h, h.totalCount > 0 else { return nil }
            return Point(
                second: i, count: Int(h.totalCount), p50: Double(h.valueAtPercentile(50)) / 1000,
                p99: Double(h.valueAtPercentile(99)) / 1000, max: Double(h.max) / 1000)
        }
    }
    public struct Point: Codable, Sendable, Equatable {
        public var second: Int, count: Int, p50: Double, p99: Double, max: Double
    }
}

/// Counters another thread reads while the run goes (the live progress line).
public final class Progress: Sendable {
    public let requests = Atomic<Int>(0)
    public let responses = Atomic<Int>(0)
    public let errors = Atomic<Int>(0)
    public let playsStarted = Atomic<Int>(0)
    public let playsActive = Atomic<Int>(0)
    public let firstAudio = Atomic<Int>(0)
    public let rebuffers = Atomic<Int>(0)
    public init() {}
}

extension Atomic where Value == Int {
    func add(_ n: Int) { _ = wrappingAdd(n, ordering: .relaxed) }
    func value() -> Int { load(ordering: .relaxed) }
}

/// What players did: plays pressed and their time to first audio, stalls, seeks, switches.
public struct PlayerStats: Sendable {
    /// Press to enough bytes for the first `first_audio_ms` of audio, the grant included.
    public var timeToFirstAudio = LatencyHistogram()
    /// Asking playback-auth for a grant.
    public var grant = LatencyHistogram()
    /// How long each rebuffer lasted.
    public var rebufferDuration = LatencyHistogram()
    /// From the end of one track to the first audio of the next (what prefetch shortens).
    public var nextTrackStart = LatencyHistogram()
    /// Plays still loading when the run ended (neither audio nor a failure).
    public var playsUnfinished = 0
    public var plays = 0
    public var playsWithAudio = 0
    public var playsFailed = 0
    public var tracksCompleted = 0
    public var rebuffers = 0
    public var seeks = 0
    public var bitrateSwitches = 0
    public var prefetches = 0
    public var prefetchesUsed = 0
    public init() {}

    public mutating func add(_ o: PlayerStats) {
        timeToFirstAudio.add(o.timeToFirstAudio); grant.add(o.grant); rebufferDuration.add(o.rebufferDuration)
        nextTrackStart.add(o.nextTrackStart); playsUnfinished += o.playsUnfinished
        plays += o.plays; playsWithAudio += o.playsWithAudio; playsFailed += o.playsFailed
        tracksCompleted += o.tracksCompleted; rebuffers += o.rebuffers; seeks += o.seeks
        bitrateSwitches += o.bitrateSwitches; prefetches += o.prefetches; prefetchesUsed += o.prefetchesUsed
    }
}

/// Everything one run measured. Coordinated-omission correct: every request has an intended
/// send time (from the arrival schedule), and its latencies are kept both from that time
/// (`corrected`: what a player waiting for it saw) and from when it was actually sent.
public struct Recorder: Sendable {
    public var ttfbHeadCorrected = LatencyHistogram()
    public var ttfbHeadUncorrected = LatencyHistogram()
    public var ttfbBodyCorrected = LatencyHistogram()
    public var ttfbBodyUncorrected = LatencyHistogram()
    public var totalCorrected = LatencyHistogram()
    /// How late the generator's own loop woke, against its timer: its lag, not the server's.
    public var generatorLag = LatencyHistogram()
    public var hitTTFB = LatencyHistogram()
    public var missTTFB = LatencyHistogram()
    public var ttfbSeries = TimeSeries()
    public var players = PlayerStats()
    /// Requests the schedule asked for (sent or not).
    public var requests = 0
    public var responses = 0
    public var bytes = 0
    public var statuses: [Int: Int] = [:]
    public var errors: [String: Int] = [:]
    public var hits = 0
    public var misses = 0

    public init() {}

    public mutating func error(_ kind: String, count: Int = 1) { errors[kind, default: 0] += count }
    public var errorCount: Int { errors.values.reduce(0, +) }

    public mutating func add(_ o: Recorder) {
        ttfbHeadCorrected.add(o.ttfbHeadCorrected); ttfbHeadUncorrected.add(o.ttfbHeadUncorrected)
        ttfbBodyCorrected.add(o.ttfbBodyCorrected); ttfbBodyUncorrected.add(o.ttfbBodyUncorrected)
        totalCorrected.add(o.totalCorrected); generatorLag.add(o.generatorLag)
        hitTTFB.add(o.hitTTFB); missTTFB.add(o.missTTFB)
        ttfbSeries.add(o.ttfbSeries); players.add(o.players)
        requests += o.requests; responses += o.responses; bytes += o.bytes; hits += o.hits; misses += o.misses
        for (k, v) in o.statuses { statuses[k, default: 0] += v }
        for (k, v) in o.errors { errors[k, default: 0] += v }
    }

    /// The JSON report's shape.
    public struct Report: Codable, Sendable {
        public struct TTFB: Codable, Sendable {
            public var corrected: LatencyHistogram.Summary?
            public var uncorrected: LatencyHistogram.Summary?
            public func encode(to encoder: any Encoder) throws {
                var c = encoder.container(keyedBy: CodingKeys.self)
                try c.encode(corrected, forKey: .corrected)
                try c.encode(uncorrected, forKey: .uncorrected)
            }
        }
        public struct Players: Codable, Sendable {
            public var plays: Int
            public var plays_with_audio: Int
            public var plays_failed: Int
            public var plays_unfinished: Int
            public var tracks_completed: Int
            public var rebuffers: Int
            public var rebuffers_per_play: Double
            public var rebuffer_ms: LatencyHistogram.Summary?
            public var seeks: Int
            public var bitrate_switches: Int
            public var prefetches: Int
            public var prefetches_used: Int
            public var grant_ms: LatencyHistogram.Summary?
            public var next_track_start_ms: LatencyHistogram.Summary?
            public func encode(to encoder: any Encoder) throws {
                var c = encoder.container(keyedBy: CodingKeys.self)
                try c.encode(plays, forKey: .plays)
                try c.encode(plays_with_audio, forKey: .plays_with_audio)
                try c.encode(plays_failed, forKey: .plays_failed)
                try c.encode(plays_unfinished, forKey: .plays_unfinished)
                try c.encode(tracks_completed, forKey: .tracks_completed)
                try c.encode(rebuffers, forKey: .rebuffers)
                try c.encode(rebuffers_per_play, forKey: .rebuffers_per_play)
                try c.encode(rebuffer_ms, forKey: .rebuffer_ms)
                try c.encode(seeks, forKey: .seeks)
                try c.encode(bitrate_switches, forKey: .bitrate_switches)
                try c.encode(prefetches, forKey: .prefetches)
                try c.encode(prefetches_used, forKey: .prefetches_used)
                try c.encode(grant_ms, forKey: .grant_ms)
                try c.encode(next_track_start_ms, forKey: .next_track_start_ms)
            }
        }
        public var requests: Int
        public var responses: Int
        public var errors: Int
        public var error_rate: Double
        public var errors_by_class: [String: Int]
        public var statuses: [String: Int]
        public var duration_seconds: Double
        public var requests_per_second: Double
        public var bytes: Int
        public var cache: [String: Int]
        public var ttfb_ms: TTFB
        public var ttfb_first_body_byte_ms: TTFB
        public var response_ms: LatencyHistogram.Summary?
        public var ttfb_hit_ms: LatencyHistogram.Summary?
        public var ttfb_miss_ms: LatencyHistogram.Summary?
        public var time_to_first_audio_ms: LatencyHistogram.Summary?
        public var players: Players?
        public var generator_lag_ms: LatencyHistogram.Summary?
        public var generator_behind: Bool
        public var ttfb_per_second: [TimeSeries.Point]
        public var thresholds: [ThresholdResult]

        enum CodingKeys: String, CodingKey {
            case requests, responses, errors, error_rate, errors_by_class, statuses, duration_seconds
            case requests_per_second, bytes, cache, ttfb_ms, ttfb_first_body_byte_ms, response_ms, ttfb_hit_ms
            case ttfb_miss_ms, time_to_first_audio_ms, players, generator_lag_ms, generator_behind, ttfb_per_second
            case thresholds
        }

        /// Every key is written, an empty histogram as null (a reader can tell "not measured"
        /// from a missing field).
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(requests, forKey: .requests)
            try c.encode(responses, forKey: .responses)
            try c.encode(errors, forKey: .errors)
            try c.encode(error_rate, forKey: .error_rate)
            try c.encode(errors_by_class, forKey: .errors_by_class)
            try c.encode(statuses, forKey: .statuses)
            try c.encode(duration_seconds, forKey: .duration_seconds)
            try c.encode(requests_per_second, forKey: .requests_per_second)
            try c.encode(bytes, forKey: .bytes)
            try c.encode(cache, forKey: .cache)
            try c.encode(ttfb_ms, forKey: .ttfb_ms)
            try c.encode(ttfb_first_body_byte_ms, forKey: .ttfb_first_body_byte_ms)
            try c.encode(response_ms, forKey: .response_ms)
            try c.encode(ttfb_hit_ms, forKey: .ttfb_hit_ms)
            try c.encode(ttfb_miss_ms, forKey: .ttfb_miss_ms)
            try c.encode(time_to_first_audio_ms, forKey: .time_to_first_audio_ms)
            try c.encode(players, forKey: .players)
            try c.encode(generator_lag_ms, forKey: .generator_lag_ms)
            try c.encode(generator_behind, forKey: .generator_behind)
            try c.encode(ttfb_per_second, forKey: .ttfb_per_second)
            try c.encode(thresholds, forKey: .thresholds)
        }
    }

    /// `withPlayers`: a scenario run (players' figures present), not a replay (null).
    public func report(durationSeconds: Double, generatorBehind: Bool, withPlayers: Bool = false) -> Report {
        let p = players
        return Report(
            requests: requests, responses: responses, errors: errorCount,
            error_rate: requests > 0 ? Double(errorCount) / Double(requests) : 0, errors_by_class: errors,
            statuses: Dictionary(uniqueKeysWithValues: statuses.map { (String($0.key), $0.value) }),
            duration_seconds: durationSeconds,
            requests_per_second: durationSeconds > 0 ? Double(responses) / durationSeconds : 0, bytes: bytes,
            cache: ["hit": hits, "miss": misses],
            ttfb_ms: .init(
                corrected: ttfbHeadCorrected.summaryMilliseconds, uncorrected: ttfbHeadUncorrected.summaryMilliseconds),
            ttfb_first_body_byte_ms: .init(
                corrected: ttfbBodyCorrected.summaryMilliseconds, uncorrected: ttfbBodyUncorrected.summaryMilliseconds),
            response_ms: totalCorrected.summaryMilliseconds, ttfb_hit_ms: hitTTFB.summaryMilliseconds,
            ttfb_miss_ms: missTTFB.summaryMilliseconds, time_to_first_audio_ms: p.timeToFirstAudio.summaryMilliseconds,
            players: withPlayers
                ? Report.Players(
                    plays: p.plays, plays_with_audio: p.playsWithAudio, plays_failed: p.playsFailed,
                    plays_unfinished: p.playsUnfinished, tracks_completed: p.tracksCompleted, rebuffers: p.rebuffers,
                    rebuffers_per_play: p.plays > 0 ? Double(p.rebuffers) / Double(p.plays) : 0,
                    rebuffer_ms: p.rebufferDuration.summaryMilliseconds, seeks: p.seeks,
                    bitrate_switches: p.bitrateSwitches, prefetches: p.prefetches, prefetches_used: p.prefetchesUsed,
                    grant_ms: p.grant.summaryMilliseconds, next_track_start_ms: p.nextTrackStart.summaryMilliseconds)
                : nil,
            generator_lag_ms: generatorLag.summaryMilliseconds, generator_behind: generatorBehind,
            ttfb_per_second: ttfbSeries.points, thresholds: [])
    }
}
