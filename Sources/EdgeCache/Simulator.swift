/// Replays a request trace through policies at several cache sizes, counting from a cold start.
public struct TraceRequest: Sendable {
    public var time: Int64
    public var key: UInt64
    public var size: Int
}

public struct TraceError: Error, CustomStringConvertible {
    public let description: String
}

public enum Trace {
    /// Parses `time,key,size_bytes` CSV (a header line is allowed). Errors name the line.
    public static func parseCSV(_ text: String) throws -> [TraceRequest] {
        var out: [TraceRequest] = []
        var lineNumber = 0
        // Character-wise, "\r\n" is one Character: split on either form.
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            lineNumber += 1
            let fields = line.split(separator: ",", omittingEmptySubsequences: false)
            if lineNumber == 1 && fields.first.map({ Int64($0.trimmingCharacters()) == nil }) == true { continue }
            guard fields.count == 3, let t = Int64(fields[0].trimmingCharacters()),
                let size = Int(fields[2].trimmingCharacters()), size >= 0
            else {
                throw TraceError(description: "line \(lineNumber): expected time,key,size_bytes")
            }
            out.append(TraceRequest(time: t, key: cacheKeyHash(String(fields[1].trimmingCharacters())), size: size))
        }
        return out
    }

    public static func uniqueBytes(_ trace: [TraceRequest]) -> Int {
        var sizes: [UInt64: Int] = [:]
        for r in trace { sizes[r.key] = r.size }
        return sizes.values.reduce(0, +)
    }
}

extension Substring {
    func trimmingCharacters() -> Substring {
        var s = self
        while let f = s.first, f == " " || f == "\r" || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\r" || l == "\t" { s.removeLast() }
        return s
    }
}

public struct SimulationResult: Sendable {
    public var policy: String
    public var sizeBytes: Int
    public var byteMissRatio: Double
    public var objectMissRatio: Double
}

public enum CacheSimulator {
    public static let policyNames = ["edge", "lru", "lfu", "arc", "s3fifo", "wtinylfu", "belady"]

    public static func makePolicy(
        _ name: String, capacityBytes: Int, trace: [TraceRequest], uniqueObjects: Int
    ) -> SimulatedPolicy {
        switch name {
        case "edge":
            return EdgePolicySimulation(
                name: "edge", policy: EdgePolicy(capacityBytes: capacityBytes, expectedEntries: uniqueObjects))
        case "wtinylfu":
            return WTinyLFUSimulation(
                policy: WTinyLFUPolicy(capacityBytes: capacityBytes, expectedEntries: uniqueObjects))
        case "lru": return LRUPolicy(capacityBytes: capacityBytes)
        case "lfu": return LFUPolicy(capacityBytes: capacityBytes)
        case "arc": return ARCPolicy(capacityBytes: capacityBytes)
        case "s3fifo": return S3FIFOPolicy(capacityBytes: capacityBytes)
        default: return BeladyPolicy(capacityBytes: capacityBytes, keys: trace.map(\.key))
        }
    }

    public static func run(trace: [TraceRequest], policy name: String, capacityBytes: Int) -> SimulationResult {
        var objects = Set<UInt64>()
        for r in trace { objects.insert(r.key) }
        let policy = makePolicy(name, capacityBytes: capacityBytes, trace: trace, uniqueObjects: objects.count)
        var missBytes = 0, totalBytes = 0, misses = 0
        for r in trace {
            totalBytes += r.size
            if !policy.access(r.key, size: r.size) { misses += 1; missBytes += r.size }
        }
        return SimulationResult(
            policy: name, sizeBytes: capacityBytes,
            byteMissRatio: totalBytes == 0 ? 0 : Double(missBytes) / Double(totalBytes),
            objectMissRatio: trace.isEmpty ? 0 : Double(misses) / Double(trace.count))
    }
}
