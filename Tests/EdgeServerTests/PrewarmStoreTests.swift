import XCTest
import Synchronization
@testable import EdgeServer

/// Pre-warm in the cache index: one fetch per slice shared with players, pins that survive any
/// pressure within `pinned_bytes_max`, tickets answered exactly once.
final class PrewarmStoreTests: XCTestCase {
    let slice = 65536

    func store(disk: Int, pinned: Int) -> SliceStore {
        SliceStore(
            config: (directory: "/nonexistent", sliceBytes: slice, fillsMax: 64, ramBytes: 4 * slice, diskBytes: disk),
            objectBytesMax: 1 << 32, pinnedBytesMax: pinned)
    }

    final class Outcomes: @unchecked Sendable {
        let list = Mutex<[PrewarmOutcome]>([])
        func ticket() -> PrewarmTicket { PrewarmTicket { o in self.list.withLock { $0.append(o) } } }
        var all: [PrewarmOutcome] { list.withLock { $0 } }
    }

    /// Completes a fill the way the origin client and the slice writer do; the disk write lands.
    func land(_ s: SliceStore, _ f: Fill, size: Int = 65536) {
        let m = ObjectMeta(size: size, etag: "\"e\"", lastModified: "", contentType: "audio/ogg", storedAtSeconds: 0)
        XCTAssertNotNil(s.recordMeta(f, m))
        f.meta = m
        f.length = min(slice, size - f.key.index * slice)
        let done = s.completeFill(f)
        if let o = done.ticketOutcome { for t in done.tickets { t.report(o) } }
        if done.writeToDisk {
            let (_, tickets) = s.diskWritten(
                f, DiskSlice(relativePath: "\(f.key.path)/\(f.key.index)", dataOffset: 4096, length: f.length))
            for t in tickets { t.report(.cached(bytes: f.length)) }
        }
    }

    func testPrewarmStartsOneFillThatPlayersJoinAndPinsIt() {
        let s = store(disk: 8 * slice, pinned: 4 * slice)
        let out = Outcomes()
        let k = SliceKey(path: "/audio/a/1.opus", index: 0)
        guard case .started(let f) = s.prewarm(k, pinUntilSeconds: 1000, ticket: out.ticket(), worker: 0) else {
            return XCTFail("expected a new fill")
        }
        guard case .filling(let joined) = s.lookup(k, worker: 1), joined === f else {
            return XCTFail("a player must join the pre-warm's fill")
        }
        guard case .joined = s.prewarm(k, pinUntilSeconds: 2000, ticket: out.ticket(), worker: 1) else {
            return XCTFail("a second job must join too")
        }
        land(s, f)
        XCTAssertEqual(out.all, [.cached(bytes: slice), .cached(bytes: slice)], "each ticket answered once")
        XCTAssertEqual(s.figures.pinnedBytes, slice)
        guard case .done(.cached(let bytes)) = s.prewarm(k, pinUntilSeconds: 1500, ticket: out.ticket(), worker: 0)
        else { return XCTFail("on disk: answered at once") }
        XCTAssertEqual(bytes, slice)
        XCTAssertEqual(out.all.count, 2, "an answer given at once does not call the ticket")
    }

    func testPinnedSlicesSurvivePressureAndExpire() {
        let s = store(disk: 8 * slice, pinned: 4 * slice)
        let out = Outcomes()
        for i in 0..<4 {
            guard
                case .started(let f) = s.prewarm(
                    SliceKey(path: "/audio/drop/\(i)", index: 0), pinUntilSeconds: 1000, ticket: out.ticket(), worker: 0
                )
            else { return XCTFail() }
            land(s, f)
        }
        // 200 other slices through a disk tier of 8: only the 4 unpinned places turn over.
        for i in 0..<200 {
            let k = SliceKey(path: "/audio/other/\(i)", index: 0)
            guard case .startFill(let f) = s.lookup(k, worker: 0) else { return XCTFail() }
            land(s, f)
        }
        for i in 0..<4 {
            let k = SliceKey(path: "/audio/drop/\(i)", index: 0)
            XCTAssertNotNil(s.state.withLock { $0.disk[k] }, "pinned slice \(i) was evicted")
        }
        s.expirePins(nowSeconds: 999)
        XCTAssertEqual(s.figures.pinnedBytes, 4 * slice)
        s.expirePins(nowSeconds: 1000)
        XCTAssertEqual(s.figures.pinnedBytes, 0, "pins end at pin_until")
    }

    func testPinBudgetRefusesWhatWouldExceedIt() {
        let s = store(disk: 8 * slice, pinned: 2 * slice)
        let out = Outcomes()
        for i in 0..<3 {
            guard
                case .started(let f) = s.prewarm(
                    SliceKey(path: "/audio/b/\(i)", index: 0), pinUntilSeconds: 1000, ticket: out.ticket(), worker: 0)
            else { return XCTFail() }
            land(s, f)
        }
        XCTAssertEqual(out.all.prefix(2), [.cached(bytes: slice), .cached(bytes: slice)])
        guard case .failed(let why) = out.all[2] else { return XCTFail("\(out.all)") }
        XCTAssertTrue(why.contains("pin budget exceeded"), why)
        XCTAssertEqual(s.figures.pinnedBytes, 2 * slice)
    }

    func testFailedAndPurgedFillsAnswerTheirTickets() {
        let s = store(disk: 8 * slice, pinned: 4 * slice)
        let out = Outcomes()
        guard
            case .started(let f) = s.prewarm(
                SliceKey(path: "/audio/x/0", index: 0), pinUntilSeconds: 0, ticket: out.ticket(), worker: 0)
        else { return XCTFail() }
        for t in s.failFill(f) { t.report(.originStatus(404)) }
        guard
            case .started(let g) = s.prewarm(
                SliceKey(path: "/audio/x/1", index: 0), pinUntilSeconds: 0, ticket: out.ticket(), worker: 0)
        else { return XCTFail() }
        XCTAssertEqual(s.purge(prefix: "/audio/x/").fillsAbandoned, 1)
        land(s, g)
        XCTAssertEqual(out.all.count, 2)
        XCTAssertEqual(out.all[0], .originStatus(404))
        guard case .failed(let why) = out.all[1] else { return XCTFail() }
        XCTAssertTrue(why.contains("purged"), why)
        XCTAssertEqual(s.figures.diskSlices, 0, "a purged fill stores nothing")
    }

    func testReloadAppliesAllButRestartOnlySettingsAndNamesThem() throws {
        XCTAssertEqual(EdgeControl.snakeCase("transitionKeyHex"), "transition_key_hex")
        XCTAssertEqual(EdgeControl.snakeCase("listenTLS"), "listen_tls")
        let old = try EdgeConfig.parse(Self.configText(Self.baseSections))
        var fresh = old
        fresh.token.keyHex = String(repeating: "ab", count: 32)
        fresh.server.http2 = false
        fresh.server.workers = 7
        fresh.origin.urls = ["http://127.0.0.1:9001"]
        fresh.origin.upstreams = [try XCTUnwrap(Upstream.parse("http://127.0.0.1:9001"))]
        fresh.origin.attemptsMax = 5
        fresh.cache.directory = "/elsewhere"
        fresh.cache.ramBytesLimit = 1 << 20
        fresh.limits.ringEntries = 128
        fresh.limits.headerBytesMax = 4096
        fresh.limits.keepAliveTimeoutMilliseconds = 1000
        fresh.admin.prewarmJobsMax = 3
        let next = try EdgeControl.keepingRestartOnly(of: old, in: fresh)
        XCTAssertEqual(
            EdgeControl.changedKeys(old, next),
            [
                "server.http2", "token.key_hex", "origin.urls", "origin.attempts_max", "cache.ram_bytes_limit",
                "limits.header_bytes_max", "limits.keepalive_timeout_milliseconds", "admin.prewarm_jobs_max",
            ])
        XCTAssertEqual(EdgeControl.changedKeys(next, fresh), ["server.workers", "cache.dir", "limits.ring_entries"])
        XCTAssertEqual(next.origin.upstreams.map(\.url), ["http://127.0.0.1:9001"])
        // The kind of origin stays: a directory does not become HTTP upstreams (no cache to fill).
        var directory = old
        directory.origin.urls = ["file:///srv/audio"]
        directory.origin.upstreams = []
        let kept = try EdgeControl.keepingRestartOnly(of: old, in: directory)
        XCTAssertEqual(kept.origin.upstreams, old.origin.upstreams)
        XCTAssertEqual(EdgeControl.changedKeys(kept, directory), ["origin.urls"])
        // A reloadable setting that breaks a rule with a restart-only one: refused, named.
        var small = old
        small.limits.readChunkBytes = 16384
        small.limits.outputBufferBytesMax = 32768
        XCTAssertThrowsError(try EdgeControl.keepingRestartOnly(of: old, in: small)) {
            XCTAssertEqual(($0 as? ConfigError)?.key, "limits.output_buffer_bytes_max")
        }
    }

    /// Every field a reload compares names a key the file accepts: set to a value of the wrong
    /// type, the parser names that key, never "unknown key".
    func testEveryReloadedFieldNamesAKeyOfTheFile() throws {
        let c = EdgeConfig()
        let sections: [(String, Any)] = [
            ("server", c.server), ("token", c.token), ("origin", c.origin), ("cache", c.cache),
            ("limits", c.limits), ("admin", c.admin),
        ]
        var checked = 0
        for (section, value) in sections {
            for child in Mirror(reflecting: value).children {
                guard let key = EdgeControl.configKey(section: section, field: child.label!) else { continue }
                var sections = Self.baseSections
                sections[section, default: [:]][String(key.dropFirst(section.count + 1))] = "{ wrong = 1 }"
                XCTAssertThrowsError(try EdgeConfig.parse(Self.configText(sections)), key) {
                    let e = $0 as? ConfigError
                    XCTAssertEqual(e?.key, key)
                    XCTAssertNotEqual(e?.reason, "unknown key", key)
                }
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 60)
    }

    static let baseSections: [String: [String: String]] = [
        "server": ["listen": "[\"127.0.0.1:8080\"]"],
        "token": ["key_hex": "\"\(String(repeating: "00", count: 32))\""],
        "origin": ["urls": "[\"http://127.0.0.1:9000\"]"],
        "cache": ["dir": "\"/tmp/edge-cache\""],
        "limits": [:],
        "admin": ["listen": "[\"127.0.0.1:9090\"]", "token": "\"0123456789abcdef0123\""],
    ]

    static func configText(_ sections: [String: [String: String]]) -> String {
        sections.sorted { $0.key < $1.key }.map { name, keys in
            "[\(name)]\n" + keys.sorted { $0.key < $1.key }.map { "\($0.key) = \($0.value)\n" }.joined()
        }.joined(separator: "\n")
    }
}

import EdgeConfig

enum EdgeConfig_TestSupport {
    static var base: EdgeConfig {
        var c = EdgeConfig()
        c.token.keyHex = String(repeating: "00", count: 32)
        return c
    }
}
