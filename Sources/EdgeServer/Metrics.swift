import CEdgeRing
import EdgeAuthToken

/// Where each counter of a worker lives in its block. Families with a fixed set of labels are
/// laid out flat so that a request costs a few relaxed stores and nothing else.
public enum MetricLayout {
    /// Response statuses counted by name; anything else is counted as "other".
    public static let statuses = [
        200, 204, 206, 304, 400, 403, 404, 405, 408, 413, 414, 416, 429, 431, 500, 502, 503, 504, 505,
    ]
    public static let protocols = ["http/1.1", "h2"]
    public static let cacheTiers = ["ram", "disk", "origin", "coalesced"]
    /// Token verdicts other than `ok`: the reasons a token is refused.
    public static let tokenReasons: [EdgeAuthVerdict] = [
        .missing, .malformed, .expired, .early, .scope, .signature, .ip, .lifetime, .geo, .childKey,
    ]
    public static let originErrorKinds = [
        "connect", "timeout", "protocol", "reset", "status", "not_found", "queue_full", "tls",
    ]
    /// Histogram bucket upper bounds, microseconds (Prometheus renders them in seconds).
    public static let latencyBoundsMicroseconds: [Int64] = [
        100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
        5_000_000, 10_000_000,
    ]

    static let statusSlots = statuses.count + 1
    static let requests = 0   // [protocol][status]
    static let bytesOut = requests + protocols.count * statusSlots   // [protocol]
    static let cacheLookups = bytesOut + protocols.count   // [tier]
    static let tokenRejections = cacheLookups + cacheTiers.count   // [reason]
    static let originRequests = tokenRejections + tokenReasons.count
    static let originBytes = originRequests + 1
    static let originErrors = originBytes + 1   // [kind]
    static let connectionsOpen = originErrors + originErrorKinds.count
    static let connectionsAccepted = connectionsOpen + 1
    static let connectionsRefused = connectionsAccepted + 1
    static let histogramSlots = latencyBoundsMicroseconds.count + 3   // buckets, +Inf, sum, count
    static let ttfb = connectionsRefused + 1
    static let originLatency = ttfb + histogramSlots
    static let count = originLatency + histogramSlots

    static func statusIndex(_ status: Int) -> Int {
        switch status {
        case 200: 0
        case 206: 2
        default: statuses.firstIndex(of: status) ?? statuses.count
        }
    }
}

/// One worker's counters: written only by that worker, summed by the metrics scrape on the admin
/// thread. No lock and no atomic read-modify-write on the request path (see `edge_counter_add`).
public final class WorkerCounters: @unchecked Sendable {
    let slots: UnsafeMutablePointer<Int>
    init() {
        slots = .allocate(capacity: MetricLayout.count)
        slots.initialize(repeating: 0, count: MetricLayout.count)
    }
    deinit { slots.deallocate() }

    @inline(__always) func add(_ index: Int, _ value: Int = 1) { edge_counter_add(slots + index, value) }
    @inline(__always) func set(_ index: Int, _ value: Int) { edge_counter_set(slots + index, value) }
    func load(_ index: Int) -> Int { edge_counter_load(slots + index) }

    func request(protocolIndex: Int, status: Int, bytes: Int) {
        add(MetricLayout.requests + protocolIndex * MetricLayout.statusSlots + MetricLayout.statusIndex(status))
        add(MetricLayout.bytesOut + protocolIndex, bytes)
    }

    func tokenRejected(_ verdict: String) {
        guard let v = EdgeAuthVerdict(rawValue: verdict), let i = MetricLayout.tokenReasons.firstIndex(of: v) else {
            return
        }
        add(MetricLayout.tokenRejections + i)
    }

    func observe(histogram base: Int, microseconds: Int64) {
        let bounds = MetricLayout.latencyBoundsMicroseconds
        var i = 0
        while i < bounds.count && microseconds > bounds[i] { i += 1 }
        add(base + i)
        add(base + bounds.count + 1, Int(max(0, microseconds)))
        add(base + bounds.count + 2)
    }

    func originError(_ kind: String) {
        if let i = MetricLayout.originErrorKinds.firstIndex(of: kind) { add(MetricLayout.originErrors + i) }
    }
}

/// Every worker's counters summed: what a scrape reads.
public struct MetricsSnapshot: Sendable {
    public var values: [Int]

    init(_ workers: [WorkerCounters]) {
        values = Array(repeating: 0, count: MetricLayout.count)
        for w in workers { for i in 0..<MetricLayout.count { values[i] += w.load(i) } }
    }

    public func requests(protocolIndex: Int, statusSlot: Int) -> Int {
        values[MetricLayout.requests + protocolIndex * MetricLayout.statusSlots + statusSlot]
    }
    /// The status label of a status slot ("other" for the last).
    public static func statusLabel(_ slot: Int) -> String {
        slot < MetricLayout.statuses.count ? String(MetricLayout.statuses[slot]) : "other"
    }
    public static var statusSlots: Int { MetricLayout.statusSlots }
    public func bytesOut(protocolIndex: Int) -> Int { values[MetricLayout.bytesOut + protocolIndex] }
    public func cacheLookups(tier: Int) -> Int { values[MetricLayout.cacheLookups + tier] }
    public func tokenRejections(reason: Int) -> Int { values[MetricLayout.tokenRejections + reason] }
    public var originRequests: Int { values[MetricLayout.originRequests] }
    public var originBytes: Int { values[MetricLayout.originBytes] }
    public func originErrors(kind: Int) -> Int { values[MetricLayout.originErrors + kind] }
    public var connectionsOpen: Int { values[MetricLayout.connectionsOpen] }
    public var connectionsAccepted: Int { values[MetricLayout.connectionsAccepted] }
    public var connectionsRefused: Int { values[MetricLayout.connectionsRefused] }

    /// A histogram's buckets (not cumulative, the last is +Inf), sum in microseconds, count.
    public struct Histogram: Sendable {
        public var buckets: [Int]
        public var sumMicroseconds: Int
        public var count: Int
    }
    public var ttfb: Histogram { histogram(MetricLayout.ttfb) }
    public var originLatency: Histogram { histogram(MetricLayout.originLatency) }
    private func histogram(_ base: Int) -> Histogram {
        let n = MetricLayout.latencyBoundsMicroseconds.count + 1
        return Histogram(
            buckets: Array(values[base..<(base + n)]), sumMicroseconds: values[base + n], count: values[base + n + 1])
    }
}
