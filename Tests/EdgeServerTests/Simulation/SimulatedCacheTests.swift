import CEdgeTLS
import EdgeEncoding
import EdgeIO
import Foundation
@testable import EdgeServer
import XCTest

/// An HTTP/1.1 origin on the simulated network: answers range GETs of its objects, and (from
/// its own seed) misbehaves: resets before or during a response, answers 500, or closes early.
/// With `tls` (a server context), it speaks HTTPS: OpenSSL over memory BIOs per connection,
/// ciphertext through the simulated network and its faults.
final class SimulatedOrigin: SimulatedIO.PeerBehaviour {
    /// What it serves, and the ETag every object carries: a test changes both to change the objects.
    var objects: [String: [UInt8]]
    var etag = "\"v1\""
    var faultPercent: Int
    private var random: SplitMix64
    private var inbound: [ObjectIdentifier: [UInt8]] = [:]
    private var peers: [ObjectIdentifier: SimulatedIO.Peer] = [:]
    private(set) var requests = 0
    private(set) var faults = 0
    let tls: TLSServerContext?
    private var sessions: [ObjectIdentifier: OpaquePointer] = [:]
    private(set) var handshakes = 0

    init(objects: [String: [UInt8]], seed: UInt64, faultPercent: Int = 0, tls: TLSServerContext? = nil) {
        self.objects = objects
        self.faultPercent = faultPercent
        self.tls = tls
        random = SplitMix64(seed: seed ^ 0x0123_4567)
    }
    deinit { for s in sessions.values { edge_tls_free(s) } }

    func accepted(_ peer: SimulatedIO.Peer) {
        peers[ObjectIdentifier(peer)] = peer
        if let tls, let ssl = edge_tls_new(tls.pointer) { sessions[ObjectIdentifier(peer)] = ssl }
    }

    /// Plaintext out: sealed first over TLS.
    private func emit(_ bytes: [UInt8], to peer: SimulatedIO.Peer) {
        guard let ssl = sessions[ObjectIdentifier(peer)] else { return peer.write(bytes) }
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { edge_tls_write(ssl, $0.baseAddress, Int32($0.count)) }
            guard n > 0 else { break }
            done += Int(n)
        }
        flush(ssl, peer)
    }
    private func emit(_ text: String, to peer: SimulatedIO.Peer) { emit(Array(text.utf8), to: peer) }

    private func flush(_ ssl: OpaquePointer, _ peer: SimulatedIO.Peer) {
        var out = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = out.withUnsafeMutableBytes { edge_tls_drain(ssl, $0.baseAddress, 16384) }
            guard n > 0 else { break }
            peer.write(Array(out[0..<Int(n)]))
        }
    }

    func received(_ peer: SimulatedIO.Peer) {
        let id = ObjectIdentifier(peer)
        var bytes = peer.take()
        if let ssl = sessions[id] {
            let wasDone = edge_tls_handshake_done(ssl) != 0
            _ = bytes.withUnsafeBytes { edge_tls_feed(ssl, $0.baseAddress, Int32($0.count)) }
            bytes = []
            var plain = [UInt8](repeating: 0, count: 16384)
            while true {
                let n = plain.withUnsafeMutableBytes { edge_tls_read(ssl, $0.baseAddress, 16384) }
                guard n > 0 else { break }
                bytes += plain[0..<Int(n)]
            }
            if !wasDone && edge_tls_handshake_done(ssl) != 0 { handshakes += 1 }
            flush(ssl, peer)
        }
        inbound[id, default: []] += bytes
        while let end = inbound[id]!.firstRange(of: Array("\r\n\r\n".utf8)) {
            let head = String(decoding: inbound[id]![..<end.lowerBound], as: UTF8.self)
            inbound[id]!.removeFirst(end.upperBound)
            requests += 1
            if !respond(to: head, on: peer) { peers[id] = nil; inbound[id] = nil; return }
        }
    }

    /// False when the connection is gone afterwards.
    private func respond(to head: String, on peer: SimulatedIO.Peer) -> Bool {
        let lines = head.components(separatedBy: "\r\n")
        let path = String(lines[0].split(separator: " ")[1])
        guard let object = objects[path] else {
            emit("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", to: peer)
            return true
        }
        let range = lines.first { $0.lowercased().hasPrefix("range: bytes=") }!.dropFirst("range: bytes=".count)
        let bounds = range.split(separator: "-").map { Int($0)! }
        let first = bounds[0], last = min(bounds[1], object.count - 1)
        guard first < object.count else {
            emit(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */\(object.count)\r\nContent-Length: 0\r\n\r\n",
                to: peer)
            return true
        }
        let body = Array(object[first...last])
        let responseHead =
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes \(first)-\(last)/\(object.count)\r\n"
            + "Content-Length: \(body.count)\r\nETag: \(etag)\r\nLast-Modified: Tue, 14 Nov 2023 22:13:20 GMT\r\n"
            + "Content-Type: audio/mp4\r\n\r\n"
        if faultPercent > 0 && random.next(below: 100) < faultPercent {
            faults += 1
            switch random.next(below: 4) {
            case 0: peer.reset(); return false
            case 1: emit("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n", to: peer); return true
            case 2:
                emit(responseHead, to: peer); emit(Array(body.prefix(body.count / 2)), to: peer); peer.reset();
                return false
            default:
                emit(responseHead, to: peer); emit(Array(body.prefix(body.count / 3)), to: peer); peer.close();
                return false
            }
        }
        emit(responseHead, to: peer)
        emit(body, to: peer)
        return true
    }
}

/// The cache path on the simulated kernel: misses fetched from a simulated origin, one fetch
/// per slice, the RAM tier, slice files written through the ring (open, write, fsync, rename)
/// and read back, with faults in the origin and the disk.
final class SimulatedCacheTests: XCTestCase {
    /// `https`: the origin speaks TLS (its certificate is the test's self-signed one, for edge.test:
    /// the edge connects by address, so it is not verified here; the e2e tests verify).
    static func config(
        ramBytes: Int = 1 << 20, diskBytes: Int = 100_000_000, limits: String = "", https: Bool = false
    ) -> String {
        """
        [server]
        listen = ["127.0.0.1:8080"]
        [token]
        required = false
        [origin]
        urls = ["\(https ? "https" : "http")://127.0.0.1:9000"]
        \(https ? "insecure_skip_verify = true" : "")
        attempts_max = 2
        failures_before_down = 1000
        first_byte_timeout_milliseconds = 1000
        [cache]
        dir = "/cache"
        slice_bytes = 16384
        ram_bytes_limit = \(ramBytes)
        disk_bytes_limit = \(diskBytes)
        [limits]
        \(limits)
        """
    }

    func testMissThenHitOneOriginFetchPerSlice() throws {
        let track = pseudoRandomBytes(100_000, seed: 11)
        let edge = try SimulatedEdge(seed: 11, config: Self.config())
        let origin = SimulatedOrigin(objects: ["/audio/t.bin": track], seed: 11)
        edge.sim.serve(port: 9000, origin)
        // Three clients ask at once: the origin sees one request per slice.
        let clients = (0..<3).map { _ in edge.connect() }
        for c in clients { c.write("GET /audio/t.bin HTTP/1.1\r\nHost: x\r\n\r\n") }
        edge.runUntilIdle()
        for (i, c) in clients.enumerated() {
            var reader = ResponseReader()
            reader.add(c.take())
            guard let r = reader.next() else { return XCTFail("client \(i): no response") }
            Expectation(path: "/audio/t.bin", content: track, range: nil).check(r, "client \(i)")
            XCTAssertTrue(r.headers["cache-status"]?.hasPrefix("edge; fwd=miss") ?? false)
        }
        XCTAssertEqual(origin.requests, (track.count + 16383) / 16384, "one origin request per slice")
        // Written to the disk tier through the ring: one slice file per slice.
        XCTAssertEqual(edge.sim.files.keys.filter { $0.hasSuffix(".slice") }.count, (track.count + 16383) / 16384)
        let again = edge.connect()
        again.write("GET /audio/t.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=20000-50000\r\n\r\n")
        edge.runUntilIdle()
        var reader = ResponseReader()
        reader.add(again.take())
        let hit = try XCTUnwrap(reader.next())
        Expectation(path: "/audio/t.bin", content: track, range: "bytes=20000-50000").check(hit, "hit")
        XCTAssertEqual(hit.headers["cache-status"], "edge; hit")
        XCTAssertEqual(origin.requests, (track.count + 16383) / 16384, "a hit asks the origin nothing")
        for c in clients + [again] { c.close() }
        edge.runUntilIdle()
        edge.checkQuiescentCache("after the hit")
    }

    /// The RAM tier holds one slice: the rest are read back from the slice files written through
    /// the simulated disk, byte for byte.
    func testSlicesReadBackFromDiskTier() throws {
        let track = pseudoRandomBytes(200_000, seed: 12)
        let edge = try SimulatedEdge(seed: 12, config: Self.config(ramBytes: 16384))
        let origin = SimulatedOrigin(objects: ["/audio/t.bin": track], seed: 12)
        edge.sim.serve(port: 9000, origin)
        let client = edge.connect()
        client.write("GET /audio/t.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /audio/t.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        edge.runUntilIdle()
        var reader = ResponseReader()
        reader.add(client.take())
        for i in 0..<2 {
            guard let r = reader.next() else { return XCTFail("response \(i) missing") }
            Expectation(path: "/audio/t.bin", content: track, range: nil).check(r, "response \(i)")
        }
        XCTAssertEqual(origin.requests, (track.count + 16383) / 16384, "the second read came from the disk tier")
        client.close()
        edge.runUntilIdle()
        edge.checkQuiescentCache("after reading back from disk")
    }

    /// A slow reader whose response began with version 1 stalls between slices; the object is
    /// purged and refetched as version 2, whose slices land in RAM. When the reader resumes, its
    /// response is cut: it never carries version 2's bytes after version 1's.
    func testAStalledResponseIsCutNotSplicedWhenTheObjectChanges() throws {
        let v1 = pseudoRandomBytes(4 * 16384, seed: 21), v2 = pseudoRandomBytes(4 * 16384, seed: 22)
        // A small output bound: the body waits for the reader instead of queuing all of it at once.
        let edge = try SimulatedEdge(
            seed: 21, config: Self.config(limits: "read_chunk_bytes = 4096\noutput_buffer_bytes_max = 16384"))
        let origin = SimulatedOrigin(objects: ["/audio/t.bin": v1], seed: 21)
        edge.sim.serve(port: 9000, origin)
        _ = get(edge, v1, range: nil, "version 1 cached")
        let slow = edge.connect()
        slow.windowBytes = 20000   // with 16 KiB queued, inside slice 2: slice 3 waits for the reader
        slow.write("GET /audio/t.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        edge.runUntilIdle()
        let cache = try XCTUnwrap(edge.worker.cache)
        _ = cache.store.purge("/audio/t.bin")
        origin.objects = ["/audio/t.bin": v2]
        origin.etag = "\"v2\""
        let r = try XCTUnwrap(get(edge, v2, range: nil, "version 2 fetched"))
        XCTAssertEqual(r.headers["etag"], "\"v2\"")
        slow.windowBytes = Int.max
        edge.runUntilIdle()
        var reader = ResponseReader()
        reader.add(slow.take())
        let partial = reader.buffer
        let end = try XCTUnwrap(partial.firstRange(of: Array("\r\n\r\n".utf8)), "the slow reader got its head")
        let body = Array(partial[end.upperBound...])
        XCTAssertTrue(body.count < v1.count, "cut, not completed from version 2 (\(body.count) bytes)")
        XCTAssertTrue(body == Array(v1.prefix(body.count)), "only version 1's bytes, none of version 2's")
        XCTAssertTrue(slow.closedByServer, "the cut response closes the connection")
        slow.close()
        edge.runUntilIdle()
        edge.checkQuiescentCache("after the cut")
    }

    /// One GET on a new connection; the response, checked byte for byte against `track`.
    private func get(
        _ edge: SimulatedEdge, _ track: [UInt8], range: String?, _ context: String, file: StaticString = #filePath,
        line: UInt = #line
    ) -> ClientResponse? {
        let client = edge.connect()
        client.write("GET /audio/t.bin HTTP/1.1\r\nHost: x\r\n" + (range.map { "Range: \($0)\r\n" } ?? "") + "\r\n")
        edge.runUntilIdle()
        var reader = ResponseReader()
        reader.add(client.take())
        client.close()
        edge.runUntilIdle()
        guard let r = reader.next() else { XCTFail("\(context): no response", file: file, line: line); return nil }
        Expectation(path: "/audio/t.bin", content: track, range: range).check(r, context)
        return r
    }

    /// An edge with a RAM tier of three slices that has fetched a six-slice track whole: some
    /// slices left RAM and stay on disk. Returns one of them and a range inside it.
    private func edgeWithSliceOnDiskOnly(
        seed: UInt64
    ) throws -> (
        edge: SimulatedEdge, origin: SimulatedOrigin, track: [UInt8], cache: CacheSource, key: SliceKey, range: String
    ) {
        let track = pseudoRandomBytes(6 * 16384, seed: seed)
        let edge = try SimulatedEdge(seed: seed, config: Self.config(ramBytes: 3 * 16384))
        let origin = SimulatedOrigin(objects: ["/audio/t.bin": track], seed: seed)
        edge.sim.serve(port: 9000, origin)
        _ = get(edge, track, range: nil, "first fetch")
        let cache = try XCTUnwrap(edge.worker.cache)
        let i = try XCTUnwrap(
            (0..<6).first { i in
                let k = SliceKey(path: "/audio/t.bin", index: i)
                return cache.store.state.withLock { $0.disk[k] != nil && $0.ram[k] == nil }
            }, "a slice left RAM for the disk")
        return (
            edge, origin, track, cache, SliceKey(path: "/audio/t.bin", index: i),
            "bytes=\(i * 16384 + 100)-\(i * 16384 + 4195)"
        )
    }

    /// A RAM tier of three slices in front of a six-slice track: some slices leave RAM but stay
    /// on disk. One requested again (the second request lately) is read back from its file once,
    /// verified, into RAM, and later requests are RAM hits; the origin is never asked again.
    func testHotDiskSlicesArePromotedIntoRAM() throws {
        let (edge, origin, track, cache, first, range) = try edgeWithSliceOnDiskOnly(seed: 14)
        let ramLookups = { edge.worker.settings.counters[0].load(MetricLayout.cacheLookups) }
        let ramBefore = ramLookups()
        for round in 0..<3 {
            let r = get(edge, track, range: range, "round \(round)")
            XCTAssertEqual(r?.headers["cache-status"], "edge; hit", "round \(round)")
        }
        XCTAssertEqual(cache.promoter.promoted, 1, "one read of the slice file")
        XCTAssertNotNil(cache.store.state.withLock { $0.ram[first] }, "the first slice is in RAM")
        XCTAssertEqual(ramLookups() - ramBefore, 2, "the rounds after the promotion are RAM hits")
        XCTAssertEqual(origin.requests, 6, "the origin was asked once per slice")
        edge.checkQuiescentCache("after the promotion")
    }

    /// A slice file damaged on disk after start-up: the promotion's checksum refuses it, the
    /// player still gets the right bytes (fetched again from the origin), the file is replaced, and
    /// the error log names it.
    func testDamagedSliceFileIsRefetchedNotPromoted() throws {
        let (edge, origin, track, cache, first, range) = try edgeWithSliceOnDiskOnly(seed: 15)
        let disk = try XCTUnwrap(cache.store.state.withLock { $0.disk[first] })
        let path = "/cache/" + disk.relativePath
        edge.sim.files[path]!.bytes[disk.dataOffset + 200] ^= 0x40
        // Requested twice lately (the miss, then this): the disk hit is promoted, and the
        // promotion finds the damage.
        let r = get(edge, track, range: range, "after the damage")
        XCTAssertNotNil(r)
        XCTAssertEqual(cache.promoter.damaged, 1)
        XCTAssertEqual(cache.promoter.promoted, 0)
        XCTAssertEqual(origin.requests, 7, "the damaged slice was fetched again")
        XCTAssertTrue(edge.errorLog.contains("(checksum mismatch); it will be fetched again"), edge.errorLog)
        let sliceBytes = track[(first.index * 16384)..<((first.index + 1) * 16384)]
        XCTAssertTrue(edge.sim.files[path]?.bytes[disk.dataOffset...] == sliceBytes, "the file was written again")
        _ = get(edge, track, range: range, "after the refetch")
        edge.checkQuiescentCache("after the damaged file")
    }

    /// A pre-warm's fill that no worker could take (a full mailbox) is given up; a player who
    /// joined it in that instant is woken and answered 503 at once, not left waiting for its
    /// deadline, and the origin is not asked.
    func testAPrewarmFillNobodyTookAnswersThePlayersWhoJoinedIt() throws {
        let edge = try SimulatedEdge(seed: 16, config: Self.config())
        let origin = SimulatedOrigin(objects: ["/audio/t.bin": pseudoRandomBytes(50_000, seed: 16)], seed: 16)
        edge.sim.serve(port: 9000, origin)
        let control = EdgeControl(settings: edge.worker.settings, configPath: nil)
        let store = try XCTUnwrap(edge.worker.settings.store)
        guard
            case .started(let fill) = store.prewarm(
                SliceKey(path: "/audio/t.bin", index: 0), pinUntilSeconds: 0, ticket: PrewarmTicket { _ in }, worker: 0)
        else { return XCTFail("expected a new fill") }
        let client = edge.connect()
        client.write("GET /audio/t.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        edge.runUntilIdle()
        XCTAssertEqual(edge.worker.cache?.parked.count, 1, "the player joined the pre-warm's fill")
        control.abandonUnposted(fill, store)
        edge.runUntilIdle()
        var reader = ResponseReader()
        reader.add(client.take())
        XCTAssertEqual(reader.next()?.status, 503)
        XCTAssertEqual(origin.requests, 0)
        client.close()
        edge.runUntilIdle()
        edge.checkQuiescentCache("after the abandoned fill")
    }

    /// A disk that fails every write: nothing reaches the index, responses are still right, and
    /// each failure is logged.
    /// A reload swaps the origin, the limits and the cache bounds on a running worker: the next
    /// miss goes to the new upstream, the removed upstream's idle connection is closed, the RAM
    /// tier shrinks to its new size, a new connection gets the new header bound, and what was
    /// cached is still served.
    func testReloadSwapsOriginLimitsAndCacheBoundsOnARunningWorker() throws {
        let track = pseudoRandomBytes(100_000, seed: 17)
        let other = pseudoRandomBytes(40_000, seed: 18)
        let edge = try SimulatedEdge(seed: 17, config: Self.config())
        let first = SimulatedOrigin(objects: ["/audio/t.bin": track], seed: 17)
        let second = SimulatedOrigin(objects: ["/audio/u.bin": other], seed: 18)
        edge.sim.serve(port: 9000, first)
        edge.sim.serve(port: 9001, second)
        func get(_ path: String, headers: String = "") -> ClientResponse? {
            let c = edge.connect()
            c.write("GET \(path) HTTP/1.1\r\nHost: x\r\n\(headers)\r\n")
            edge.runUntilIdle()
            var reader = ResponseReader()
            reader.add(c.take())
            c.close()
            edge.runUntilIdle()
            return reader.next()
        }
        let bigHeader = "X-Padding: \(String(repeating: "a", count: 2000))\r\n"
        XCTAssertEqual(get("/audio/t.bin")?.status, 200)
        XCTAssertEqual(get("/audio/t.bin", headers: bigHeader)?.status, 200)
        let origin = try XCTUnwrap(edge.worker.cache?.origin)
        XCTAssertEqual(origin.open, [1], "one keep-alive connection to the first upstream")
        let store = try XCTUnwrap(edge.worker.settings.store)
        XCTAssertEqual(store.stats.ramBytes, track.count)

        let file = FileManager.default.temporaryDirectory.appendingPathComponent("reload-\(UUID()).conf").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        let text = Self.config(ramBytes: 32768, limits: "header_bytes_max = 1024\nrequest_line_bytes_max = 1024")
            .replacingOccurrences(of: "127.0.0.1:9000", with: "127.0.0.1:9001")
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        let control = EdgeControl(settings: edge.worker.settings, configPath: file)
        let result = try control.reload()
        XCTAssertEqual(
            result.applied,
            ["origin.urls", "cache.ram_bytes_limit", "limits.request_line_bytes_max", "limits.header_bytes_max"])
        XCTAssertEqual(result.needsRestart, [])
        XCTAssertLessThanOrEqual(store.stats.ramBytes, 32768, "the RAM tier shrank at once")
        edge.runUntilIdle()   // the worker reads its mail

        XCTAssertEqual(origin.active.map { origin.upstreams[$0].url }, ["http://127.0.0.1:9001"])
        XCTAssertEqual(origin.open.reduce(0, +), 0, "the removed upstream's idle connection was closed")
        let u = try XCTUnwrap(get("/audio/u.bin"))
        Expectation(path: "/audio/u.bin", content: other, range: nil).check(u, "from the new upstream")
        XCTAssertEqual(second.requests, 3)
        let t = try XCTUnwrap(get("/audio/t.bin"))
        Expectation(path: "/audio/t.bin", content: track, range: nil).check(t, "still cached")
        XCTAssertEqual(first.requests, 7, "the old upstream is asked nothing more")
        XCTAssertEqual(get("/audio/t.bin", headers: bigHeader)?.status, 431, "the new header bound")
        edge.checkQuiescentCache("after the reload")
    }

    func testDiskWriteFailuresServeFromRAMAndOrigin() throws {
        let track = pseudoRandomBytes(50_000, seed: 13)
        var faults = SimulatedIO.Faults()
        faults.diskFailurePercent = 100
        let edge = try SimulatedEdge(seed: 13, faults: faults, config: Self.config(ramBytes: 16384))
        edge.sim.serve(port: 9000, SimulatedOrigin(objects: ["/audio/t.bin": track], seed: 13))
        for round in 0..<2 {
            let client = edge.connect()
            client.write("GET /audio/t.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            edge.runUntilIdle()
            var reader = ResponseReader()
            reader.add(client.take())
            guard let r = reader.next() else { return XCTFail("round \(round): no response") }
            Expectation(path: "/audio/t.bin", content: track, range: nil).check(r, "round \(round)")
            client.close()
            edge.runUntilIdle()
        }
        XCTAssertTrue(
            edge.sim.files.keys.filter { $0.hasSuffix(".slice") }.isEmpty, "no slice file survives a failed write")
        XCTAssertTrue(edge.errorLog.contains("cache write failed (open: errno"), edge.errorLog)
        edge.checkQuiescentCache("after failed disk writes")
    }

    /// Seeded runs: origin faults, disk faults, kernel faults, random ranges and clients. A
    /// complete response is exactly right; an error status or a cut connection only happens when
    /// the origin misbehaved or a connection fault struck; everything is released after.
    static func originTLS() throws -> TLSServerContext {
        try TLSServerContext.load(
            certificate: TestCertificate.certificatePath, privateKey: TestCertificate.keyPath, http2: false
        ).get()
    }

    /// One HTTPS origin, short transfers both ways: the handshake, the sealed requests and the
    /// records cut anywhere still give the right bytes, one fetch per slice.
    func testHTTPSOriginUnderShortTransfers() throws {
        let track = pseudoRandomBytes(100_000, seed: 21)
        var faults = SimulatedIO.Faults()
        faults.shortTransferPercent = 50
        let edge = try SimulatedEdge(seed: 21, faults: faults, config: Self.config(https: true))
        let origin = SimulatedOrigin(objects: ["/audio/t.bin": track], seed: 21, tls: try Self.originTLS())
        edge.sim.serve(port: 9000, origin)
        let clients = (0..<3).map { _ in edge.connect() }
        for c in clients { c.write("GET /audio/t.bin HTTP/1.1\r\nHost: x\r\n\r\n") }
        for _ in 0..<20 { edge.runUntilIdle(); edge.advance(milliseconds: 50) }
        for (i, c) in clients.enumerated() {
            var reader = ResponseReader()
            reader.add(c.take())
            guard let r = reader.next() else { return XCTFail("client \(i): no response") }
            Expectation(path: "/audio/t.bin", content: track, range: nil).check(r, "client \(i)")
        }
        XCTAssertEqual(origin.requests, (track.count + 16383) / 16384, "one origin request per slice")
        XCTAssertGreaterThan(origin.handshakes, 0)
        for c in clients { c.close() }
        edge.runUntilIdle()
        edge.checkQuiescentCache("after the HTTPS fetches")
    }

    func testSeededCacheRuns() throws {
        var responses = 0, errors = 0, cuts = 0, originFaults = 0, promoted = 0, promotionsFailed = 0
        var httpsRuns = 0, handshakes = 0
        var faultCounts: [String: Int] = [:]
        let seeds = simulationSeeds(default: 1000)
        for seed in seeds {
            recordSeed("SimulatedCacheTests", seed)
            let failuresBefore = testRun?.totalFailureCount ?? 0
            var random = SplitMix64(seed: seed)
            var objects: [String: [UInt8]] = [:]
            for i in 0..<3 {
                objects["/audio/c\(i).bin"] = pseudoRandomBytes(
                    [1, 16384, 40_000, 120_000][random.next(below: 4)], seed: seed &+ UInt64(i))
            }
            var faults = SimulatedIO.Faults()
            faults.shortTransferPercent = [0, 30][random.next(below: 2)]
            faults.retryPercent = [0, 10][random.next(below: 2)]
            faults.delayMicrosecondsMax = [0, 300][random.next(below: 2)]
            faults.diskFailurePercent = [0, 0, 20][random.next(below: 3)]
            faults.resetPercent = random.next(below: 5) == 0 ? 1 : 0
            // Slice files that fail to read: a disk hit cut, a promotion dropped and refetched.
            faults.readFailurePercent = [0, 0, 5][random.next(below: 3)]
            // A third of the runs fetch over HTTPS (drawn apart, so the other draws stay as they were).
            var tlsDraw = SplitMix64(seed: seed ^ 0x7E57_0000)
            let https = tlsDraw.next(below: 3) == 0
            let origin = SimulatedOrigin(
                objects: objects, seed: seed, faultPercent: [0, 0, 10][random.next(below: 3)],
                tls: https ? try Self.originTLS() : nil)
            let edge = try SimulatedEdge(
                seed: seed, faults: faults,
                config: Self.config(
                    ramBytes: [16384, 65536, 1 << 20][random.next(below: 3)],
                    diskBytes: [49152, 100_000_000][random.next(below: 2)], https: https))
            if https { httpsRuns += 1 }
            edge.sim.serve(port: 9000, origin)
            var clients: [(peer: SimulatedIO.Peer, expected: [Expectation], reader: ResponseReader, received: Int)] = []
            for _ in 0..<(1 + random.next(below: 4)) {
                var expected: [Expectation] = []
                for _ in 0..<(1 + random.next(below: 3)) {
                    let path = objects.keys.sorted()[random.next(below: objects.count)]
                    let size = objects[path]!.count
                    let first = random.next(below: size + 1000)
                    let range: String? =
                        random.next(below: 3) == 0 ? nil : "bytes=\(first)-\(first + random.next(below: 60_000))"
                    expected.append(Expectation(path: path, content: objects[path], range: range))
                }
                let peer = edge.connect()
                peer.write(expected.map(\.request).joined())
                clients.append((peer, expected, ResponseReader(), 0))
            }
            for _ in 0..<200
            where clients.contains(where: {
                $0.received < $0.expected.count && !$0.peer.closedByServer && !$0.peer.wasReset
            }) {
                edge.runUntilIdle()
                edge.advance(milliseconds: 100)   // origin timeouts and retries run on the virtual clock
            }
            edge.runUntilIdle()
            let lossy = origin.faults > 0 || faults.resetPercent > 0
            for i in clients.indices {
                clients[i].reader.add(clients[i].peer.take())
                while clients[i].received < clients[i].expected.count, let r = clients[i].reader.next() {
                    let e = clients[i].expected[clients[i].received]
                    if r.status >= 500 {
                        XCTAssertTrue(lossy, "seed \(seed): \(r.status) with a well-behaved origin and network")
                        errors += 1
                    } else {
                        e.check(r, "seed \(seed), client \(i), response \(clients[i].received)")
                    }
                    clients[i].received += 1
                    responses += 1
                }
                if clients[i].received < clients[i].expected.count {
                    XCTAssertTrue(
                        lossy,
                        "seed \(seed): client \(i) got \(clients[i].received) of \(clients[i].expected.count) responses"
                    )
                    let partial = clients[i].reader.buffer
                    if let end = partial.firstRange(of: Array("\r\n\r\n".utf8)),
                        partial.starts(with: Array("HTTP/1.1 20".utf8))
                    {
                        let body = Array(partial[end.upperBound...]),
                            right = clients[i].expected[clients[i].received].body
                        XCTAssertTrue(
                            body.count <= right.count && body == Array(right.prefix(body.count)),
                            "seed \(seed): wrong bytes in a cut response")
                    }
                    cuts += 1
                }
                if !clients[i].peer.wasReset { clients[i].peer.close() }
            }
            edge.runUntilIdle()
            edge.advance(milliseconds: 2000)   // idle origin connections and their timers settle
            edge.checkQuiescentCache("seed \(seed)")
            originFaults += origin.faults
            handshakes += origin.handshakes
            promoted += edge.worker.cache?.promoter.promoted ?? 0
            promotionsFailed += edge.worker.cache?.promoter.damaged ?? 0
            for (k, v) in edge.sim.injected { faultCounts[k, default: 0] += v }
            if (testRun?.totalFailureCount ?? 0) > failuresBefore {
                print(
                    "simulation: seed \(seed) failed; reproduce with EDGE_SIM_SEED=\(seed) swift test --filter SimulatedCacheTests"
                )
                return
            }
        }
        print(
            "simulation: \(seeds.count) cache runs (\(httpsRuns) to an HTTPS origin, \(handshakes) TLS handshakes), "
                + "\(responses) responses (\(errors) origin errors passed on), \(cuts) cut, "
                + "\(originFaults) origin faults, \(promoted) slices promoted to RAM (\(promotionsFailed) files dropped); "
                + "kernel faults: \(faultCounts.sorted { $0.key < $1.key })")
    }
}

extension SimulatedEdge {
    /// `checkQuiescent` for cache mode: idle origin connections keep a receive each (it notices
    /// the origin closing them), so those are in flight too.
    func checkQuiescentCache(_ context: String, file: StaticString = #filePath, line: UInt = #line) {
        let idleOrigin = worker.cache?.origin.idle.reduce(0) { $0 + $1.count } ?? 0
        XCTAssertEqual(worker.liveConnections, 0, "live connections, \(context)", file: file, line: line)
        XCTAssertEqual(
            worker.readPool.outstanding, 0, "read buffers not given back, \(context)", file: file, line: line)
        XCTAssertTrue(
            (worker.cache?.parked.isEmpty ?? true), "requests still parked, \(context)", file: file, line: line)
        XCTAssertEqual(
            worker.cache?.writer.inFlight ?? 0, 0, "disk writes in flight, \(context)", file: file, line: line)
        XCTAssertFalse(
            !(worker.cache?.writer.unlinks.isEmpty ?? true), "slice unlinks in flight, \(context)",
            file: file, line: line)
        XCTAssertEqual(worker.cache?.store.stats.fills ?? 0, 0, "fills in progress, \(context)", file: file, line: line)
        XCTAssertEqual(
            worker.cache?.promoter.inFlight ?? 0, 0, "promotions in flight, \(context)", file: file, line: line)
        XCTAssertEqual(
            sim.operationsInFlight, 3 + idleOrigin, "operations in flight: \(sim.inFlightDescription), \(context)",
            file: file, line: line)
    }
}
