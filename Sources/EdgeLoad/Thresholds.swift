import Foundation

/// A pass/fail bound on one figure of the report: `ttfb_p99_ms < 50`, `error_rate < 0.001`.
public struct Threshold: Sendable, Equatable {
    public enum Comparison: String, Sendable, CaseIterable {
        case lessOrEqual = "<=", greaterOrEqual = ">=", less = "<", greater = ">"
    }
    public var metric: String
    public var comparison: Comparison
    public var bound: Double
    public var text: String { "\(metric) \(comparison.rawValue) \(Self.format(bound))" }

    /// `metric op number`; the metric must be one `Threshold.metrics` knows.
    public static func parse(_ s: String) throws -> Threshold {
        let trimmed = s.trimmingCharacters(in: .whitespaces)
        for c in Comparison.allCases {   // "<=" before "<"
            guard let r = trimmed.range(of: c.rawValue) else { continue }
            let metric = String(trimmed[..<r.lowerBound]).trimmingCharacters(in: .whitespaces)
            let number = String(trimmed[r.upperBound...]).trimmingCharacters(in: .whitespaces)
            guard metrics[metric] != nil else {
                throw LoadError(
                    "threshold \"\(s)\": unknown figure \(metric) (known: \(metrics.keys.sorted().joined(separator: ", ")))"
                )
            }
            guard let v = Double(number), v.isFinite else {
                throw LoadError("threshold \"\(s)\": \(number) is not a number")
            }
            return Threshold(metric: metric, comparison: c, bound: v)
        }
        throw LoadError("threshold \"\(s)\": expected FIGURE < NUMBER (or <=, >, >=)")
    }

    public func check(_ report: Recorder.Report) -> ThresholdResult {
        let actual = Self.metrics[metric]!(report)
        guard let a = actual else { return ThresholdResult(threshold: text, actual: nil, passed: false) }
        let ok: Bool
        switch comparison {
        case .less: ok = a < bound
        case .lessOrEqual: ok = a <= bound
        case .greater: ok = a > bound
        case .greaterOrEqual: ok = a >= bound
        }
        return ThresholdResult(threshold: text, actual: a, passed: ok)
    }

    static func format(_ v: Double) -> String { v == v.rounded() && abs(v) < 1e15 ? String(Int(v)) : String(v) }

    /// Every figure a threshold may name. A figure not measured in the run (no players in a
    /// replay) fails its threshold: a bound nobody checked is not a pass.
    public static let metrics: [String: @Sendable (Recorder.Report) -> Double?] = {
        var m: [String: @Sendable (Recorder.Report) -> Double?] = [
            "error_rate": { $0.error_rate },
            "errors": { Double($0.errors) },
            "requests_per_second": { $0.requests_per_second },
            "rebuffers_per_play": { $0.players?.rebuffers_per_play },
            "rebuffers": { $0.players.map { Double($0.rebuffers) } },
            "plays_failed": { $0.players.map { Double($0.plays_failed) } },
        ]
        let families: [(String, @Sendable (Recorder.Report) -> LatencyHistogram.Summary?)] = [
            ("ttfb", { $0.ttfb_ms.corrected }), ("ttfb_uncorrected", { $0.ttfb_ms.uncorrected }),
            ("first_byte", { $0.ttfb_first_body_byte_ms.corrected }), ("response", { $0.response_ms }),
            ("ttfb_hit", { $0.ttfb_hit_ms }), ("ttfb_miss", { $0.ttfb_miss_ms }),
            ("time_to_first_audio", { $0.time_to_first_audio_ms }), ("grant", { $0.players?.grant_ms }),
            ("rebuffer", { $0.players?.rebuffer_ms }), ("generator_lag", { $0.generator_lag_ms }),
        ]
        for (name, get) in families {
            m["\(name)_p50_ms"] = { get($0)?.p50 }
            m["\(name)_p90_ms"] = { get($0)?.p90 }
            m["\(name)_p99_ms"] = { get($0)?.p99 }
            m["\(name)_p999_ms"] = { get($0)?.p999 }
            m["\(name)_max_ms"] = { get($0)?.max }
        }
        return m
    }()
}

public struct ThresholdResult: Codable, Sendable, Equatable {
    public var threshold: String
    /// nil: not measured in this run.
    public var actual: Double?
    public var passed: Bool
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(threshold, forKey: .threshold)
        try c.encode(actual, forKey: .actual)
        try c.encode(passed, forKey: .passed)
    }
}
