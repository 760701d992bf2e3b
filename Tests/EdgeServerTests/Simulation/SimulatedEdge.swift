import CEdgeTLS
import EdgeConfig
import EdgeEncoding
import EdgeIO
@testable import EdgeServer
import Foundation
import XCTest

/// One real worker (the production `Worker`, its HTTP/1.1 and HTTP/2 front ends, file table,
/// origin client and cache) on a simulated kernel: no socket, no thread, no real time.
final class SimulatedEdge {
    let sim: SimulatedIO
    let worker: Worker
    let listenerFD: Int32
    /// The TLS listener (`tls: true`), with the test certificate (see `TLSClientPipe`).
    private(set) var tlsListenerFD: Int32 = -1
    private var tlsContext: TLSServerContext?
    let wakeFD: Int32
    let accessLogFD: Int32
    let config: EdgeConfig
    private(set) var running = true

    init(
        seed: UInt64, faults: SimulatedIO.Faults = .init(), config text: String, files: [String: [UInt8]] = [:],
        tls: Bool = false
    ) throws {
        sim = SimulatedIO(seed: seed, faults: faults)
        for (path, bytes) in files { sim.files[path] = SimulatedIO.File(bytes: bytes) }
        config = try EdgeConfig.parse(text)
        var store: SliceStore? = nil
        if !config.origin.upstreams.isEmpty {
            let c = config.cache
            store = SliceStore(
                config: (c.directory, c.sliceBytes, c.fillsMax, c.ramBytesLimit, c.diskBytesLimit),
                objectBytesMax: c.objectBytesMax)
        }
        accessLogFD = sim.sink()
        listenerFD = sim.listen()
        var listeners = [Listener(fd: listenerFD, isTLS: false, armed: false)]
        if tls {
            switch TLSServerContext.load(
                certificate: TestCertificate.certificatePath, privateKey: TestCertificate.keyPath,
                http2: config.server.http2)
            {
            case .success(let ctx): tlsContext = ctx
            case .failure(let e): throw TLSClientError(message: e.description)
            }
            tlsListenerFD = sim.listen()
            listeners.append(Listener(fd: tlsListenerFD, isTLS: true, armed: false))
        }
        let settings = WorkerSettings(
            config: config, router: Router(config.token, geo: try GeoGate.open(config.geo)), tlsContext: tlsContext,
            accessLogFD: accessLogFD, store: store,
            directory: WorkerDirectory(
                workers: 1, signal: { [sim = UncheckedSendable(sim)] fd in sim.value.signal(fd) }))
        wakeFD = sim.eventFD()
        worker = try Worker(
            index: 0, settings: settings, listeners: listeners, wakeFD: wakeFD, ring: Ring(simulated: sim))
        worker.start()
    }

    func connect(from address: String = "192.0.2.10") -> SimulatedIO.Peer { sim.connect(to: listenerFD, from: address) }

    /// A TLS client on the TLS listener, offering `alpn`.
    func connectTLS(alpn: [String] = ["http/1.1"], from address: String = "192.0.2.10") throws -> TLSClientPipe {
        precondition(tlsListenerFD >= 0, "SimulatedEdge made without tls: true")
        return try TLSClientPipe(peer: sim.connect(to: tlsListenerFD, from: address), alpn: alpn)
    }

    /// Runs the worker until nothing can complete without the clock moving on.
    func runUntilIdle(file: StaticString = #filePath, line: UInt = #line) {
        var steps = 0
        while running && sim.hasWork {
            running = worker.step()
            steps += 1
            if steps > 1_000_000 { XCTFail("the worker never went idle", file: file, line: line); return }
        }
    }

    /// Lets virtual time pass (timers fire on the way), then runs until idle.
    func advance(milliseconds: Int) {
        for _ in 0..<max(1, milliseconds / 50) {
            sim.advance(microseconds: Int64(min(50, milliseconds)) * 1000)
            runUntilIdle()
        }
    }

    /// SIGTERM's path: the eventfd wakes the worker, which drains and stops.
    func drain(milliseconds: Int = 60_000) {
        worker.settings.directory.requestStop()
        runUntilIdle()
        var waited = 0
        while running && waited < milliseconds {
            sim.advance(microseconds: 50_000)
            waited += 50
            runUntilIdle()
        }
        if !running { worker.finish() }
    }

    var errorLog: String { worker.errorLog.flush(); runUntilIdle(); return sim.sinkText(2) }
    var accessLog: String { worker.log.flush(); runUntilIdle(); return sim.sinkText(accessLogFD) }

    /// What must hold whenever no client is connected: every slot, buffer and file reference
    /// released, and nothing in flight but the listener's accept, the tick and the wake-up read.
    func checkQuiescent(_ context: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(worker.liveConnections, 0, "live connections, \(context)", file: file, line: line)
        XCTAssertFalse(
            worker.connections.contains { $0.life.isInUse }, "a connection slot still in use, \(context)", file: file,
            line: line)
        XCTAssertEqual(
            worker.readPool.outstanding, 0, "read buffers not given back, \(context)", file: file, line: line)
        XCTAssertTrue(
            (worker.cache?.parked.isEmpty ?? true), "requests still parked, \(context)", file: file, line: line)
        for case let entry? in worker.directorySource?.files.slots ?? [] {
            XCTAssertEqual(entry.users, 0, "\(entry.relativePath) still referenced, \(context)", file: file, line: line)
        }
        if let cacheFiles = worker.cache?.cacheFiles {
            for case let entry? in cacheFiles.slots {
                XCTAssertEqual(
                    entry.users, 0, "slice file \(entry.relativePath) still referenced, \(context)", file: file,
                    line: line)
            }
        }
        XCTAssertEqual(
            worker.cache?.writer.inFlight ?? 0, 0, "disk writes in flight, \(context)", file: file, line: line)
        // A file's mapping lives while its table entry does; nothing sent from it holds it after.
        let entriesMapped = (worker.directorySource?.files.slots ?? []).filter { $0?.mapping != nil }.count
        XCTAssertEqual(
            sim.liveMappings, entriesMapped, "file mappings outlived their entries, \(context)", file: file,
            line: line)
        XCTAssertEqual(
            sim.operationsInFlight, 2 + worker.listeners.count,
            "operations in flight: \(sim.inFlightDescription), \(context)", file: file, line: line)
    }
}

/// A response as a client reads it (Content-Length framing: the edge always sends one).
struct ClientResponse {
    var status: Int
    var headers: [String: String]
    var body: [UInt8]
}

/// Reads consecutive HTTP/1.1 responses from the bytes a client received.
struct ResponseReader {
    private(set) var buffer: [UInt8] = []

    mutating func add(_ bytes: [UInt8]) { buffer += bytes }

    /// The next complete response, or nil. `isHead`: the request was HEAD (no body follows).
    mutating func next(isHead: Bool = false) -> ClientResponse? {
        guard let end = find([13, 10, 13, 10]) else { return nil }
        let head = String(decoding: buffer[..<end], as: UTF8.self)
        var lines = head.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ")
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else { return nil }
        var headers: [String: String] = [:]
        for l in lines {
            guard let colon = l.firstIndex(of: ":") else { continue }
            headers[l[..<colon].lowercased()] = l[l.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let length = isHead || status == 304 || status == 204 ? 0 : Int(headers["content-length"] ?? "0") ?? 0
        guard buffer.count >= end + 4 + length else { return nil }
        let body = Array(buffer[(end + 4)..<(end + 4 + length)])
        buffer.removeFirst(end + 4 + length)
        return ClientResponse(status: status, headers: headers, body: body)
    }

    private func find(_ needle: [UInt8]) -> Int? {
        guard buffer.count >= needle.count else { return nil }
        for i in 0...(buffer.count - needle.count)
        where buffer[i] == needle[0] && Array(buffer[i..<(i + needle.count)]) == needle {
            return i
        }
        return nil
    }
}

/// A request and the one response that is right for it.
struct Expectation {
    var request: String
    var status: Int
    var body: [UInt8]
    var contentRange: String?

    /// GET of `path` (`content` nil: no such file) with an optional Range header value.
    init(path: String, content: [UInt8]?, range: String?) {
        request = "GET \(path) HTTP/1.1\r\nHost: edge\r\n" + (range.map { "Range: \($0)\r\n" } ?? "") + "\r\n"
        guard let content else { status = 404; body = Array("not found\n".utf8); return }
        guard let range else { status = 200; body = content; return }
        let spec = range.dropFirst("bytes=".count)
        let parts = spec.split(separator: "-", omittingEmptySubsequences: false)
        var first: Int, last: Int
        if parts[0].isEmpty {
            let suffix = Int(parts[1])!
            first = max(0, content.count - suffix); last = content.count - 1
            if suffix == 0 { first = content.count }
        } else {
            first = Int(parts[0])!
            last = parts[1].isEmpty ? content.count - 1 : min(Int(parts[1])!, content.count - 1)
        }
        if first >= content.count || content.isEmpty {
            status = 416; body = Array("range not satisfiable\n".utf8); contentRange = "bytes */\(content.count)"
            return
        }
        status = 206
        body = Array(content[first...last])
        contentRange = "bytes \(first)-\(last)/\(content.count)"
    }

    func check(_ r: ClientResponse, _ context: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, status, "status, \(context)", file: file, line: line)
        XCTAssertTrue(
            r.body == body, "body differs (\(r.body.count) bytes, expected \(body.count)), \(context)", file: file,
            line: line)
        if let contentRange {
            XCTAssertEqual(
                r.headers["content-range"], contentRange, "Content-Range, \(context)", file: file, line: line)
        }
    }
}

/// Deterministic content: the same seed and length, the same bytes.
func pseudoRandomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var random = SplitMix64(seed: seed)
    var out = [UInt8](); out.reserveCapacity(count)
    while out.count < count {
        let v = random.next()
        for k in 0..<8 where out.count < count { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(k)))) }
    }
    return out
}

/// The seeds a suite runs: `EDGE_SIM_SEED=N` runs only seed N (a failure's reproduction),
/// `EDGE_SIM_RUNS=K` runs K seeds from 1 (default `runs`).
func simulationSeeds(default runs: Int) -> [UInt64] {
    let env = ProcessInfo.processInfo.environment
    if let s = env["EDGE_SIM_SEED"], let seed = UInt64(s) { return [seed] }
    let count = env["EDGE_SIM_RUNS"].flatMap { Int($0) } ?? runs
    return (1...UInt64(max(1, count))).map { $0 }
}

/// Writes the seed about to run where a trap (which ends the test process) leaves it for the
/// person reading the failure: `.build/simulation-seed`.
func recordSeed(_ suite: String, _ seed: UInt64) {
    let text = "\(suite) seed \(seed): reproduce with EDGE_SIM_SEED=\(seed) swift test --filter \(suite)\n"
    try? text.write(toFile: ".build/simulation-seed", atomically: false, encoding: .utf8)
}

/// The simulation is single-threaded: the worker's wake-up closure only ever runs on the test's thread.
struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
