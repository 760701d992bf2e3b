import ArgumentParser
import EdgeConfig
import EdgeLoad
import Foundation

/// Exit codes: 0 a clean run; 1 the run had errors or crossed a threshold; 3 the generator
/// itself fell behind (its figures would measure itself); 64 bad arguments or scenario (EX_USAGE).
struct Loadtest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loadtest",
        abstract:
            "Simulated players and URL replays against HTTP/2 and HTTP/1.1 servers, coordinated-omission-correct.",
        subcommands: [Run.self, Replay.self, Compare.self])
}

/// Options every run shares: where the reports go, the progress line.
struct Output: ParsableArguments {
    @Option(help: "Write the JSON report here.") var json: String?
    @Option(help: "Write the HTML report (self-contained, with charts) here.") var html: String?
    @Flag(help: "No live progress line.") var quiet = false
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a scenario of simulated players (loadtest/scenarios/*.toml).")

    @Argument(help: "The scenario file (TOML).") var scenario: String
    @OptionGroup var output: Output

    func run() throws {
        guard let text = try? String(contentsOfFile: scenario, encoding: .utf8) else {
            throw ValidationError("cannot read \(scenario)")
        }
        let s: Scenario
        do { s = try Scenario.parse(text) } catch let e as ConfigError {
            throw ValidationError("\(scenario): \(e.description)")
        }
        let result = try ParallelRun.run(threads: s.threads, progressLine: output.quiet ? nil : Progressline.print) {
            index, progress in
            let engine = try PlayerEngine(scenario: s, share: (index, s.threads), progress: progress)
            let (outcome, seconds) = try engine.run()
            return (engine.recorder, outcome, seconds)
        }
        try finish(
            result, thresholds: s.thresholds, withPlayers: true, title: "loadtest run \(scenario)", output: output)
    }
}

struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replay a list of URLs (one server) over HTTP/2: h2c by prior knowledge, or TLS with ALPN h2.")

    @Option(
        help: "A file of URLs, one per line (http://IP:port/path or https://…); blank lines and # comments skipped.")
    var urls: String
    @Option(help: "Connections (shared among the threads).") var connections = 8
    @Option(help: "Streams in flight per connection.") var streams = 8
    @Option(help: "Requests per second (open model: intended send times on a fixed schedule); 0: closed loop.")
    var rate = 0.0
    @Option(help: "Seconds.") var duration = 10.0
    @Option(help: "Threads, each with its own ring and share of the connections and rate.") var threads = 1
    @Option(name: .customLong("timeout-ms"), help: "A request without its whole response by then fails.")
    var timeoutMilliseconds = 10_000
    @Option(name: .customLong("lag-limit-ms"), help: "Stop (exit 3) when the generator's loop is this late.")
    var lagLimitMilliseconds = 200
    @Option(help: "Trusted certificates (PEM) for https:// (default: the system's).") var ca: String?
    @Option(help: "A threshold, as in a scenario (\"ttfb_p99_ms < 50\"); repeatable.") var threshold: [String] = []
    @Option(help: "A request header (\"Range: bytes=0-65535\"); repeatable.") var header: [String] = []
    @OptionGroup var output: Output

    func run() throws {
        guard let text = try? String(contentsOfFile: urls, encoding: .utf8) else {
            throw ValidationError("cannot read \(urls)")
        }
        var options = ReplayOptions(urls: ReplayOptions.urlList(text))
        options.connections = connections
        options.streams = streams
        options.rate = rate
        options.durationSeconds = duration
        options.timeoutMilliseconds = timeoutMilliseconds
        options.lagLimitMilliseconds = lagLimitMilliseconds
        options.caFile = ca
        for h in header {
            guard let colon = h.firstIndex(of: ":"), colon != h.startIndex,
                h[..<colon].allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") })
            else { throw ValidationError("header \"\(h)\": expected Name: value") }
            let name = h[..<colon].lowercased()
            guard !["host", "connection", "transfer-encoding", "upgrade", "keep-alive"].contains(name) else {
                throw ValidationError("header \"\(h)\": a connection-level field HTTP/2 forbids")
            }
            options.headers.append((name, h[h.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        let thresholds: [Threshold]
        do {
            thresholds = try threshold.map(Threshold.parse)
            _ = try ReplayEngine(options: options)   // every argument checked before any thread starts
        } catch let e as LoadError {
            throw ValidationError(e.description)
        }
        guard (1...256).contains(threads), threads <= connections else {
            throw ValidationError("threads: 1 to 256, and at most --connections")
        }
        let n = threads
        let fixed = options
        let result = try ParallelRun.run(threads: n, progressLine: output.quiet ? nil : Progressline.print) {
            index, progress in
            let engine = try ReplayEngine(options: fixed, share: (index, n), progress: progress)
            let (outcome, seconds) = try engine.run()
            return (engine.recorder, outcome, seconds)
        }
        try finish(result, thresholds: thresholds, withPlayers: false, title: "loadtest replay \(urls)", output: output)
    }
}

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print two JSON reports' figures side by side, with B-A and B/A.")
    @Argument(help: "The first report (A).") var a: String
    @Argument(help: "The second report (B).") var b: String

    func run() throws {
        func load(_ path: String) throws -> Any {
            guard let data = FileManager.default.contents(atPath: path),
                let v = try? JSONSerialization.jsonObject(with: data), v is [String: Any]
            else { throw ValidationError("\(path): not a loadtest JSON report") }
            return v
        }
        let rows = ReportComparison.compare(try load(a), try load(b))
        print(ReportComparison.table(rows, nameA: "A", nameB: "B"))
        print("A: \(a)\nB: \(b)")
    }
}

/// The end of a run: thresholds checked, summary printed, reports written, the exit code.
func finish(
    _ result: ParallelRun.Result, thresholds: [Threshold], withPlayers: Bool, title: String, output: Output
)
    throws
{
    var report = result.recorder.report(
        durationSeconds: result.seconds, generatorBehind: result.behind, withPlayers: withPlayers)
    report.thresholds = thresholds.map { $0.check(report) }
    print(Summary.table(report))
    if let json = output.json {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(report).write(to: URL(fileURLWithPath: json))
    }
    if let html = output.html {
        try HTMLReport.render(title: title, report: report, recorder: result.recorder)
            .write(toFile: html, atomically: true, encoding: .utf8)
    }
    if result.behind {
        FileHandle.standardError.write(
            "loadtest: the generator fell behind its schedule; run stopped (its figures would measure itself)\n"
                .data(using: .utf8)!)
        throw ExitCode(3)
    }
    let failed = report.thresholds.filter { !$0.passed }
    for t in failed {
        FileHandle.standardError.write(
            "loadtest: threshold crossed: \(t.threshold) (actual \(t.actual.map { String(format: "%.3f", $0) } ?? "not measured"))\n"
                .data(using: .utf8)!)
    }
    if report.errors > 0 || !failed.isEmpty { throw ExitCode(1) }
}

enum Progressline {
    /// One line a second on standard error (rewritten in place on a terminal).
    @Sendable static func print(_ p: EdgeLoad.Progress, _ seconds: Double) {
        let line = String(
            format: "%5.0fs  requests %d  responses %d  errors %d  plays %d (active %d, audio %d)  rebuffers %d",
            seconds, p.requests.load(ordering: .relaxed), p.responses.load(ordering: .relaxed),
            p.errors.load(ordering: .relaxed), p.playsStarted.load(ordering: .relaxed),
            p.playsActive.load(ordering: .relaxed), p.firstAudio.load(ordering: .relaxed),
            p.rebuffers.load(ordering: .relaxed))
        let tty = isatty(2) != 0
        FileHandle.standardError.write((tty ? "\r\(line)\u{1B}[K" : "\(line)\n").data(using: .utf8)!)
    }
}

enum Summary {
    static func table(_ r: Recorder.Report) -> String {
        func row(_ name: String, _ s: LatencyHistogram.Summary?) -> String {
            guard let s else { return name.padding(toLength: 34, withPad: " ", startingAt: 0) + "-" }
            return name.padding(toLength: 34, withPad: " ", startingAt: 0)
                + [s.p50, s.p90, s.p99, s.p999, s.max].map { String(format: "%9.2f", $0) }.joined()
        }
        var lines = [
            String(
                format: "requests %d, responses %d, errors %d, %.0f req/s over %.1f s, %.1f MB", r.requests,
                r.responses, r.errors, r.requests_per_second, r.duration_seconds, Double(r.bytes) / 1e6),
            "ms".padding(toLength: 34, withPad: " ", startingAt: 0) + "      p50      p90      p99    p99.9      max",
            row("ttfb (head), corrected", r.ttfb_ms.corrected),
            row("ttfb (head), uncorrected", r.ttfb_ms.uncorrected),
            row("first body byte, corrected", r.ttfb_first_body_byte_ms.corrected),
            row("whole response, corrected", r.response_ms),
        ]
        if let p = r.players {
            lines += [
                row("time to first audio", r.time_to_first_audio_ms),
                row("playback-auth grant", p.grant_ms),
                row("next track's first audio", p.next_track_start_ms),
                row("rebuffer duration", p.rebuffer_ms),
            ]
        }
        lines.append(row("generator lag", r.generator_lag_ms))
        if let p = r.players {
            lines.append(
                "players: \(p.plays) plays, \(p.plays_with_audio) with audio, \(p.plays_failed) failed, \(p.plays_unfinished) unfinished; \(p.tracks_completed) tracks completed, \(p.rebuffers) rebuffers, \(p.seeks) seeks, \(p.bitrate_switches) switches, \(p.prefetches) prefetches (\(p.prefetches_used) used)"
            )
        }
        if r.cache["hit", default: 0] + r.cache["miss", default: 0] > 0 {
            lines.append("cache: \(r.cache["hit", default: 0]) hits, \(r.cache["miss", default: 0]) misses")
        }
        if !r.errors_by_class.isEmpty {
            lines.append(
                "errors: "
                    + r.errors_by_class.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(
                        separator: ", "))
        }
        for t in r.thresholds {
            lines.append(
                "threshold \(t.threshold): \(t.passed ? "pass" : "FAIL") (actual \(t.actual.map { String(format: "%.3f", $0) } ?? "not measured"))"
            )
        }
        return lines.joined(separator: "\n")
    }
}

Loadtest.main()
