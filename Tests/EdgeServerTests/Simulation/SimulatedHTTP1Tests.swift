import EdgeEncoding
import EdgeIO
@testable import EdgeServer
import XCTest

/// The whole HTTP/1.1 path of a worker (accept, parse, route, open, read, send, keep-alive,
/// timeouts, drain) on the simulated kernel, with the directory origin.
final class SimulatedHTTP1Tests: XCTestCase {
    static func config(limits: String = "") -> String {
        """
        [server]
        listen = ["127.0.0.1:8080"]
        [token]
        required = false
        [origin]
        urls = ["file:///srv/origin"]
        [limits]
        header_timeout_milliseconds = 2000
        keepalive_timeout_milliseconds = 5000
        send_timeout_milliseconds = 3000
        \(limits)
        """
    }

    func testKeepAliveAndPipelining() throws {
        let track = pseudoRandomBytes(300_000, seed: 1)
        let edge = try SimulatedEdge(seed: 1, config: Self.config(), files: ["/srv/origin/audio/a.bin": track])
        let expected = [
            Expectation(path: "/audio/a.bin", content: track, range: nil),
            Expectation(path: "/audio/a.bin", content: track, range: "bytes=1000-70999"),
            Expectation(path: "/audio/missing.bin", content: nil, range: nil),
            Expectation(path: "/audio/a.bin", content: track, range: "bytes=-10"),
            Expectation(path: "/audio/a.bin", content: track, range: "bytes=400000-"),
        ]
        let client = edge.connect()
        client.write(expected.map(\.request).joined())   // all five in one packet
        edge.runUntilIdle()
        var reader = ResponseReader()
        reader.add(client.take())
        for (i, e) in expected.enumerated() {
            guard let r = reader.next() else { return XCTFail("response \(i) missing") }
            e.check(r, "response \(i)")
        }
        XCTAssertFalse(client.closedByServer, "keep-alive")
        client.close()
        edge.runUntilIdle()
        edge.checkQuiescent("after the client closed")
        XCTAssertEqual(edge.accessLog.split(separator: "\n").count, 5)
    }

    func testHeaderTimeoutOnVirtualClock() throws {
        let edge = try SimulatedEdge(seed: 2, config: Self.config(), files: [:])
        let client = edge.connect()
        client.write("GET /healthz HTTP/1.1\r\nHo")
        edge.runUntilIdle()
        edge.advance(milliseconds: 1500)
        XCTAssertEqual(client.unread, 0, "nothing before header_timeout_milliseconds")
        edge.advance(milliseconds: 1000)
        var reader = ResponseReader()
        reader.add(client.take())
        XCTAssertEqual(reader.next()?.status, 408)
        XCTAssertTrue(client.closedByServer)
        edge.runUntilIdle()
        edge.checkQuiescent("after a header timeout")
    }

    func testKeepAliveTimeoutClosesIdleConnection() throws {
        let edge = try SimulatedEdge(seed: 3, config: Self.config(), files: [:])
        let client = edge.connect()
        client.write("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        edge.runUntilIdle()
        var reader = ResponseReader()
        reader.add(client.take())
        XCTAssertEqual(reader.next()?.status, 200)
        edge.advance(milliseconds: 4500)
        XCTAssertFalse(client.closedByServer, "idle for less than keepalive_timeout_milliseconds")
        edge.advance(milliseconds: 1000)
        XCTAssertTrue(client.closedByServer, "idle past keepalive_timeout_milliseconds")
        edge.runUntilIdle()
        edge.checkQuiescent("after a keep-alive timeout")
    }

    /// A reader that stops reading (a zero TCP window) is cut at send_timeout_milliseconds, and
    /// what it got is a true prefix of the file.
    func testStalledReaderIsCutAtSendTimeout() throws {
        let track = pseudoRandomBytes(2_000_000, seed: 4)
        let edge = try SimulatedEdge(
            seed: 4, config: Self.config(limits: "output_buffer_bytes_max = 65536\nread_chunk_bytes = 16384"),
            files: ["/srv/origin/audio/big.bin": track])
        let client = edge.connect()
        client.windowBytes = 100_000
        client.write("GET /audio/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        edge.runUntilIdle()
        edge.advance(milliseconds: 2500)
        XCTAssertFalse(client.closedByServer, "stalled for less than send_timeout_milliseconds")
        edge.advance(milliseconds: 1000)
        XCTAssertTrue(client.closedByServer, "stalled past send_timeout_milliseconds")
        let got = client.take()
        let head = got.firstRange(of: Array("\r\n\r\n".utf8))!
        let body = Array(got[head.upperBound...])
        XCTAssertTrue(String(decoding: got[..<head.lowerBound], as: UTF8.self).hasPrefix("HTTP/1.1 200 "))
        XCTAssertTrue(body.count > 0 && body.count < track.count)
        XCTAssertTrue(body == Array(track.prefix(body.count)), "the bytes sent are the file's")
        edge.runUntilIdle()
        edge.checkQuiescent("after a send timeout")
    }

    /// SIGTERM: idle connections close at once; a response in flight completes; then the worker stops.
    func testDrainFinishesResponsesInFlight() throws {
        let track = pseudoRandomBytes(1_000_000, seed: 5)
        let edge = try SimulatedEdge(
            seed: 5, config: Self.config(limits: "output_buffer_bytes_max = 65536\nread_chunk_bytes = 16384"),
            files: ["/srv/origin/audio/big.bin": track])
        let idle = edge.connect(), busy = edge.connect()
        busy.windowBytes = 50_000
        busy.write("GET /audio/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        edge.runUntilIdle()
        edge.worker.settings.directory.requestStop()   // SIGTERM
        edge.runUntilIdle()
        XCTAssertTrue(idle.closedByServer, "an idle connection closes when the drain starts")
        XCTAssertFalse(busy.closedByServer, "a response in flight is not cut")
        var received: [UInt8] = []
        while !busy.closedByServer {
            received += busy.take()   // reading opens the window: the rest flows
            edge.runUntilIdle()
        }
        received += busy.take()
        var reader = ResponseReader()
        reader.add(received)
        guard let r = reader.next() else { return XCTFail("the response in flight did not complete") }
        // The head went out before the drain began, so no "Connection: close": the server closes after the body.
        Expectation(path: "/audio/big.bin", content: track, range: nil).check(r, "drained response")
        edge.runUntilIdle()
        XCTAssertFalse(edge.running, "the worker stops once drained")
    }

    /// Seeded runs: random files, limits, clients (pipelined or one request at a time, requests
    /// split at random points) and kernel faults. After every run: each complete response is
    /// exactly right, a cut one is a true prefix and only happens when a fault could cut it,
    /// and everything is released.
    func testSeededRunsWithFaults() throws {
        var faultCounts: [String: Int] = [:]
        var cuts = 0, responses = 0, tlsRuns = 0
        for seed in simulationSeeds(default: 1000) {
            recordSeed("SimulatedHTTP1Tests", seed)
            let failuresBefore = testRun?.totalFailureCount ?? 0
            var run = try SeededRun(seed: seed)
            let outcome = try run.execute()
            if run.tls { tlsRuns += 1 }
            responses += outcome.responses
            cuts += outcome.cuts
            for (k, v) in run.edge.sim.injected { faultCounts[k, default: 0] += v }
            if (testRun?.totalFailureCount ?? 0) > failuresBefore {
                print(
                    "simulation: seed \(seed) failed; reproduce with EDGE_SIM_SEED=\(seed) swift test --filter SimulatedHTTP1Tests"
                )
                return
            }
        }
        print(
            "simulation: \(simulationSeeds(default: 1000).count) HTTP/1.1 runs (\(tlsRuns) over TLS), \(responses) responses checked, \(cuts) connections cut by faults; faults: \(faultCounts.sorted { $0.key < $1.key })"
        )
    }
}

/// One seeded HTTP/1.1 run.
struct SeededRun {
    let seed: UInt64
    let edge: SimulatedEdge
    var random: SplitMix64
    let files: [String: [UInt8]]
    let lossy: Bool
    /// The clients speak TLS (HTTPS/1.1, ALPN http/1.1) to the TLS listener.
    let tls: Bool

    init(seed: UInt64) throws {
        self.seed = seed
        random = SplitMix64(seed: seed)
        var files: [String: [UInt8]] = [:]
        for i in 0..<3 {
            let size = [0, 1, 4095, 4096, 70_000, 300_000][random.next(below: 6)]
            files["/audio/t\(i).bin"] = pseudoRandomBytes(size, seed: seed &* 31 &+ UInt64(i))
        }
        self.files = files
        var faults = SimulatedIO.Faults()
        faults.shortTransferPercent = [0, 20, 60][random.next(below: 3)]
        faults.retryPercent = [0, 5, 20][random.next(below: 3)]
        faults.delayMicrosecondsMax = [0, 200][random.next(below: 2)]
        faults.resetPercent = random.next(below: 4) == 0 ? 2 : 0
        faults.readFailurePercent = random.next(below: 4) == 0 ? 3 : 0
        // Cleartext bodies send from file mappings: some cannot be made, some pages are not resident.
        faults.mapFailurePercent = random.next(below: 8) == 0 ? 50 : 0
        faults.pageCacheMissPercent = [0, 0, 10, 100][random.next(below: 4)]
        lossy = faults.resetPercent > 0 || faults.readFailurePercent > 0
        let chunk = [4096, 16384, 65536][random.next(below: 3)]
        let limits =
            "read_chunk_bytes = \(chunk)\noutput_buffer_bytes_max = \(max(16384, chunk * [1, 2, 4][random.next(below: 3)]))\n"
            + "recv_buffer_bytes = \([1024, 16384][random.next(below: 2)])"
        tls = random.next(below: 3) == 0
        edge = try SimulatedEdge(
            seed: seed, faults: faults, config: SimulatedHTTP1Tests.config(limits: limits),
            files: Dictionary(uniqueKeysWithValues: files.map { ("/srv/origin" + $0.key, $0.value) }),
            tls: tls)
    }

    struct Client {
        let peer: any ClientPipe
        let expectations: [Expectation]
        let pipelined: Bool
        var toWrite: [UInt8] = []
        var written = 0   // requests handed to toWrite
        var received = 0   // responses checked
        var reader = ResponseReader()
        var done = false
    }

    mutating func makeRequest() -> Expectation {
        let names = files.keys.sorted() + ["/audio/missing.bin"]
        let path = names[random.next(below: names.count)]
        let content = files[path]
        let size = content?.count ?? 1000
        let range: String?
        switch random.next(below: 4) {
        case 0: range = nil
        case 1:
            let first = random.next(below: size + 2)
            range = "bytes=\(first)-\(first + random.next(below: 100_000))"
        case 2: range = "bytes=-\(random.next(below: size + 2))"
        default: range = "bytes=\(random.next(below: size + 2))-"
        }
        return Expectation(path: path, content: content, range: range)
    }

    mutating func execute() throws -> (responses: Int, cuts: Int) {
        var clients: [Client] = []
        for _ in 0..<(1 + random.next(below: 3)) {
            let expectations = (0..<(1 + random.next(below: 5))).map { _ in makeRequest() }
            let peer: any ClientPipe = tls ? try edge.connectTLS() : edge.connect()
            clients.append(Client(peer: peer, expectations: expectations, pipelined: random.next(below: 2) == 0))
        }
        var responses = 0, cuts = 0
        var rounds = 0
        while clients.contains(where: { !$0.done }) {
            rounds += 1
            guard rounds < 20_000 else { XCTFail("seed \(seed): clients never finished"); break }
            var progressed = false
            for i in clients.indices where !clients[i].done {
                // Queue requests: all of them when pipelining, else the next once the last is answered.
                while clients[i].written < clients[i].expectations.count
                    && (clients[i].pipelined || clients[i].written == clients[i].received)
                {
                    clients[i].toWrite += Array(clients[i].expectations[clients[i].written].request.utf8)
                    clients[i].written += 1
                }
                if !clients[i].toWrite.isEmpty && !clients[i].peer.closedByServer {
                    let n = 1 + random.next(below: clients[i].toWrite.count)   // split at a random point
                    clients[i].peer.write(Array(clients[i].toWrite.prefix(n)))
                    clients[i].toWrite.removeFirst(n)
                    progressed = true
                }
            }
            edge.runUntilIdle()
            for i in clients.indices where !clients[i].done {
                let bytes = clients[i].peer.take()
                if !bytes.isEmpty { progressed = true }
                clients[i].reader.add(bytes)
                while clients[i].received < clients[i].expectations.count, let r = clients[i].reader.next() {
                    clients[i].expectations[clients[i].received].check(
                        r, "seed \(seed), client \(i), response \(clients[i].received)")
                    clients[i].received += 1
                    responses += 1
                }
                if clients[i].received == clients[i].expectations.count {
                    clients[i].peer.close()
                    clients[i].done = true
                } else if clients[i].peer.closedByServer || clients[i].peer.wasReset {
                    checkCut(clients[i], client: i)
                    if !clients[i].peer.wasReset { clients[i].peer.close() }
                    clients[i].done = true
                    cuts += 1
                }
            }
            if !progressed { edge.advance(milliseconds: 100) }
        }
        edge.runUntilIdle()
        edge.checkQuiescent("seed \(seed)")
        return (responses, cuts)
    }

    /// A connection the server cut: only when a fault could have caused it, and the bytes of
    /// the unfinished response are a true prefix of the right ones.
    func checkCut(_ client: Client, client i: Int) {
        XCTAssertTrue(
            lossy,
            "seed \(seed): client \(i) cut after \(client.received) of \(client.expectations.count) responses with no fault that loses a connection"
        )
        let partial = client.reader.buffer
        guard let end = partial.firstRange(of: Array("\r\n\r\n".utf8)) else { return }
        let body = Array(partial[end.upperBound...])
        let expected = client.expectations[client.received].body
        XCTAssertTrue(
            body.count <= expected.count && body == Array(expected.prefix(body.count)),
            "seed \(seed): client \(i) got wrong bytes in a cut response")
    }
}
