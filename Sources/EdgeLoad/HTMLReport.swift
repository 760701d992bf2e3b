import Foundation

/// The run as one self-contained HTML page: tables and inline SVG charts, no script, no font,
/// no request to anywhere (it opens from a file with no network).
public enum HTMLReport {
    public static func render(title: String, report r: Recorder.Report, recorder: Recorder) -> String {
        var body = "<h1>\(escape(title))</h1>\n"
        body +=
            "<p>\(r.requests) requests, \(r.responses) responses, \(r.errors) errors (rate \(fmt(r.error_rate, 5))), "
        body += "\(fmt(r.requests_per_second, 0)) responses/s over \(fmt(r.duration_seconds, 1)) s"
        if r.generator_behind { body += " — <b>the generator fell behind its schedule: figures are not valid</b>" }
        body += ".</p>\n"
        if !r.thresholds.isEmpty {
            body += "<h2>Thresholds</h2><table><tr><th>threshold</th><th>actual</th><th></th></tr>"
            for t in r.thresholds {
                body += "<tr><td>\(escape(t.threshold))</td><td>\(t.actual.map { fmt($0, 3) } ?? "not measured")</td>"
                body += "<td class=\"\(t.passed ? "pass" : "fail")\">\(t.passed ? "pass" : "FAIL")</td></tr>"
            }
            body += "</table>\n"
        }
        body +=
            "<h2>Latency (ms)</h2>\n<table><tr><th></th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>"
        let rows: [(String, LatencyHistogram.Summary?)] = [
            ("TTFB (head), from the intended send time", r.ttfb_ms.corrected),
            ("TTFB (head), from the actual send time", r.ttfb_ms.uncorrected),
            ("first body byte, from the intended time", r.ttfb_first_body_byte_ms.corrected),
            ("whole response", r.response_ms), ("TTFB of cache hits", r.ttfb_hit_ms),
            ("TTFB of cache misses", r.ttfb_miss_ms),
            ("time to first audio", r.time_to_first_audio_ms), ("playback-auth grant", r.players?.grant_ms),
            ("next track's first audio", r.players?.next_track_start_ms), ("rebuffer duration", r.players?.rebuffer_ms),
            ("generator lag", r.generator_lag_ms),
        ]
        for (name, s) in rows {
            guard let s else { continue }
            body += "<tr><td>\(name)</td><td>\(s.count)</td>"
            for v in [s.p50, s.p90, s.p99, s.p999, s.max] { body += "<td>\(fmt(v, 2))</td>" }
            body += "</tr>"
        }
        body += "</table>\n"
        if let p = r.players {
            body += "<h2>Players</h2><table>"
            for (k, v) in [
                ("plays", "\(p.plays)"), ("with audio", "\(p.plays_with_audio)"), ("failed", "\(p.plays_failed)"),
                ("unfinished at the end", "\(p.plays_unfinished)"), ("tracks completed", "\(p.tracks_completed)"),
                ("rebuffers", "\(p.rebuffers) (\(fmt(p.rebuffers_per_play, 3)) per play)"), ("seeks", "\(p.seeks)"),
                ("bit-rate switches", "\(p.bitrate_switches)"),
                ("prefetches (used)", "\(p.prefetches) (\(p.prefetches_used))"),
            ] {
                body += "<tr><td>\(k)</td><td>\(v)</td></tr>"
            }
            body += "</table>\n"
        }
        if !r.errors_by_class.isEmpty {
            body += "<h2>Errors by class</h2><table>"
            for (k, v) in r.errors_by_class.sorted(by: { $0.key < $1.key }) {
                body += "<tr><td>\(escape(k))</td><td>\(v)</td></tr>"
            }
            body += "</table>\n"
        }
        body += "<h2>Charts</h2>\n<div class=\"charts\">\n"
        body += lineChart(
            id: "spectrum", title: "TTFB percentile spectrum", xLabel: "percentile", yLabel: "ms", logX: true,
            series: [
                ("from the intended time", "#d62728", spectrum(recorder.ttfbHeadCorrected)),
                ("from the actual send", "#1f77b4", spectrum(recorder.ttfbHeadUncorrected)),
            ])
        let points = r.ttfb_per_second
        body += lineChart(
            id: "over-time", title: "TTFB over time (by intended second)", xLabel: "second", yLabel: "ms", logX: false,
            series: [
                ("p50", "#1f77b4", points.map { (Double($0.second), $0.p50) }),
                ("p99", "#d62728", points.map { (Double($0.second), $0.p99) }),
                ("max", "#7f7f7f", points.map { (Double($0.second), $0.max) }),
            ])
        body += lineChart(
            id: "hit-miss",
            title:
                "Cache hits (\(r.cache["hit", default: 0])) versus misses (\(r.cache["miss", default: 0])): TTFB spectrum",
            xLabel: "percentile", yLabel: "ms", logX: true,
            series: [
                ("hits", "#2ca02c", spectrum(recorder.hitTTFB)), ("misses", "#ff7f0e", spectrum(recorder.missTTFB)),
            ])
        body += barChart(
            id: "ttfa", title: "Time to first audio: distribution (\(recorder.players.timeToFirstAudio.count) plays)",
            xLabel: "ms", histogram: recorder.players.timeToFirstAudio, color: "#9467bd")
        body += "</div>\n"
        return """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>\(escape(title))</title>
            <style>
            body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
            table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
            td:first-child{text-align:left}.pass{color:#2ca02c}.fail{color:#d62728;font-weight:bold}
            .charts{display:flex;flex-wrap:wrap;gap:16px}svg{background:#fff;border:1px solid #ddd}
            svg text{font:11px sans-serif}
            </style></head><body>
            \(body)</body></html>

            """
    }

    static let spectrumPercentiles = [0.0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 99.999, 100]

    /// (x, ms): x is 1/(1 - q), so each "nine" takes the same width; 100 % is drawn at the last.
    static func spectrum(_ h: LatencyHistogram) -> [(Double, Double)] {
        guard h.count > 0 else { return [] }
        return spectrumPercentiles.map { q in
            let x = q >= 100 ? 1 / (1 - 0.99999) * 10 : 1 / (1 - q / 100)
            return (x, Double(h.histogram.valueAtPercentile(q)) / 1000)
        }
    }

    static let width = 560.0, height = 300.0, left = 56.0, right = 12.0, top = 28.0, bottom = 40.0

    static func lineChart(
        id: String, title: String, xLabel: String, yLabel: String, logX: Bool,
        series: [(name: String, color: String, points: [(Double, Double)])]
    ) -> String {
        let all = series.flatMap(\.points)
        var svg =
            "<svg id=\"\(id)\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\">"
        svg += "<text x=\"\(left)\" y=\"16\" font-weight=\"bold\">\(escape(title))</text>"
        guard !all.isEmpty else { return svg + "<text x=\"\(left)\" y=\"\(height / 2)\">no data</text></svg>\n" }
        let xs = all.map { logX ? log10($0.0) : $0.0 }
        let xMin = xs.min()!, xMax = max(xs.max()!, xMin + 1)
        let yMax = niceCeiling(all.map(\.1).max()!)
        let plotW = width - left - right, plotH = height - top - bottom
        func px(_ x: Double) -> Double { left + ((logX ? log10(x) : x) - xMin) / (xMax - xMin) * plotW }
        func py(_ y: Double) -> Double { top + plotH - y / yMax * plotH }
        svg += axes(plotW: plotW, plotH: plotH, xLabel: xLabel, yLabel: yLabel)
        for i in 0...4 {
            let v = yMax * Double(i) / 4
            svg += "<text x=\"\(left - 4)\" y=\"\(py(v) + 4)\" text-anchor=\"end\">\(fmt(v, v < 10 ? 1 : 0))</text>"
            svg += "<line x1=\"\(left)\" x2=\"\(left + plotW)\" y1=\"\(py(v))\" y2=\"\(py(v))\" stroke=\"#eee\"/>"
        }
        if logX {
            for (q, label) in [
                (0.0, "0"), (90.0, "90"), (99.0, "99"), (99.9, "99.9"), (99.99, "99.99"), (99.999, "99.999"),
            ] {
                let x = 1 / (1 - q / 100)
                guard log10(x) <= xMax else { continue }
                svg += "<text x=\"\(px(x))\" y=\"\(top + plotH + 14)\" text-anchor=\"middle\">\(label)</text>"
            }
        } else {
            for i in 0...4 {
                let v = pow(10, 0) * (xMin + (xMax - xMin) * Double(i) / 4)
                svg += "<text x=\"\(px(v))\" y=\"\(top + plotH + 14)\" text-anchor=\"middle\">\(fmt(v, 0))</text>"
            }
        }
        for (n, s) in series.enumerated() where !s.points.isEmpty {
            let path = s.points.map { "\(fmt(px($0.0), 1)),\(fmt(py($0.1), 1))" }.joined(separator: " ")
            svg += "<polyline fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"2.5\" points=\"\(path)\"/>"
            let ly = top + 6 + Double(n) * 14
            svg += "<rect x=\"\(left + 10)\" y=\"\(ly)\" width=\"14\" height=\"4\" fill=\"\(s.color)\"/>"
            svg += "<text x=\"\(left + 30)\" y=\"\(ly + 6)\">\(escape(s.name))</text>"
        }
        return svg + "</svg>\n"
    }

    /// Counts in 30 equal bins from the minimum to the 99.9th percentile (the rest in the last).
    static func barChart(
        id: String, title: String, xLabel: String, histogram h: LatencyHistogram, color: String
    ) -> String {
        var svg =
            "<svg id=\"\(id)\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\">"
        svg += "<text x=\"\(left)\" y=\"16\" font-weight=\"bold\">\(escape(title))</text>"
        guard h.count > 0 else { return svg + "<text x=\"\(left)\" y=\"\(height / 2)\">no data</text></svg>\n" }
        let lo = h.histogram.min, hi = max(h.histogram.valueAtPercentile(99.9), lo + 30)
        let bins = 30
        let step = (hi - lo + UInt64(bins) - 1) / UInt64(bins)
        var counts: [UInt64] = []
        for b in 0..<bins {
            let a = lo + UInt64(b) * step
            let z = b == bins - 1 ? UInt64.max / 2 : a + step - 1
            counts.append(h.histogram.count(within: a...z))
        }
        let plotW = width - left - right, plotH = height - top - bottom
        let cMax = Double(max(counts.max()!, 1))
        svg += axes(plotW: plotW, plotH: plotH, xLabel: xLabel, yLabel: "plays")
        let bw = plotW / Double(bins)
        for (b, c) in counts.enumerated() {
            let hgt = Double(c) / cMax * plotH
            svg +=
                "<rect x=\"\(fmt(left + Double(b) * bw + 1, 1))\" y=\"\(fmt(top + plotH - hgt, 1))\" width=\"\(fmt(bw - 2, 1))\" height=\"\(fmt(hgt, 1))\" fill=\"\(color)\"/>"
        }
        for i in 0...5 {
            let v = Double(lo) + Double(step * UInt64(bins)) * Double(i) / 5
            svg +=
                "<text x=\"\(left + plotW * Double(i) / 5)\" y=\"\(top + plotH + 14)\" text-anchor=\"middle\">\(fmt(v / 1000, 0))</text>"
        }
        svg += "<text x=\"\(left - 4)\" y=\"\(top + 4)\" text-anchor=\"end\">\(Int(cMax))</text>"
        return svg + "</svg>\n"
    }

    static func axes(plotW: Double, plotH: Double, xLabel: String, yLabel: String) -> String {
        "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(top + plotH)\" stroke=\"#333\"/>"
            + "<line x1=\"\(left)\" y1=\"\(top + plotH)\" x2=\"\(left + plotW)\" y2=\"\(top + plotH)\" stroke=\"#333\"/>"
            + "<text x=\"\(left + plotW / 2)\" y=\"\(height - 6)\" text-anchor=\"middle\">\(escape(xLabel))</text>"
            + "<text x=\"12\" y=\"\(top + plotH / 2)\" transform=\"rotate(-90 12 \(top + plotH / 2))\" text-anchor=\"middle\">\(escape(yLabel))</text>"
    }

    static func niceCeiling(_ v: Double) -> Double {
        guard v > 0 else { return 1 }
        let p = pow(10, floor(log10(v)))
        for m in [1.0, 2, 2.5, 5, 10] where m * p >= v { return m * p }
        return 10 * p
    }

    static func fmt(_ v: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", v) }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
