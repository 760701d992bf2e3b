import ArgumentParser
import EdgeLoad
import Foundation

/// Exit codes: 0 a clean run; 1 the run completed with errors or crossed a threshold; 3 the
/// generator itself fell behind (its figures would measure itself); 64 bad arguments (EX_USAGE).
struct Loadtest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loadtest",
        abstract: "Simulated load against an HTTP/2 server, coordinated-omission-correct.",
        subcommands: [Replay.self])
}

struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replay a list of URLs (one server) over HTTP/2: h2c by prior knowledge, or TLS with ALPN h2.")

    @Option(
        help: "A file of URLs, one per line (http://IP:port/path or https://…); blank lines and # comments skipped.")
    var urls: String
    @Option(help: "Connections.") var connections = 8
    @Option(help: "Streams in flight per connection.") var streams = 8
    @Option(help: "Requests per second (open model: intended send times on a fixed schedule); 0: closed loop.")
    var rate = 0.0
    @Option(help: "Seconds.") var duration = 10.0
    @Option(name: .customLong("timeout-ms"), help: "A request without its whole response by then fails.")
    var timeoutMilliseconds = 10_000
    @Option(name: .customLong("lag-limit-ms"), help: "Stop (exit 3) when the generator's loop is this late.")
    var lagLimitMilliseconds = 200
    @Option(help: "Trusted certificates (PEM) for https:// (default: the system's).") var ca: String?
    @Option(help: "Write the JSON report here.") var json: String?
    @Flag(help: "No live progress line.") var quiet = false

    func run() throws {
        guard let text = try? String(contentsOfFile: urls, encoding: .utf8) else {
            throw ValidationError("cannot read \(urls)")
        }
        let list = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
        var options = ReplayOptions(urls: list)
        options.connections = connections
        options.streams = streams
        options.rate = rate
        options.durationSeconds = duration
        options.timeoutMilliseconds = timeoutMilliseconds
        options.lagLimitMilliseconds = lagLimitMilliseconds
        options.caFile = ca
        let engine: ReplayEngine
        do { engine = try ReplayEngine(options: options) } catch let e as ReplayError {
            throw ValidationError(e.description)
        }
        let (outcome, seconds) = try engine.run()
        let recorder = engine.recorder
        let report = recorder.report(durationSeconds: seconds, generatorBehind: outcome == .generatorBehind)
        print(Summary.table(report))
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(report).write(to: URL(fileURLWithPath: json))
        }
        if outcome == .generatorBehind {
            FileHandle.standardError.write(
                "loadtest: the generator fell behind its schedule by more than \(lagLimitMilliseconds) ms; run stopped\n"
                    .data(using: .utf8)!)
            throw ExitCode(3)
        }
        if report.errors > 0 { throw ExitCode(1) }
    }
}

enum Summary {
    static func table(_ r: Recorder.Report) -> String {
        func row(_ name: String, _ s: LatencyHistogramSummary?) -> String {
            guard let s else { return name.padding(toLength: 34, withPad: " ", startingAt: 0) + "-" }
            return name.padding(toLength: 34, withPad: " ", startingAt: 0)
                + [s.p50, s.p90, s.p99, s.p999, s.max].map { String(format: "%9.2f", $0) }.joined()
        }
        var lines = [
            String(
                format: "requests %d, responses %d, errors %d, %.0f req/s over %.1f s, %.1f MB", r.requests,
                r.responses,
                r.errors, r.requests_per_second, r.duration_seconds, Double(r.bytes) / 1e6),
            "ms".padding(toLength: 34, withPad: " ", startingAt: 0) + "      p50      p90      p99    p99.9      max",
            row("ttfb (head), corrected", r.ttfb_ms.corrected),
            row("ttfb (head), uncorrected", r.ttfb_ms.uncorrected),
            row("first body byte, corrected", r.ttfb_first_body_byte_ms.corrected),
            row("whole response, corrected", r.response_ms),
            row("generator lag", r.generator_lag_ms),
        ]
        if r.cache["hit", default: 0] + r.cache["miss", default: 0] > 0 {
            lines.append("cache: \(r.cache["hit", default: 0]) hits, \(r.cache["miss", default: 0]) misses")
        }
        if !r.errors_by_class.isEmpty {
            lines.append(
                "errors: "
                    + r.errors_by_class.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(
                        separator: ", "))
        }
        return lines.joined(separator: "\n")
    }
}

typealias LatencyHistogramSummary = LatencyHistogram.Summary

Loadtest.main()
