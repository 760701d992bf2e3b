import Glibc
import EdgeIO
import EdgeCache
import EdgeCrypto

/// One slice file being read into RAM.
final class Promotion {
    enum Step { case open, header, data, close }
    let fill: Fill
    let disk: DiskSlice
    let path: UnsafeMutablePointer<CChar>
    /// The file's header: checked against the index and the data's SHA-256 before the bytes are
    /// published, so the RAM tier, which serves a slice many times, never holds a damaged one.
    let header: UnsafeMutableRawBufferPointer
    var fd: Int32 = -1
    var step = Step.open
    var done = 0
    var failure: String?
    init(fill: Fill, disk: DiskSlice, path: String) {
        self.fill = fill; self.disk = disk
        self.path = strdup(path)!
        header = .allocate(byteCount: SliceFile.headerBytes, alignment: 4096)
    }
    deinit { free(path); header.deallocate() }
}

/// Disk hits promoted into the RAM tier on one worker's ring: open → header → data → verify →
/// close, into a fill that every reader of the slice, on any worker, joins meanwhile (one read
/// per slice however many players ask). At most `fills_max` run at once, counted with the origin
/// fills. A slice file that is short, unreadable or fails its checks is logged, removed from the
/// index and unlinked; its readers look the slice up again and fetch it from the origin.
final class SlicePromoter {
    let ring: Ring
    let store: SliceStore
    let writer: SliceWriter
    let errorLog: AccessLog
    /// The header checks' bounds (`objectBytesMax` is reloadable).
    var limits: SliceFileHeader.Limits {
        SliceFileHeader.Limits(sliceBytes: store.sliceBytes, objectBytesMax: store.objectBytesMax)
    }
    /// The worker's cache source, which owns this promoter (unowned, not weak: no side table).
    unowned(unsafe) var listener: (any FillListener)?
    private var promotions = SlotTable<Promotion>()
    private(set) var inFlight = 0
    /// Slices promoted and slice files found damaged (for tests and the error log).
    private(set) var promoted = 0
    private(set) var damaged = 0

    init(ring: Ring, store: SliceStore, writer: SliceWriter, errorLog: AccessLog) {
        self.ring = ring; self.store = store; self.writer = writer; self.errorLog = errorLog
    }

    var idle: Bool { inFlight == 0 }

    /// Starts reading `disk` into `fill` (which the index just handed to this worker).
    func start(_ fill: Fill, _ disk: DiskSlice) {
        let p = Promotion(fill: fill, disk: disk, path: store.directory + "/" + disk.relativePath)
        let slot = promotions.insert(p)
        inFlight += 1
        ring.openRead(path: p.path, UserData(kind: OpKind.slicePromote, slot: slot))
    }

    /// One step completed: submit the next, or finish.
    func completed(slot: UInt32, _ result: Int32) {
        guard let p = promotions[slot] else { return }
        let d = UserData(kind: OpKind.slicePromote, slot: slot)
        switch p.step {
        case .open:
            // Gone: evicted (and unlinked) by another worker since the lookup. Not damage.
            guard result != -ENOENT else { return fail(p, slot: slot, nil) }
            guard result >= 0 else { return fail(p, slot: slot, "open: errno \(-result)") }
            p.fd = result
            p.step = .header
            ring.read(fd: p.fd, into: p.header.baseAddress!, length: SliceFile.headerBytes, offset: 0, d)
        case .header:
            guard result > 0 else { return fail(p, slot: slot, result < 0 ? "read: errno \(-result)" : "short file") }
            p.done += Int(result)
            if p.done < SliceFile.headerBytes {
                ring.read(
                    fd: p.fd, into: p.header.baseAddress! + p.done, length: SliceFile.headerBytes - p.done,
                    offset: p.done, d)
                return
            }
            p.step = .data
            p.done = 0
            readData(p, d)
        case .data:
            guard result > 0 else { return fail(p, slot: slot, result < 0 ? "read: errno \(-result)" : "short file") }
            p.done += Int(result)
            guard p.done < p.disk.length else {
                p.failure = verify(p)
                p.step = .close
                ring.close(fd: p.fd, d)
                p.fd = -1
                return
            }
            readData(p, d)
        case .close:
            if let why = p.failure { return fail(p, slot: slot, why) }
            // Verified: publish the bytes, then let the index take them into RAM.
            let f = p.fill
            f.buffer.available.store(f.length, ordering: .releasing)
            f.phase.store(Fill.Phase.complete.rawValue, ordering: .releasing)
            let (tickets, outcome) = store.completePromotion(f)
            for t in tickets { t.report(outcome) }
            promoted += 1
            finish(slot: slot)
            listener?.fillProgressed(f)
        }
    }

    private func readData(_ p: Promotion, _ d: UserData) {
        ring.read(
            fd: p.fd, into: p.fill.buffer.bytes + p.done, length: p.disk.length - p.done,
            offset: p.disk.dataOffset + p.done, d)
    }

    /// The reason the file read does not match what the index says it is, nil when it does.
    private func verify(_ p: Promotion) -> String? {
        let f = p.fill
        switch SliceFileHeader.decode(
            UnsafeRawBufferPointer(p.header), fileBytes: p.disk.dataOffset + p.disk.length, limits: limits)
        {
        case .bad(let why): return why
        case .ok(let h):
            guard h.path == f.key.path, h.index == f.key.index, h.dataLength == p.disk.length,
                h.etag == f.meta?.etag
            else { return "header does not match the index" }
            guard SHA256.digest(UnsafeRawPointer(f.buffer.bytes), p.disk.length) == h.digest else {
                return "checksum mismatch"
            }
            return nil
        }
    }

    /// The slice file cannot be used: the index forgets it (its readers look again and go to
    /// the origin) and, when it is damaged (`why`), the file goes and the error log says why.
    private func fail(_ p: Promotion, slot: UInt32, _ why: String?) {
        if p.fd >= 0 { ring.close(fd: p.fd, UserData(kind: OpKind.ignore, slot: 0)); p.fd = -1 }
        let f = p.fill
        store.diskSliceMissing(f.key, relativePath: p.disk.relativePath)
        if let why {
            damaged += 1
            writer.unlink(p.disk.relativePath)
            errorLog.line(
                "cache: slice file \(p.disk.relativePath) of \(f.key.path) slice \(f.key.index) dropped "
                    + "(\(why)); it will be fetched again", wallMilliseconds: ring.wallMilliseconds())
        }
        f.phase.store(Fill.Phase.failed.rawValue, ordering: .releasing)
        let tickets = store.failFill(f)
        for t in tickets { t.report(.failed("slice file unusable: \(why ?? "gone")")) }
        finish(slot: slot)
        listener?.fillProgressed(f)
    }

    private func finish(slot: UInt32) {
        // The path must outlive the submission: keep the object until the ring has taken it.
        ring.submit()
        inFlight -= 1
        promotions.remove(slot)
    }
}
