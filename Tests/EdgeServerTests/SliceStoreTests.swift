import XCTest
@testable import EdgeServer
import EdgeHTTP
import EdgeEncoding

/// The shared cache index, driven directly: it must stay bounded by what the tiers hold, never
/// grow with the number of objects ever fetched or fills ever failed.
final class SliceStoreTests: XCTestCase {
    let slice = 65536

    func store(ram: Int, disk: Int) -> SliceStore {
        SliceStore(
            config: (directory: "/nonexistent", sliceBytes: slice, fillsMax: 64, ramBytes: ram, diskBytes: disk),
            objectBytesMax: 1 << 32)
    }

    func meta(_ size: Int) -> ObjectMeta {
        ObjectMeta(size: size, etag: "\"e\"", lastModified: "", contentType: "audio/ogg", storedAtSeconds: 0)
    }

    /// Runs one fill of `key` to completion the way the origin client does.
    @discardableResult
    func fill(_ s: SliceStore, _ key: SliceKey, size: Int) -> (writeToDisk: Bool, diskEvicted: [DiskSlice], fill: Fill)
    {
        guard case .startFill(let f) = s.lookup(key, worker: 0) else {
            XCTFail("expected a fill for \(key)"); return (false, [], Fill(key: key, owner: 0, capacity: 1))
        }
        let m = meta(size)
        XCTAssertNotNil(s.recordMeta(f, m))
        f.meta = m
        f.length = min(slice, size - key.index * slice)
        f.phase.store(Fill.Phase.complete.rawValue, ordering: .releasing)
        let done = s.completeFill(f)
        return (done.writeToDisk, done.diskEvicted, f)
    }

    /// Whether a request reading slices `first...last` of `path` is a partial hit, asked the way
    /// a request asks: one `hit` whose plan reads that byte range.
    func anyMissing(_ s: SliceStore, _ path: String, _ first: Int, _ last: Int) -> Bool {
        let known = s.meta(path) ?? meta(0)
        let hit = s.hit(path, known: known, worker: 0, readsBody: false) { _ in
            ResponsePlan(
                status: 206, fields: ResponseFields(),
                segments: first <= last
                    ? [
                        .content(
                            offset: first * self.slice,
                            length: (last - first + 1) * self.slice)
                    ] : [], contentLength: 0, rangeText: "-")
        }
        return hit!.hit.partial
    }

    /// A body that began with one version looks its next slices up with that version's ETag: once
    /// the index holds the object as another version (it changed at the origin), that version's
    /// slices are refused to the body, while a body of the new version gets them.
    func testALookupForAnotherVersionIsRefused() {
        let s = store(ram: 1 << 20, disk: 1 << 20)
        let key = SliceKey(path: "/audio/v", index: 0)
        fill(s, key, size: 2 * slice)   // version "e" (the test's `meta`)
        guard case .ram = s.lookup(key, worker: 0, etag: "\"e\"") else {
            return XCTFail("the version the body sends is served")
        }
        // The object changes: its old slices are purged and version "f" fills slice 0 again.
        _ = s.purge(key.path)
        guard case .startFill(let f) = s.lookup(key, worker: 0) else { return XCTFail("purged: fetched again") }
        let changed = ObjectMeta(
            size: 2 * slice, etag: "\"f\"", lastModified: "", contentType: "audio/ogg", storedAtSeconds: 0)
        XCTAssertNotNil(s.recordMeta(f, changed))
        f.meta = changed
        f.length = slice
        f.phase.store(Fill.Phase.complete.rawValue, ordering: .releasing)
        _ = s.completeFill(f)
        guard case .changed = s.lookup(key, worker: 0, etag: "\"e\"") else {
            return XCTFail("a body of version e must not get version f's slice")
        }
        guard case .ram = s.lookup(key, worker: 0, etag: "\"f\"") else {
            return XCTFail("a body of version f gets it")
        }
        // Slice 1 is in neither tier: a body of version e is refused before any fill starts.
        guard case .changed = s.lookup(SliceKey(path: key.path, index: 1), worker: 0, etag: "\"e\"") else {
            return XCTFail("no fill for a version the index no longer has")
        }
        XCTAssertEqual(s.stats.fills, 0)
    }

    func testHitIsOneAnswer() {
        let s = store(ram: 1 << 20, disk: 1 << 20)
        XCTAssertNil(
            s.hit("/audio/none", worker: 0, readsBody: true) { _ in
                XCTFail("no plan for a miss"); fatalError()
            })
        fill(s, SliceKey(path: "/audio/h", index: 1), size: 3 * slice)
        var planned: ObjectMeta?
        let hit = s.hit("/audio/h", worker: 0, readsBody: true) { m in
            planned = m
            return ResponsePlan(
                status: 206, fields: ResponseFields(),
                segments: [.bytes([1]), .content(offset: self.slice + 5, length: 10)],
                contentLength: 11, rangeText: "-")
        }
        XCTAssertEqual(planned?.size, 3 * slice, "the plan is built from the stored metadata")
        XCTAssertEqual(hit?.hit.partial, false)
        guard case .ram(_, let length)? = hit?.hit.firstSlice?.lookup, hit?.hit.firstSlice?.index == 1 else {
            return XCTFail(
                "the first slice the body reads is looked up in the same answer: \(String(describing: hit?.hit.firstSlice))"
            )
        }
        XCTAssertEqual(length, slice)
        // A body from slice 0 (not cached) on: the first slice's lookup is its own, never the cached
        // slice 1's, though the walk for a partial hit looked at both.
        let fromZero = s.hit("/audio/h", worker: 0, readsBody: true) { _ in
            ResponsePlan(
                status: 206, fields: ResponseFields(), segments: [.content(offset: 0, length: 2 * self.slice)],
                contentLength: 2 * self.slice, rangeText: "-")
        }
        XCTAssertEqual(fromZero?.hit.partial, true)
        guard case .startFill(let zeroFill)? = fromZero?.hit.firstSlice?.lookup, fromZero?.hit.firstSlice?.index == 0
        else { return XCTFail("slice 0 is fetched: \(String(describing: fromZero?.hit.firstSlice))") }
        XCTAssertEqual(zeroFill.key, SliceKey(path: "/audio/h", index: 0))
        _ = s.failFill(zeroFill)
        // A HEAD reads no body: nothing is looked up (and no fill started for a missing slice).
        // What depends on the hit being partial (Cache-Status) is stamped on the plan it returns.
        let head = s.hit(
            "/audio/h", worker: 0, readsBody: false,
            plan: { _ in
                ResponsePlan(
                    status: 200, fields: ResponseFields(), segments: [.content(offset: 0, length: 3 * self.slice)],
                    contentLength: 0,
                    rangeText: "-")
            },
            stamp: { plan, meta, partial in
                plan.fields.cacheStatus = partial ? "partial" : "whole"
                plan.fields.age = meta.size
            })
        XCTAssertEqual(head?.hit.partial, true)
        XCTAssertEqual(head?.plan.fields.cacheStatus, "partial", "the stamp saw the partial hit")
        XCTAssertEqual(head?.plan.fields.age, 3 * slice, "the stamp saw the stored metadata")
        XCTAssertNil(head?.hit.firstSlice)
        XCTAssertEqual(s.stats.fills, 0)
    }

    /// Two paths whose hashes collide are two keys (equality compares the bytes).
    func testKeysWhoseHashesCollideStayApart() {
        let a = PathKey("/audio/a", hash: 7), b = PathKey("/audio/b", hash: 7)
        XCTAssertNotEqual(a, b)
        XCTAssertEqual(a, PathKey("/audio/" + "a", hash: 7))
        let index: [PathKey: Int] = [a: 1, b: 2]
        XCTAssertEqual(index[PathKey("/audio/a", hash: 7)], 1)
        XCTAssertEqual(index[PathKey("/audio/b", hash: 7)], 2)
        XCTAssertNotEqual(
            SliceKey(path: "/audio/a", pathHash: 7, index: 0), SliceKey(path: "/audio/b", pathHash: 7, index: 0))
        XCTAssertEqual(PathKey("/audio/a"), PathKey("/audio/a", hash: FNV1a.hash("/audio/a")), "cacheKeyHash")
    }

    func testFailedFillsLeaveNothingBehind() {
        let s = store(ram: 1 << 20, disk: 1 << 20)
        for i in 0..<1000 {
            let key = SliceKey(path: "/audio/missing/\(i).opus", index: 0)
            guard case .startFill(let f) = s.lookup(key, worker: 0) else { return XCTFail() }
            if i % 2 == 0 { XCTAssertNotNil(s.recordMeta(f, meta(1000))) }   // failed after its head
            s.failFill(f)
        }
        let st = s.stats
        XCTAssertEqual(st.fills, 0)
        XCTAssertEqual(st.keys, 0, "failed fills left their keys")
        XCTAssertEqual(st.objects, 0, "failed fills left object metadata")
        XCTAssertEqual(st.objectsFilling, 0)
    }

    func testMetadataLeavesWithTheLastSlice() {
        // Room for about 8 slices in each tier; 500 objects go through.
        let s = store(ram: 8 * slice, disk: 8 * slice)
        for i in 0..<500 {
            let r = fill(s, SliceKey(path: "/audio/t\(i)/160.opus", index: 0), size: 100_000)
            for d in r.diskEvicted { XCTAssertFalse(d.relativePath.isEmpty) }
            if r.writeToDisk {   // the write lands
                _ = s.diskWritten(r.fill, DiskSlice(relativePath: "x/\(i)", dataOffset: 4096, length: slice))
            }
        }
        let st = s.stats
        XCTAssertLessThanOrEqual(st.ramSlices, 8)
        XCTAssertLessThanOrEqual(st.diskSlices, 8)
        XCTAssertLessThanOrEqual(st.objects, 16, "metadata of evicted objects stayed: \(st)")
        XCTAssertLessThanOrEqual(st.keys, 16, "keys of evicted slices stayed: \(st)")
        XCTAssertEqual(st.objects, st.objectsWithSlices)
    }

    func testMetadataStaysWhileAnotherSliceOfTheObjectIsFilling() {
        let s = store(ram: 1 << 20, disk: 1 << 20)
        let a = SliceKey(path: "/audio/x/160.opus", index: 0), b = SliceKey(path: "/audio/x/160.opus", index: 1)
        guard case .startFill(let fa) = s.lookup(a, worker: 0), case .startFill(let fb) = s.lookup(b, worker: 1) else {
            return XCTFail()
        }
        XCTAssertNotNil(s.recordMeta(fa, meta(200_000)))
        s.failFill(fa)
        XCTAssertNotNil(s.meta(a.path), "the other slice's fill still needs the object's metadata")
        fb.meta = meta(200_000); fb.length = slice
        XCTAssertTrue(s.completeFill(fb).writeToDisk)
        XCTAssertEqual(s.stats.ramSlices, 1)
    }

    func testSkippedDiskWriteForgetsTheSliceOnDiskOnly() {
        let s = store(ram: 1 << 20, disk: 1 << 20)
        let k = SliceKey(path: "/audio/y/160.opus", index: 0)
        let r = fill(s, k, size: 1000)
        XCTAssertTrue(r.writeToDisk)
        s.diskWriteFailed(r.fill)   // not written (disk_writes_in_flight_max, or an I/O error)
        XCTAssertNotNil(s.meta(k.path), "still in RAM")
        guard case .ram = s.lookup(k, worker: 0) else { return XCTFail("expected a RAM hit") }
    }

    /// Slices of one object whose heads arrive in different seconds are all stored (they were
    /// once compared with their arrival time and dropped as if purged).
    func testSlicesWhoseHeadsArriveInDifferentSecondsAreAllStored() {
        let s = store(ram: 1 << 20, disk: 1 << 20)
        let path = "/audio/slow/160.opus"
        for i in 0..<3 {
            let key = SliceKey(path: path, index: i)
            guard case .startFill(let f) = s.lookup(key, worker: 0) else { return XCTFail() }
            let m = ObjectMeta(
                size: 3 * slice, etag: "\"e\"", lastModified: "", contentType: "audio/ogg",
                storedAtSeconds: 1_800_000_000 + Int64(i))   // each head a second later
            guard let stored = s.recordMeta(f, m) else { return XCTFail("same version refused") }
            XCTAssertEqual(stored.storedAtSeconds, 1_800_000_000, "one Age for the whole object")
            f.meta = m; f.length = slice
            XCTAssertTrue(s.completeFill(f).writeToDisk, "slice \(i) not stored")
        }
        XCTAssertFalse(anyMissing(s, path, 0, 2))
        // Another version is not mixed in: the object is purged.
        let other = ObjectMeta(
            size: 3 * slice, etag: "\"other\"", lastModified: "", contentType: "audio/ogg", storedAtSeconds: 0)
        guard case .startFill(let changed) = s.lookup(SliceKey(path: path, index: 3), worker: 0) else {
            return XCTFail()
        }
        XCTAssertNil(s.recordMeta(changed, other))
        XCTAssertTrue(anyMissing(s, path, 0, 0))
    }

    func testMissingSliceScanIsBoundedAndExact() {
        let s = store(ram: 1 << 20, disk: 1 << 20)
        fill(s, SliceKey(path: "/audio/z", index: 0), size: 3 * slice)
        fill(s, SliceKey(path: "/audio/z", index: 2), size: 3 * slice)
        XCTAssertFalse(anyMissing(s, "/audio/z", 0, 0))
        XCTAssertTrue(anyMissing(s, "/audio/z", 0, 2))
        XCTAssertFalse(anyMissing(s, "/audio/z", 2, 2))
        XCTAssertFalse(anyMissing(s, "/audio/z", 3, 2))   // empty range
    }

    /// An operator purge: every slice of the object, in both tiers, leaves the index at once; the
    /// disk slices are handed back to unlink; other objects stay.
    func testPurgeByPathAndPrefix() {
        let s = store(ram: 1 << 22, disk: 1 << 22)
        for (t, slices) in [("a", 3), ("b", 2)] {
            for i in 0..<slices {
                let k = SliceKey(path: "/audio/\(t)/160.opus", index: i)
                let r = fill(s, k, size: slices * slice)
                if r.writeToDisk {
                    XCTAssertTrue(
                        s.diskWritten(r.fill, DiskSlice(relativePath: "\(t)/\(i)", dataOffset: 4096, length: slice))
                            .stored)
                }
            }
        }
        fill(s, SliceKey(path: "/other/x.opus", index: 0), size: 1000)
        let one = s.purge(path: "/audio/a/160.opus")
        XCTAssertEqual(one.objects, 1)
        XCTAssertEqual(one.slices, 3)
        XCTAssertEqual(Set(one.diskSlices.map(\.relativePath)), ["a/0", "a/1", "a/2"])
        XCTAssertNil(s.meta("/audio/a/160.opus"))
        guard case .startFill = s.lookup(SliceKey(path: "/audio/a/160.opus", index: 0), worker: 0) else {
            return XCTFail("a purged slice was still found")
        }
        let rest = s.purge(prefix: "/audio/")
        XCTAssertEqual(rest.objects, 1, "b (a's new fill has no metadata yet)")
        XCTAssertEqual(rest.fillsAbandoned, 1, "the fill started above")
        XCTAssertEqual(rest.slices, 2)
        XCTAssertNotNil(s.meta("/other/x.opus"), "outside the prefix")
        XCTAssertEqual(s.purge(path: "/audio/b/160.opus"), SliceStore.Purged(), "nothing left to purge")
    }

    /// A fill running when its object is purged still serves its waiters, but stores nothing:
    /// not its metadata, not its bytes in either tier (a licence takedown must not be undone by
    /// a fill that was already on its way).
    func testFillInFlightAtPurgeIsNeverStored() {
        let s = store(ram: 1 << 20, disk: 1 << 20)
        let k = SliceKey(path: "/audio/gone/160.opus", index: 0)
        guard case .startFill(let f) = s.lookup(k, worker: 0) else { return XCTFail() }
        XCTAssertEqual(s.purge(path: k.path).fillsAbandoned, 1)
        guard case .startFill(let second) = s.lookup(k, worker: 1) else {
            return XCTFail("a request after the purge joined the abandoned fill")
        }
        XCTAssertFalse(second === f)
        let m = meta(1000)
        XCTAssertEqual(s.recordMeta(f, m), m, "the abandoned fill still answers its waiters")
        XCTAssertNil(s.meta(k.path), "an abandoned fill records no metadata")
        f.meta = m; f.length = 1000
        XCTAssertFalse(s.completeFill(f).writeToDisk)
        XCTAssertEqual(s.stats.ramSlices, 0, "an abandoned fill's bytes entered the RAM tier")
        s.failFill(second)
        XCTAssertEqual(s.stats.fills, 0)
        XCTAssertEqual(s.stats.keys, 0)
    }
}
