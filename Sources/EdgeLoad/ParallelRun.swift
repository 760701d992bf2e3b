import Foundation
import Synchronization

/// A run on several threads: one engine (its own ring, connections and `Recorder`) per thread,
/// made on that thread; the recorders merge without loss at the end. The calling thread prints
/// the live progress line once a second meanwhile.
public enum ParallelRun {
    public struct Result: Sendable {
        public var recorder: Recorder
        public var seconds: Double
        public var behind: Bool
    }

    public static func run(
        threads: Int, progressLine: (@Sendable (Progress, Double) -> Void)?,
        engine: @escaping @Sendable (Int, Progress) throws -> (Recorder, ReplayOutcome, Double)
    ) throws -> Result {
        let progress = Progress()
        let results = Mutex<[(Recorder, ReplayOutcome, Double)]>([])
        let failure = Mutex<String?>(nil)
        let done = DispatchSemaphore(value: 0)
        for i in 0..<threads {
            let thread = Thread {
                do {
                    let r = try engine(i, progress)
                    results.withLock { $0.append(r) }
                } catch {
                    failure.withLock { $0 = $0 ?? "\(error)" }
                }
                done.signal()
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
        let start = Date()
        var finished = 0
        while finished < threads {
            if done.wait(timeout: .now() + 1) == .success {
                finished += 1
            } else {
                progressLine?(progress, Date().timeIntervalSince(start))
            }
        }
        if let f = failure.withLock({ $0 }) { throw LoadError(f) }
        var merged = Recorder()
        var seconds = 0.0
        var behind = false
        for (r, outcome, s) in results.withLock({ $0 }) {
            merged.add(r)
            seconds = max(seconds, s)
            behind = behind || outcome == .generatorBehind
        }
        return Result(recorder: merged, seconds: seconds, behind: behind)
    }
}

/// `loadtest compare A.json B.json`: every number both reports have, side by side.
public enum ReportComparison {
    public static func compare(_ a: Any, _ b: Any) -> [(key: String, a: Double?, b: Double?)] {
        var left: [String: Double] = [:], right: [String: Double] = [:]
        flatten(a, "", &left)
        flatten(b, "", &right)
        let keys = Set(left.keys).union(right.keys).sorted()
        return keys.map { ($0, left[$0], right[$0]) }
    }

    /// Numbers by dotted path; lists of points (the per-second series) are left out.
    static func flatten(_ v: Any, _ prefix: String, _ out: inout [String: Double]) {
        if let d = v as? [String: Any] {
            for (k, x) in d { flatten(x, prefix.isEmpty ? k : "\(prefix).\(k)", &out) }
        } else if let n = v as? NSNumber {   // true and false as 1 and 0
            out[prefix] = n.doubleValue
        }
    }

    public static func table(_ rows: [(key: String, a: Double?, b: Double?)], nameA: String, nameB: String) -> String {
        func f(_ v: Double?) -> String {
            guard let v else { return "-" }
            return v == v.rounded() && abs(v) < 1e12 ? String(Int(v)) : String(format: "%.3f", v)
        }
        var lines = [
            "figure".padding(toLength: 44, withPad: " ", startingAt: 0) + pad(nameA) + pad(nameB) + pad("B-A")
                + pad("B/A")
        ]
        for r in rows {
            var line = r.key.padding(toLength: 44, withPad: " ", startingAt: 0) + pad(f(r.a)) + pad(f(r.b))
            if let a = r.a, let b = r.b {
                line += pad(f(b - a)) + pad(a != 0 ? String(format: "%.3f", b / a) : "-")
            }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }

    static func pad(_ s: String) -> String {
        let t = s.count > 14 ? String(s.suffix(14)) : s
        return String(repeating: " ", count: max(1, 15 - t.count)) + t
    }
}
