import EdgeIO
@testable import EdgeServer
import XCTest

/// Origin-directory bodies sent from a file's mapping (see `FileMapping`): on cleartext with no
/// file read at all; read through the ring instead over TLS, above `mapped_file_bytes_max`, when
/// the mapping cannot be made, and for ranges whose pages are not in the page cache. Every
/// response is checked byte for byte; `checkQuiescent` checks that no mapping outlives its file's
/// table entry.
final class SimulatedFileMappingTests: XCTestCase {
    static let track = pseudoRandomBytes(300_000, seed: 61)
    static let small = pseudoRandomBytes(100_000, seed: 62)

    /// Three responses from the 300,000-byte track. In 16 KiB steps they are 19 + 5 + 1 chunks.
    static let requests = [
        Expectation(path: "/audio/a.bin", content: track, range: nil),
        Expectation(path: "/audio/a.bin", content: track, range: "bytes=1000-70999"),
        Expectation(path: "/audio/a.bin", content: track, range: "bytes=-10"),
    ]
    static let chunksOfRequests = 19 + 5 + 1

    func edge(
        seed: UInt64, faults: SimulatedIO.Faults = .init(), limits: String = "", tls: Bool = false
    ) throws
        -> SimulatedEdge
    {
        try SimulatedEdge(
            seed: seed, faults: faults,
            config: SimulatedHTTP1Tests.config(limits: "read_chunk_bytes = 16384\n" + limits),
            files: ["/srv/origin/audio/a.bin": Self.track, "/srv/origin/audio/small.bin": Self.small], tls: tls)
    }

    /// Sends `expected` pipelined on `client` and checks every response.
    func fetch(_ edge: SimulatedEdge, _ client: any ClientPipe, _ expected: [Expectation]) {
        client.write(expected.map(\.request).joined())
        var reader = ResponseReader()
        for _ in 0..<8 {   // a TLS handshake and the responses take a few rounds
            edge.runUntilIdle()
            reader.add(client.take())
        }
        for (i, e) in expected.enumerated() {
            guard let r = reader.next() else { return XCTFail("response \(i) missing") }
            e.check(r, "response \(i)")
        }
    }

    /// Fetches `expected` on one connection (TLS when asked), closes it and checks that nothing
    /// is left; returns the file reads the simulated kernel performed and the mappings still live
    /// (those the file table's entries hold).
    func served(
        _ edge: SimulatedEdge, _ expected: [Expectation], tls: Bool = false, _ context: String
    ) throws
        -> (reads: Int, liveMappings: Int)
    {
        let client: any ClientPipe = tls ? try edge.connectTLS() : edge.connect()
        fetch(edge, client, expected)
        client.close()
        edge.runUntilIdle()
        edge.checkQuiescent(context)
        return (edge.sim.fileReads, edge.sim.liveMappings)
    }

    func testCleartextBodiesAreSentFromTheMappingWithNoRead() throws {
        let (reads, mappings) = try served(try edge(seed: 61), Self.requests, "after the mapped responses")
        XCTAssertEqual(reads, 0, "every chunk was sent from the mapping")
        XCTAssertEqual(mappings, 1, "one mapping for the file, whatever the responses")
    }

    func testTLSBodiesAreReadNotMapped() throws {
        let (reads, mappings) = try served(
            try edge(seed: 62, tls: true), Self.requests, tls: true, "after the TLS responses")
        XCTAssertEqual(reads, Self.chunksOfRequests, "TLS seals in user space: the bytes are read")
        XCTAssertEqual(mappings, 0)
    }

    func testPagesOutOfThePageCacheAreReadThroughTheRing() throws {
        var faults = SimulatedIO.Faults()
        faults.pageCacheMissPercent = 100
        let (reads, mappings) = try served(
            try edge(seed: 63, faults: faults), Self.requests, "after the non-resident responses")
        XCTAssertEqual(reads, Self.chunksOfRequests, "no chunk was resident: each one was read")
        XCTAssertEqual(mappings, 1, "the mapping was made, then not sent from")
    }

    func testAFileThatCannotBeMappedIsRead() throws {
        var faults = SimulatedIO.Faults()
        faults.mapFailurePercent = 100
        let edge = try edge(seed: 64, faults: faults)
        let (reads, mappings) = try served(edge, Self.requests, "after a failed mapping")
        XCTAssertEqual(reads, Self.chunksOfRequests)
        XCTAssertEqual(mappings, 0)
        XCTAssertEqual(edge.sim.injected["map ENOMEM"], 1, "a failed mapping is not tried again per body")
    }

    /// A small file found wholly in the page cache is not asked about again for
    /// `page_cache_check_milliseconds`; 0 asks for every chunk.
    func testAHotFileIsCheckedOncePerPageCacheCheckPeriod() throws {
        let hot = try edge(seed: 69, limits: "page_cache_check_milliseconds = 100")
        _ = try served(hot, Self.requests, "within one period")
        XCTAssertEqual(hot.sim.residencyChecks, 1, "one check served all \(Self.chunksOfRequests) chunks")
        hot.advance(milliseconds: 50)
        _ = try served(hot, Self.requests, "still within the period")
        XCTAssertEqual(hot.sim.residencyChecks, 1)
        hot.advance(milliseconds: 60)
        _ = try served(hot, Self.requests, "in the next period")
        XCTAssertEqual(hot.sim.residencyChecks, 2, "checked again once the period was over")

        let everyChunk = try edge(seed: 70, limits: "page_cache_check_milliseconds = 0")
        _ = try served(everyChunk, Self.requests, "checking every chunk")
        XCTAssertEqual(everyChunk.sim.residencyChecks, Self.chunksOfRequests)
        XCTAssertEqual(everyChunk.sim.fileReads, 0)
    }

    /// The bound: the 300,000-byte file is above it and read, the 100,000-byte one below it and
    /// mapped; 0 maps nothing.
    func testMappedFileBytesMaxBoundsWhatIsMapped() throws {
        let both = Self.requests + [Expectation(path: "/audio/small.bin", content: Self.small, range: nil)]
        let bounded = try served(
            try edge(seed: 65, limits: "mapped_file_bytes_max = 299999"), both, "with a bound between the files")
        XCTAssertEqual(bounded.reads, Self.chunksOfRequests, "only the file above the bound was read")
        XCTAssertEqual(bounded.liveMappings, 1, "the file at or below the bound was mapped")
        let never = try served(try edge(seed: 66, limits: "mapped_file_bytes_max = 0"), both, "with mapping off")
        XCTAssertEqual(never.reads, Self.chunksOfRequests + 7, "0: every file is read (100,000 B = 7 chunks)")
        XCTAssertEqual(never.liveMappings, 0)
    }

    /// A file's entry is replaced when it is revalidated: its mapping goes with it, even while a
    /// response still sends from it (the response's pieces keep it until they are sent).
    func testAMappingIsUnmappedWhenItsEntryAndLastPieceAreGone() throws {
        let edge = try edge(
            seed: 67, limits: "open_file_revalidate_milliseconds = 1000\noutput_buffer_bytes_max = 16384")
        let slow = edge.connect()
        slow.windowBytes = 20_000   // the whole-track response stalls with mapped pieces queued
        slow.write(Self.requests[0].request)
        edge.runUntilIdle()
        XCTAssertEqual(edge.sim.liveMappings, 1)
        edge.advance(milliseconds: 1500)   // past revalidation, within the send timeout
        let fresh = edge.connect()
        fetch(edge, fresh, [Self.requests[1]])
        XCTAssertEqual(edge.sim.liveMappings, 2, "the new entry maps afresh; the stalled response keeps the old")
        var reader = ResponseReader()
        for _ in 0..<100 where edge.sim.liveMappings > 1 {
            reader.add(slow.take())   // reading opens the window: the rest flows
            edge.runUntilIdle()
        }
        reader.add(slow.take())
        Self.requests[0].check(try XCTUnwrap(reader.next()), "the stalled response, sent across the revalidation")
        XCTAssertEqual(edge.sim.liveMappings, 1, "the old mapping went with its last piece")
        slow.close()
        fresh.close()
        edge.runUntilIdle()
        edge.checkQuiescent("after revalidation")
        XCTAssertEqual(edge.sim.fileReads, 0)
    }

    /// A file truncated under a response sent from its mapping: the send that reaches past the
    /// new end fails with EFAULT (the simulated kernel does what the real one does), the response
    /// is cut with only the file's bytes sent, and the worker goes on serving.
    func testAFileTruncatedUnderAResponseCutsIt() throws {
        let edge = try edge(seed: 68, limits: "output_buffer_bytes_max = 65536")
        let slow = edge.connect()
        slow.windowBytes = 20_000
        slow.write(Self.requests[0].request)
        edge.runUntilIdle()
        edge.sim.files["/srv/origin/audio/a.bin"]!.bytes.removeLast(300_000 - 16384)   // to a page boundary
        var received: [UInt8] = []
        for _ in 0..<100 where !slow.closedByServer {
            received += slow.take()
            edge.runUntilIdle()
        }
        received += slow.take()
        XCTAssertTrue(slow.closedByServer, "the response was cut")
        XCTAssertEqual(edge.worker.truncatedFileSends, 1, "one send failed with EFAULT, and was not a trap")
        let head = try XCTUnwrap(received.firstRange(of: Array("\r\n\r\n".utf8)))
        let body = Array(received[head.upperBound...])
        XCTAssertTrue(
            body.count > 16384 && body.count < 20_000,
            "cut after what the window let through (the headers took the rest)")
        XCTAssertTrue(body == Array(Self.track.prefix(body.count)), "only the file's bytes were sent")
        let next = edge.connect()
        next.write("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        edge.runUntilIdle()
        var reader = ResponseReader()
        reader.add(next.take())
        XCTAssertEqual(reader.next()?.status, 200, "the worker goes on serving")
        next.close()
        edge.runUntilIdle()
        edge.checkQuiescent("after a truncated file")
    }
}
