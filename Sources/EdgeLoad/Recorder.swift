import Histogram

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
        public var requests: Int
        public var responses: Int
        public var errors: Int
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
        public var generator_lag_ms: LatencyHistogram.Summary?
        public var generator_behind: Bool

        enum CodingKeys: String, CodingKey {
            case requests, responses, errors, errors_by_class, statuses, duration_seconds, requests_per_second, bytes
            case cache, ttfb_ms, ttfb_first_body_byte_ms, response_ms, ttfb_hit_ms, ttfb_miss_ms
            case time_to_first_audio_ms, generator_lag_ms, generator_behind
        }

        /// Every key is written, an empty histogram as null (a reader can tell "not measured"
        /// from a missing field).
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(requests, forKey: .requests)
            try c.encode(responses, forKey: .responses)
            try c.encode(errors, forKey: .errors)
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
            try c.encode(generator_lag_ms, forKey: .generator_lag_ms)
            try c.encode(generator_behind, forKey: .generator_behind)
        }
    }

    public func report(durationSeconds: Double, generatorBehind: Bool) -> Report {
        Report(
            requests: requests, responses: responses, errors: errorCount, errors_by_class: errors,
            statuses: Dictionary(uniqueKeysWithValues: statuses.map { (String($0.key), $0.value) }),
            duration_seconds: durationSeconds,
            requests_per_second: durationSeconds > 0 ? Double(responses) / durationSeconds : 0, bytes: bytes,
            cache: ["hit": hits, "miss": misses],
            ttfb_ms: .init(
                corrected: ttfbHeadCorrected.summaryMilliseconds, uncorrected: ttfbHeadUncorrected.summaryMilliseconds),
            ttfb_first_body_byte_ms: .init(
                corrected: ttfbBodyCorrected.summaryMilliseconds, uncorrected: ttfbBodyUncorrected.summaryMilliseconds),
            response_ms: totalCorrected.summaryMilliseconds, ttfb_hit_ms: hitTTFB.summaryMilliseconds,
            ttfb_miss_ms: missTTFB.summaryMilliseconds, time_to_first_audio_ms: nil,
            generator_lag_ms: generatorLag.summaryMilliseconds, generator_behind: generatorBehind)
    }
}
