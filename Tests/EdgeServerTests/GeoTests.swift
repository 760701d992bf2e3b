import EdgeAuthToken
import EdgeConfig
import EdgeIO
@testable import EdgeServer
import Foundation
import XCTest

/// Regional licensing: the MaxMind DB as libmaxminddb reads it (the fixture made by
/// Fixtures/make_geo_fixture.py), the checks that refuse damaged files, and a worker on the
/// simulated kernel deciding by its peers' addresses.
final class GeoTests: XCTestCase {
    static let fixture = TestCertificate.directory + "/geo-test.mmdb"
    let us = CountryCode("US")!, de = CountryCode("DE")!

    func open(_ path: String, bytesMax: Int = 1 << 20) -> Result<GeoDatabase, GeoDatabase.OpenError> {
        GeoDatabase.open(path: path, bytesMax: bytesMax)
    }

    func temporaryFile(_ bytes: [UInt8]) throws -> String {
        let path = NSTemporaryDirectory() + "geo-\(UUID().uuidString).mmdb"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    func testLookups() throws {
        let db = try open(Self.fixture).get()
        XCTAssertEqual(db.lookup("192.0.2.10"), .country(us))
        XCTAssertEqual(db.lookup("192.0.2.20"), .country(de))
        XCTAssertEqual(db.lookup("::ffff:192.0.2.20"), .country(de), "a dual-stack listener's IPv4 peer")
        XCTAssertEqual(db.lookup("192.0.2.30"), .unknown, "a record without a country")
        XCTAssertEqual(db.lookup("10.1.2.3"), .unknown, "not in the database")
        XCTAssertEqual(db.lookup("203.0.113.77"), .country(CountryCode("JP")!), "the registered country stands in")
        XCTAssertEqual(db.lookup("2001:db8:5::1"), .country(CountryCode("FR")!))
        XCTAssertEqual(db.lookup("not an address"), .notAnAddress)
        XCTAssertEqual(db.databaseType, "Edge-Test-Country")
        XCTAssertEqual(db.ipVersion, 6)
        XCTAssertEqual(db.countryRecords, 5)
    }

    /// Each damaged file is refused with a message that names the file and says what is wrong.
    func testDamagedFilesAreRefused() throws {
        let good = Array(try Data(contentsOf: URL(fileURLWithPath: Self.fixture)))
        var tree = good
        for i in 0..<6 { tree[i] = 0xFF }   // node 0's records point past the data section
        let cases: [(String, [UInt8], String)] = [
            ("truncated", Array(good.prefix(good.count / 2)), "invalid metadata"),
            ("empty", [], "is empty"),
            ("noise", pseudoRandomBytes(4096, seed: 7), "invalid metadata"),
            ("tree", tree, "search tree node 0 points outside the data section"),
        ]
        for (name, bytes, reason) in cases {
            let path = try temporaryFile(bytes)
            guard case .failure(let e) = open(path) else { XCTFail("\(name) accepted"); continue }
            XCTAssertTrue(e.description.contains(path), "\(name): \(e)")
            XCTAssertTrue(e.description.contains(reason), "\(name): \(e)")
        }
        guard case .failure(let big) = open(Self.fixture, bytesMax: 1024) else { return XCTFail("over the bound") }
        XCTAssertTrue(big.description.contains("over geo.database_bytes_max"), "\(big)")
        guard case .failure(let missing) = open("/nonexistent/geo.mmdb") else { return XCTFail("missing file") }
        XCTAssertTrue(missing.description.contains("No such file"), "\(missing)")
        guard case .failure(let dir) = open(NSTemporaryDirectory()) else { return XCTFail("a directory") }
        XCTAssertTrue(dir.description.contains("not a regular file"), "\(dir)")
    }

    /// The workers read a private copy: overwriting the operator's file in place (or truncating
    /// it, which would fault a mapping of it) changes nothing until the next open.
    func testOverwritingTheFileChangesNothingUntilReopened() throws {
        let good = Array(try Data(contentsOf: URL(fileURLWithPath: Self.fixture)))
        let path = try temporaryFile(good)
        let db = try open(path).get()
        XCTAssertTrue(db.isCurrent(path: path))
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: path))
        try handle.truncate(atOffset: 10)
        try handle.close()
        XCTAssertEqual(db.lookup("192.0.2.20"), .country(de))
        XCTAssertFalse(db.isCurrent(path: path), "a reload will reopen it")
    }

    // MARK: a worker deciding

    static func config(_ geo: String) -> String {
        """
        [server]
        listen = ["127.0.0.1:8080"]
        [token]
        key_hex = "00112233445566778899aabbccddeeff"
        [origin]
        urls = ["file:///srv/origin"]
        [geo]
        database = "\(fixture)"
        trusted_proxies = ["198.51.100.0/24"]
        \(geo)
        """
    }

    func token(regions: String?) -> String {
        EdgeAuthToken.sign(
            key: EdgeAuthKey(hex: "00112233445566778899aabbccddeeff")!, acl: ["/audio/*"], expiry: 1_800_000_600,
            data: regions.map { "geo=" + $0 })
    }

    /// Statuses of one request per (peer, token, X-Forwarded-For), each on its own connection,
    /// and the access log's token verdicts in order.
    func run(
        _ geo: String, _ requests: [(from: String, regions: String?, forwardedFor: String?)]
    ) throws -> (
        [Int], [String]
    ) {
        let edge = try SimulatedEdge(
            seed: 11, config: Self.config(geo), files: ["/srv/origin/audio/a.bin": pseudoRandomBytes(1000, seed: 1)])
        var statuses: [Int] = []
        for r in requests {
            let client = edge.connect(from: r.from)
            let forwarded = r.forwardedFor.map { "X-Forwarded-For: \($0)\r\n" } ?? ""
            client.write(
                "GET /audio/a.bin?hdnts=\(token(regions: r.regions)) HTTP/1.1\r\nHost: x\r\nRange: bytes=0-99\r\n\(forwarded)\r\n"
            )
            edge.runUntilIdle()
            var reader = ResponseReader()
            reader.add(client.take())
            statuses.append(reader.next()?.status ?? 0)
            client.close()
            edge.runUntilIdle()
        }
        let verdicts = edge.accessLog.split(separator: "\n").map { line -> String in
            guard let r = line.range(of: "\"token\":\"") else { return "?" }
            return String(line[r.upperBound...].prefix(while: { $0 != "\"" }))
        }
        edge.checkQuiescent("after the geo requests")
        return (statuses, verdicts)
    }

    func testWorkerDecidesByThePeersCountry() throws {
        let (statuses, verdicts) = try run(
            "",
            [
                ("192.0.2.10", "US,CA", nil),   // US: licensed
                ("192.0.2.20", "US,CA", nil),   // DE: not
                ("192.0.2.20", "DE", nil),
                ("192.0.2.20", "*", nil),
                ("192.0.2.20", nil, nil),   // no claim, not required
                ("10.9.9.9", "US", nil),   // unknown: allowed by default
                ("192.0.2.20", "US", "192.0.2.10"),   // an untrusted peer's X-Forwarded-For is ignored
                ("198.51.100.7", "US", "192.0.2.10"),   // a trusted proxy's is believed
                ("198.51.100.7", "US", "192.0.2.20"),
                ("198.51.100.7", "US", "192.0.2.20, 192.0.2.10"),   // the hop nearest us decides
                ("198.51.100.7", "US", nil),   // the proxy's own country (GB)
            ])
        XCTAssertEqual(statuses, [206, 403, 206, 206, 206, 206, 403, 206, 403, 206, 403])
        XCTAssertEqual(verdicts, ["ok", "geo", "ok", "ok", "ok", "ok", "geo", "ok", "geo", "ok", "geo"])
    }

    func testUnknownDeniedAndClaimRequired() throws {
        let (statuses, verdicts) = try run(
            "unknown = \"deny\"\nrequire_claim = true",
            [
                ("10.9.9.9", "US", nil), ("192.0.2.30", "US", nil), ("10.9.9.9", "*", nil), ("192.0.2.10", nil, nil),
                ("192.0.2.10", "US", nil),
            ])
        XCTAssertEqual(statuses, [403, 403, 206, 403, 206])
        XCTAssertEqual(verdicts, ["geo", "geo", "ok", "geo", "ok"])
    }

    /// The country is looked up once per connection: requests on one connection reuse it.
    func testOneLookupPerConnection() throws {
        let edge = try SimulatedEdge(
            seed: 12, config: Self.config(""), files: ["/srv/origin/audio/a.bin": pseudoRandomBytes(1000, seed: 1)])
        let client = edge.connect(from: "192.0.2.20")
        let request = "GET /audio/a.bin?hdnts=\(token(regions: "DE")) HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\n\r\n"
        client.write(request + request + request)
        edge.runUntilIdle()
        var reader = ResponseReader()
        reader.add(client.take())
        for i in 0..<3 { XCTAssertEqual(reader.next()?.status, 206, "request \(i)") }
        let c = try XCTUnwrap(edge.worker.connections.first { $0.client == "192.0.2.20" })
        XCTAssertTrue(c.geoLooked)
        XCTAssertEqual(c.geoCountry, de)
        client.close()
        edge.runUntilIdle()
        XCTAssertFalse(c.geoLooked, "a reused slot forgets its last client's country")
        edge.checkQuiescent("after one connection")
    }

    func testOperatorsExplanation() throws {
        let gate = try XCTUnwrap(try GeoGate.open(try EdgeConfig.parse(Self.config("")).geo))
        let deny = gate.explain(peer: "192.0.2.20", forwardedFor: nil, claim: RegionClaim(value: "US,CA"))
        XCTAssertEqual(deny.verdict, .geo)
        XCTAssertEqual(deny.answer, .country(de))
        XCTAssertEqual(deny.reason, "DE is not in the claim CA,US")
        let proxied = gate.explain(peer: "198.51.100.9", forwardedFor: "192.0.2.10", claim: RegionClaim(value: "US"))
        XCTAssertEqual(proxied.addressUsed, "192.0.2.10")
        XCTAssertTrue(proxied.trustedProxy)
        XCTAssertEqual(proxied.verdict, .ok)
    }
}
