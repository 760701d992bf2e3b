import EdgeServer
import Prometheus
import Synchronization

/// `/metrics`: the workers' counters (summed on scrape) and the cache index's figures, published
/// through swift-prometheus's registry. The workers never touch the registry: its counters take a
/// lock per update, which the request path must not. At each scrape the registry's counters are
/// advanced by what the workers counted since the last one.
///
/// Histograms are the exception: swift-prometheus's histograms only `record` one observation at a
/// time, and cannot take the per-worker bucket counts a scrape sums. They are rendered here, in
/// the same text format, after the registry's output.
final class MetricsExporter: Sendable {
    let control: EdgeControl
    let prewarm: PrewarmJobs
    let registry = PrometheusCollectorRegistry()

    private struct Published: @unchecked Sendable {
        var counters: [(Counter, Int)] = []
    }
    private let published = Mutex(Published())

    private let requests: [[Counter]]
    private let bytesOut: [Counter]
    private let lookups: [Counter]
    private let tokenRejections: [Counter]
    private let originRequests: Counter
    private let originBytes: Counter
    private let originErrors: [Counter]
    private let connectionsAccepted: Counter
    private let connectionsRefused: Counter
    private let connectionsOpen: Gauge
    private let cacheBytes: [Gauge]
    private let cacheSlices: [Gauge]
    private let cacheObjects: Gauge
    private let fillsInFlight: Gauge
    private let pinnedBytes: Gauge
    private let pinnedBytesMax: Gauge
    private let evictions: [Counter]
    private let admissionsRefused: [Counter]
    private let prewarmJobs: [Gauge]
    private let prewarmBytes: Counter
    private let ready: Gauge

    init(control: EdgeControl, prewarm: PrewarmJobs) {
        self.control = control
        self.prewarm = prewarm
        let r = registry
        requests = MetricLayout.protocols.map { p in
            (0..<MetricsSnapshot.statusSlots).map { s in
                r.counter(
                    "edge_requests_total",
                    labels: [("protocol", p), ("status", MetricsSnapshot.statusLabel(s))],
                    help: "Responses sent, by protocol and status.")
            }
        }
        bytesOut = MetricLayout.protocols.map {
            r.counter(
                "edge_response_bytes_total", labels: [("protocol", $0)], help: "Response bytes sent (bodies).")
        }
        lookups = MetricLayout.cacheTiers.map {
            r.counter(
                "edge_cache_lookups_total", labels: [("tier", $0)],
                help: "Slices looked up for responses, by where they came from: ram and disk are hits; "
                    + "origin a miss that fetched; coalesced a miss that joined a fetch in flight.")
        }
        tokenRejections = MetricLayout.tokenReasons.map {
            r.counter(
                "edge_token_rejections_total", labels: [("reason", $0.rawValue)],
                help: "Requests refused with 403 for their token, by reason.")
        }
        originRequests = r.counter("edge_origin_requests_total", help: "Requests sent to origins.")
        originBytes = r.counter("edge_origin_bytes_total", help: "Body bytes received from origins.")
        originErrors = MetricLayout.originErrorKinds.map {
            r.counter(
                "edge_origin_errors_total", labels: [("kind", $0)], help: "Origin fetch failures, by kind.")
        }
        connectionsAccepted = r.counter("edge_connections_accepted_total", help: "Connections accepted.")
        connectionsRefused = r.counter(
            "edge_connections_refused_total", help: "Connections refused at connections_per_worker_max.")
        connectionsOpen = r.gauge("edge_connections_open", help: "Player connections open now.")
        cacheBytes = ["ram", "disk"].map {
            r.gauge("edge_cache_bytes", labels: [("tier", $0)], help: "Bytes cached, by tier.")
        }
        cacheSlices = ["ram", "disk"].map {
            r.gauge("edge_cache_slices", labels: [("tier", $0)], help: "Slices cached, by tier.")
        }
        cacheObjects = r.gauge("edge_cache_objects", help: "Objects with at least one slice cached.")
        fillsInFlight = r.gauge("edge_cache_fills_in_flight", help: "Origin fetches of slices in flight.")
        pinnedBytes = r.gauge("edge_cache_pinned_bytes", help: "Disk-tier bytes pinned by pre-warm jobs.")
        pinnedBytesMax = r.gauge("edge_cache_pinned_bytes_max", help: "cache.pinned_bytes_max.")
        evictions = ["ram", "disk"].map {
            r.counter("edge_cache_evictions_total", labels: [("tier", $0)], help: "Slices evicted, by tier.")
        }
        admissionsRefused = ["ram", "disk"].map {
            r.counter(
                "edge_cache_admissions_refused_total", labels: [("tier", $0)],
                help: "Slices the tier's policy did not admit.")
        }
        prewarmJobs = PrewarmJob.State.allCases.map {
            r.gauge("edge_prewarm_jobs", labels: [("state", $0.rawValue)], help: "Pre-warm jobs, by state.")
        }
        prewarmBytes = r.counter(
            "edge_prewarm_bytes_total", help: "Bytes pre-warm jobs brought into the disk tier.")
        ready = r.gauge("edge_ready", help: "1 when ready (see /readyz).")
    }

    /// The text exposition of everything, as of now.
    func render() async -> [UInt8] {
        let snapshot = control.metrics()
        let figures = control.cacheFigures()
        let jobs = await prewarm.counts()
        var counterValues: [(Counter, Int)] = []
        for p in 0..<MetricLayout.protocols.count {
            for s in 0..<MetricsSnapshot.statusSlots {
                counterValues.append((requests[p][s], snapshot.requests(protocolIndex: p, statusSlot: s)))
            }
            counterValues.append((bytesOut[p], snapshot.bytesOut(protocolIndex: p)))
        }
        for (i, c) in lookups.enumerated() { counterValues.append((c, snapshot.cacheLookups(tier: i))) }
        for (i, c) in tokenRejections.enumerated() { counterValues.append((c, snapshot.tokenRejections(reason: i))) }
        for (i, c) in originErrors.enumerated() { counterValues.append((c, snapshot.originErrors(kind: i))) }
        counterValues += [
            (originRequests, snapshot.originRequests), (originBytes, snapshot.originBytes),
            (connectionsAccepted, snapshot.connectionsAccepted), (connectionsRefused, snapshot.connectionsRefused),
            (prewarmBytes, jobs.bytesFilled),
        ]
        if let f = figures {
            counterValues += [
                (evictions[0], f.ramEvictions), (evictions[1], f.diskEvictions),
                (admissionsRefused[0], f.ramRefused), (admissionsRefused[1], f.diskRefused),
            ]
            cacheBytes[0].set(Int64(f.ramBytes)); cacheBytes[1].set(Int64(f.diskBytes))
            cacheSlices[0].set(Int64(f.ramSlices)); cacheSlices[1].set(Int64(f.diskSlices))
            cacheObjects.set(Int64(f.objects))
            fillsInFlight.set(Int64(f.fills))
            pinnedBytes.set(Int64(f.pinnedBytes))
        }
        pinnedBytesMax.set(Int64(control.pinnedBytesMax))
        connectionsOpen.set(Int64(snapshot.connectionsOpen))
        for (i, state) in PrewarmJob.State.allCases.enumerated() { prewarmJobs[i].set(Int64(jobs.byState[state] ?? 0)) }
        ready.set(Int64(control.readiness.ready ? 1 : 0))
        published.withLock { p in
            // Counters only move forward: advance each by what was counted since the last scrape.
            var last: [ObjectIdentifier: Int] = [:]
            for (c, v) in p.counters { last[ObjectIdentifier(c)] = v }
            for (c, v) in counterValues {
                let delta = v - (last[ObjectIdentifier(c)] ?? 0)
                if delta > 0 { c.increment(by: Int64(delta)) }
            }
            p.counters = counterValues
        }
        var out: [UInt8] = []
        registry.emit(into: &out)
        Self.histogram(
            &out, name: "edge_ttfb_seconds",
            help: "Time from a request's arrival to its response head being handed to the connection.",
            snapshot.ttfb)
        Self.histogram(
            &out, name: "edge_origin_latency_seconds",
            help: "Time from an origin request being sent to its slice's last byte.", snapshot.originLatency)
        return out
    }

    static func histogram(_ out: inout [UInt8], name: String, help: String, _ h: MetricsSnapshot.Histogram) {
        var text = "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
        var cumulative = 0
        for (i, bound) in MetricLayout.latencyBoundsMicroseconds.enumerated() {
            cumulative += h.buckets[i]
            text += "\(name)_bucket{le=\"\(seconds(bound))\"} \(cumulative)\n"
        }
        cumulative += h.buckets[MetricLayout.latencyBoundsMicroseconds.count]
        text += "\(name)_bucket{le=\"+Inf\"} \(cumulative)\n"
        text += "\(name)_sum \(seconds(Int64(h.sumMicroseconds)))\n"
        text += "\(name)_count \(h.count)\n"
        out += Array(text.utf8)
    }

    /// Microseconds as decimal seconds, exactly ("0.0001", "2.5").
    static func seconds(_ microseconds: Int64) -> String {
        let whole = microseconds / 1_000_000, frac = microseconds % 1_000_000
        guard frac != 0 else { return "\(whole)" }
        var f = String(frac)
        f = String(repeating: "0", count: 6 - f.count) + f
        while f.hasSuffix("0") { f.removeLast() }
        return "\(whole).\(f)"
    }
}

extension PrometheusCollectorRegistry {
    /// A counter by its whole name (the unit is part of it): swift-prometheus's descriptor API.
    func counter(_ name: String, labels: [(String, String)] = [], help: String) -> Counter {
        makeCounter(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
    }

    func gauge(_ name: String, labels: [(String, String)] = [], help: String) -> Gauge {
        makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
    }
}
