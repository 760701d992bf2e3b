import CNGHTTP2
import EdgeEncoding
import EdgeIO
@testable import EdgeServer
import XCTest

/// An HTTP/2 client over libnghttp2 (an independent implementation of the protocol), moving its
/// bytes through a simulated peer.
final class H2Client {
    struct Stream {
        var status = 0
        var headers: [String: String] = [:]
        var body: [UInt8] = []
        var closed = false
        var errorCode: UInt32 = 0
    }

    private var session: OpaquePointer?
    let peer: any ClientPipe
    private(set) var streams: [Int32: Stream] = [:]
    private(set) var goAwayReceived = false

    /// `windowBytes`: the client's initial stream window (small: the server must wait for
    /// WINDOW_UPDATEs, deferring and resuming its data).
    init(peer: any ClientPipe, windowBytes: Int = 65535) {
        self.peer = peer
        var callbacks: OpaquePointer?
        nghttp2_session_callbacks_new(&callbacks)
        nghttp2_session_callbacks_set_on_header_callback(callbacks, clientOnHeader)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, clientOnData)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, clientOnClose)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, clientOnFrame)
        nghttp2_session_client_new(&session, callbacks, Unmanaged.passUnretained(self).toOpaque())
        nghttp2_session_callbacks_del(callbacks)
        var settings = [
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: UInt32(windowBytes))
        ]
        nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, 1)
    }
    deinit { nghttp2_session_del(session) }

    @discardableResult
    func get(_ path: String, range: String? = nil) -> Int32 {
        var fields = [(":method", "GET"), (":scheme", "http"), (":path", path), (":authority", "edge")]
        if let range { fields.append(("range", range)) }
        let bytes = fields.map { (Array($0.0.utf8), Array($0.1.utf8)) }
        let id: Int32 = withExtendedLifetime(bytes) {
            var nva = bytes.map { name, value in
                nghttp2_nv(
                    name: UnsafeMutablePointer(mutating: name.withUnsafeBufferPointer { $0.baseAddress! }),
                    value: UnsafeMutablePointer(mutating: value.withUnsafeBufferPointer { $0.baseAddress! }),
                    namelen: name.count, valuelen: value.count, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
            }
            return nghttp2_submit_request(session, nil, &nva, nva.count, nil, nil)
        }
        precondition(id > 0, "nghttp2_submit_request failed: \(id)")
        streams[id] = Stream()
        return id
    }

    /// Sends what the client has to send, then reads what the server sent. False once the
    /// client's session ended (a protocol error on the server's side fails the test).
    @discardableResult
    func exchange() -> Bool {
        while true {
            var data: UnsafePointer<UInt8>?
            let n = nghttp2_session_mem_send(session, &data)
            precondition(n >= 0, "client mem_send: \(n)")
            if n == 0 { break }
            if !peer.closedByServer && !peer.wasReset { peer.write(Array(UnsafeBufferPointer(start: data, count: n))) }
        }
        let received = peer.take()
        if !received.isEmpty {
            let rc = received.withUnsafeBufferPointer { nghttp2_session_mem_recv(session, $0.baseAddress, $0.count) }
            XCTAssertGreaterThanOrEqual(rc, 0, "the server sent bytes nghttp2 rejects: \(rc)")
            if rc < 0 { return false }
        }
        return true
    }

    fileprivate func header(_ stream: Int32, _ name: String, _ value: String) {
        if name == ":status" {
            streams[stream]?.status = Int(value) ?? -1
        } else {
            streams[stream]?.headers[name] = value
        }
    }
    fileprivate func data(_ stream: Int32, _ bytes: UnsafeBufferPointer<UInt8>) { streams[stream]?.body += bytes }
    fileprivate func closed(_ stream: Int32, _ code: UInt32) {
        streams[stream]?.closed = true; streams[stream]?.errorCode = code
    }
    fileprivate func goAway() { goAwayReceived = true }
}

private func client(_ p: UnsafeMutableRawPointer?) -> H2Client {
    Unmanaged<H2Client>.fromOpaque(p!).takeUnretainedValue()
}
private let clientOnHeader: nghttp2_on_header_callback = { _, frame, name, namelen, value, valuelen, _, user in
    client(user).header(
        frame!.pointee.hd.stream_id, String(decoding: UnsafeBufferPointer(start: name, count: namelen), as: UTF8.self),
        String(decoding: UnsafeBufferPointer(start: value, count: valuelen), as: UTF8.self))
    return 0
}
private let clientOnData: nghttp2_on_data_chunk_recv_callback = { _, _, stream, data, length, user in
    client(user).data(stream, UnsafeBufferPointer(start: data, count: length))
    return 0
}
private let clientOnClose: nghttp2_on_stream_close_callback = { _, stream, code, user in
    client(user).closed(stream, code)
    return 0
}
private let clientOnFrame: nghttp2_on_frame_recv_callback = { _, frame, user in
    if frame!.pointee.hd.type == UInt8(NGHTTP2_GOAWAY.rawValue) { client(user).goAway() }
    return 0
}

/// HTTP/2 (h2c, prior knowledge) through the production front end on the simulated kernel:
/// many streams at once on one connection, flow control with a small client window, faults.
final class SimulatedHTTP2Tests: XCTestCase {
    func check(
        _ s: H2Client.Stream, _ e: Expectation, _ context: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(s.status, e.status, "status, \(context)", file: file, line: line)
        XCTAssertTrue(
            s.body == e.body, "body differs (\(s.body.count) bytes, expected \(e.body.count)), \(context)", file: file,
            line: line)
        if let cr = e.contentRange {
            XCTAssertEqual(s.headers["content-range"], cr, "Content-Range, \(context)", file: file, line: line)
        }
    }

    func testMultiplexedStreamsWithSmallWindow() throws {
        let track = pseudoRandomBytes(400_000, seed: 21)
        let edge = try SimulatedEdge(
            seed: 21, config: SimulatedHTTP1Tests.config(), files: ["/srv/origin/audio/a.bin": track])
        let h2 = H2Client(peer: edge.connect(), windowBytes: 4096)
        let asks: [(Int32, Expectation)] =
            [nil, "bytes=0-99999", "bytes=-5000", "bytes=350000-", "bytes=500000-"].map { range in
                (h2.get("/audio/a.bin", range: range), Expectation(path: "/audio/a.bin", content: track, range: range))
            } + [(h2.get("/audio/none.bin"), Expectation(path: "/audio/none.bin", content: nil, range: nil))]
        for _ in 0..<10_000 where asks.contains(where: { h2.streams[$0.0]?.closed != true }) {
            h2.exchange()
            edge.runUntilIdle()
        }
        for (id, e) in asks {
            guard let s = h2.streams[id], s.closed else { return XCTFail("stream \(id) did not finish") }
            check(s, e, "stream \(id)")
        }
        h2.peer.close()
        edge.runUntilIdle()
        edge.checkQuiescent("after the HTTP/2 client closed")
    }

    /// SIGTERM with an HTTP/2 client connected: GOAWAY, the stream in flight completes, the
    /// worker stops.
    func testDrainSendsGoAwayAndFinishesStreams() throws {
        let track = pseudoRandomBytes(200_000, seed: 22)
        let edge = try SimulatedEdge(
            seed: 22, config: SimulatedHTTP1Tests.config(), files: ["/srv/origin/audio/a.bin": track])
        let h2 = H2Client(peer: edge.connect(), windowBytes: 8192)
        let id = h2.get("/audio/a.bin")
        h2.exchange()
        edge.runUntilIdle()
        edge.worker.settings.directory.requestStop()   // SIGTERM
        for _ in 0..<10_000 where h2.streams[id]?.closed != true {
            h2.exchange()
            edge.runUntilIdle()
        }
        XCTAssertTrue(h2.goAwayReceived)
        check(
            try XCTUnwrap(h2.streams[id]), Expectation(path: "/audio/a.bin", content: track, range: nil),
            "drained stream")
        h2.exchange()
        edge.runUntilIdle()
        XCTAssertFalse(edge.running, "the worker stops once drained")
    }

    /// Seeded runs: streams on one or two connections, random ranges and windows, kernel faults.
    func testSeededHTTP2Runs() throws {
        var streamsChecked = 0, lost = 0, tlsRuns = 0
        let seeds = simulationSeeds(default: 300)
        for seed in seeds {
            recordSeed("SimulatedHTTP2Tests", seed)
            let failuresBefore = testRun?.totalFailureCount ?? 0
            var random = SplitMix64(seed: seed)
            var files: [String: [UInt8]] = [:]
            for i in 0..<2 {
                files["/audio/h\(i).bin"] = pseudoRandomBytes(
                    [1, 5000, 90_000, 250_000][random.next(below: 4)], seed: seed &+ UInt64(i))
            }
            var faults = SimulatedIO.Faults()
            faults.shortTransferPercent = [0, 40][random.next(below: 2)]
            faults.retryPercent = [0, 10][random.next(below: 2)]
            faults.delayMicrosecondsMax = [0, 200][random.next(below: 2)]
            faults.resetPercent = random.next(below: 5) == 0 ? 1 : 0
            faults.readFailurePercent = random.next(below: 5) == 0 ? 2 : 0
            // Cleartext bodies send from file mappings: some cannot be made, some pages are not resident.
            faults.mapFailurePercent = random.next(below: 8) == 0 ? 50 : 0
            faults.pageCacheMissPercent = [0, 0, 10, 100][random.next(below: 4)]
            let chunk = [4096, 16384, 65536][random.next(below: 3)]
            let tls = random.next(below: 3) == 0   // h2 by ALPN over TLS, else h2c by prior knowledge
            if tls { tlsRuns += 1 }
            let edge = try SimulatedEdge(
                seed: seed, faults: faults,
                config: SimulatedHTTP1Tests.config(
                    limits: "read_chunk_bytes = \(chunk)\noutput_buffer_bytes_max = \(max(16384, chunk))"),
                files: Dictionary(uniqueKeysWithValues: files.map { ("/srv/origin" + $0.key, $0.value) }),
                tls: tls)
            var clients: [(H2Client, [(Int32, Expectation)])] = []
            for _ in 0..<(1 + random.next(below: 2)) {
                let peer: any ClientPipe = tls ? try edge.connectTLS(alpn: ["h2"]) : edge.connect()
                let h2 = H2Client(peer: peer, windowBytes: [1024, 16384, 65535][random.next(below: 3)])
                var asks: [(Int32, Expectation)] = []
                for _ in 0..<(1 + random.next(below: 6)) {
                    let path = files.keys.sorted()[random.next(below: files.count)]
                    let size = files[path]!.count
                    let first = random.next(below: size + 100)
                    let range: String? =
                        random.next(below: 3) == 0 ? nil : "bytes=\(first)-\(first + random.next(below: 120_000))"
                    asks.append(
                        (h2.get(path, range: range), Expectation(path: path, content: files[path], range: range)))
                }
                clients.append((h2, asks))
            }
            for _ in 0..<20_000 {
                let open = clients.filter { c in
                    !c.0.peer.closedByServer && !c.0.peer.wasReset && c.1.contains { c.0.streams[$0.0]?.closed != true }
                }
                if open.isEmpty { break }
                for c in open { c.0.exchange() }
                edge.runUntilIdle()
            }
            let lossy = faults.resetPercent > 0 || faults.readFailurePercent > 0
            for (ci, (h2, asks)) in clients.enumerated() {
                h2.exchange()
                for (id, e) in asks {
                    let s = h2.streams[id]!
                    if s.closed && s.errorCode == 0 {
                        check(s, e, "seed \(seed), connection \(ci), stream \(id)")
                        streamsChecked += 1
                    } else {
                        // Reset (a file read failed) or the connection died: only with a fault, never wrong bytes.
                        XCTAssertTrue(
                            lossy,
                            "seed \(seed): stream \(id) unfinished (closed \(s.closed), error \(s.errorCode)) with no fault"
                        )
                        XCTAssertTrue(
                            s.body.count <= e.body.count && s.body == Array(e.body.prefix(s.body.count)),
                            "seed \(seed): wrong bytes")
                        lost += 1
                    }
                }
                if !h2.peer.wasReset { h2.peer.close() }
            }
            edge.runUntilIdle()
            edge.checkQuiescent("seed \(seed)")
            if (testRun?.totalFailureCount ?? 0) > failuresBefore {
                print(
                    "simulation: seed \(seed) failed; reproduce with EDGE_SIM_SEED=\(seed) swift test --filter SimulatedHTTP2Tests"
                )
                return
            }
        }
        print(
            "simulation: \(seeds.count) HTTP/2 runs (\(tlsRuns) over TLS), \(streamsChecked) streams checked, \(lost) lost to injected faults"
        )
    }
}
