import Glibc
import EdgeIO
import EdgeCrypto

/// A slice on its way to disk: tmp file → header → data → fsync → close → rename.
final class DiskWrite {
    enum Step { case open, header, data, sync, close, rename }
    let key: SliceKey
    let fill: Fill
    let header: [UInt8]
    let tmpPath: UnsafeMutablePointer<CChar>
    let finalPath: UnsafeMutablePointer<CChar>
    let relativePath: String
    var fd: Int32 = -1
    var step = Step.open
    var written = 0
    init(key: SliceKey, fill: Fill, header: [UInt8], tmpPath: String, finalPath: String, relativePath: String) {
        self.key = key; self.fill = fill; self.header = header
        self.tmpPath = strdup(tmpPath)!; self.finalPath = strdup(finalPath)!
        self.relativePath = relativePath
    }
    deinit { free(tmpPath); free(finalPath) }
}

/// The disk tier's writes and removals on one worker's ring: each completed slice is written to
/// a temporary file, synced and renamed into place (a crash leaves a whole slice or none), at
/// most `disk_writes_in_flight_max` at a time, the next `disk_write_queue_max` waiting in order;
/// evicted and purged slice files are unlinked.
final class SliceWriter {
    let ring: Ring
    let store: SliceStore
    let errorLog: AccessLog
    var inFlightMax: Int
    /// Completed fills waiting for a write. Without the queue a burst of misses (a release drop,
    /// a cold cache under load) kept all but the first `inFlightMax` slices in RAM only, and the
    /// RAM tier's eviction then lost them: the same slices were fetched from the origin again.
    var queueMax: Int
    /// Taken entries are set to nil at once: a written slice's buffer is not kept alive here.
    private var queue: [(fill: Fill, meta: ObjectMeta)?] = []
    private var queueHead = 0
    private var writes = SlotTable<DiskWrite>()
    /// Slice files being unlinked, by slot: the path the kernel reads.
    private(set) var unlinks = SlotTable<UnsafeMutablePointer<CChar>>()
    /// Slice files being written now.
    private(set) var inFlight = 0
    /// Slices kept out of the disk tier with the queue full (reported by the worker's tick).
    private(set) var skipped = 0

    init(ring: Ring, store: SliceStore, errorLog: AccessLog, inFlightMax: Int, queueMax: Int) {
        self.ring = ring; self.store = store; self.errorLog = errorLog; self.inFlightMax = inFlightMax
        self.queueMax = queueMax
    }

    /// Nothing being written, waiting to be, or unlinked.
    var idle: Bool { inFlight == 0 && unlinks.isEmpty && queued == 0 }

    /// Completed fills waiting for a write.
    var queued: Int { queue.count - queueHead }

    /// Writes a completed fill's slice now, or after the writes in flight, or, with the queue
    /// full, not at all (it stays in RAM only, and a later miss may write it).
    func write(_ f: Fill, meta: ObjectMeta) {
        if inFlight < inFlightMax && queued == 0 { return start(f, meta: meta) }
        guard queued < queueMax else {
            skipped += 1
            for t in store.diskWriteFailed(f) {
                t.report(.failed("disk_write_queue_max reached: kept in RAM only"))
            }
            return
        }
        queue.append((f, meta))
    }

    private func start(_ f: Fill, meta: ObjectMeta) {
        let rel = SliceFile.relativePath(f.key, etag: meta.etag)
        let digest = SHA256.digest(UnsafeRawPointer(f.buffer.bytes), f.length)
        let header = SliceFile.header(key: f.key, meta: meta, length: f.length, digest: digest)
        let w = DiskWrite(
            key: f.key, fill: f, header: header,
            tmpPath: store.directory + "/tmp/" + String(SecureRandom.uint64(), radix: 16),
            finalPath: store.directory + "/" + rel, relativePath: rel)
        let slot = writes.insert(w)
        inFlight += 1
        ring.openCreate(path: w.tmpPath, UserData(kind: OpKind.diskWrite, slot: slot))
    }

    /// Removes an evicted or purged slice file. Its path lives until the completion (the kernel
    /// reads it when the operation is issued).
    func unlink(_ relativePath: String) {
        let path = strdup(store.directory + "/" + relativePath)!
        let slot = unlinks.insert(path)
        ring.unlink(path: path, UserData(kind: OpKind.sliceUnlink, slot: slot))
    }

    func unlinked(slot: UInt32) {
        guard let path = unlinks.remove(slot) else {
            preconditionFailure("an unlink completion for slot \(slot) with no unlink in flight")
        }
        free(path)
    }

    /// One step of a slice write completed: submit the next, or finish.
    func completed(slot: UInt32, _ result: Int32) {
        guard let w = writes[slot] else { return }
        let d = UserData(kind: OpKind.diskWrite, slot: slot)
        switch w.step {
        case .open:
            guard result >= 0 else { return fail(w, slot: slot, "open", result) }
            w.fd = result
            w.step = .header
            w.header.withUnsafeBytes { ring.write(fd: w.fd, from: $0.baseAddress!, length: $0.count, offset: 0, d) }
        case .header:
            guard result == Int32(w.header.count) else {
                return fail(w, slot: slot, result < 0 ? "write" : "short write", result)
            }
            w.step = .data
            w.written = 0
            ring.write(
                fd: w.fd, from: UnsafeRawPointer(w.fill.buffer.bytes), length: w.fill.length,
                offset: UInt64(SliceFile.headerBytes), d)
        case .data:
            guard result > 0 else { return fail(w, slot: slot, result < 0 ? "write" : "short write", result) }
            w.written += Int(result)
            if w.written < w.fill.length {
                ring.write(
                    fd: w.fd, from: UnsafeRawPointer(w.fill.buffer.bytes + w.written),
                    length: w.fill.length - w.written,
                    offset: UInt64(SliceFile.headerBytes + w.written), d)
                return
            }
            w.step = .sync
            ring.fsync(fd: w.fd, d)
        case .sync:
            guard result >= 0 else { return fail(w, slot: slot, "fsync", result) }
            w.step = .close
            ring.close(fd: w.fd, d)
            w.fd = -1
        case .close:
            guard result >= 0 else { return fail(w, slot: slot, "close", result) }
            w.step = .rename
            ring.rename(from: w.tmpPath, to: w.finalPath, d)
        case .rename:
            guard result >= 0 else { return fail(w, slot: slot, "rename", result) }
            let slice = DiskSlice(
                relativePath: w.relativePath, dataOffset: SliceFile.headerBytes, length: w.fill.length)
            let (stored, tickets) = store.diskWritten(w.fill, slice)
            if !stored {
                unlink(w.relativePath)   // purged or replaced while it was being written
            }
            let outcome: PrewarmOutcome =
                stored ? .cached(bytes: w.fill.length) : .failed("evicted or purged while it was written")
            for t in tickets { t.report(outcome) }
            finish(slot: slot)
        }
    }

    private func fail(_ w: DiskWrite, slot: UInt32, _ what: String, _ result: Int32) {
        if w.fd >= 0 { ring.close(fd: w.fd, UserData(kind: OpKind.ignore, slot: 0)); w.fd = -1 }
        ring.unlink(path: w.tmpPath, UserData(kind: OpKind.ignore, slot: 0))
        for t in store.diskWriteFailed(w.fill) { t.report(.failed("disk write failed (\(what): errno \(-result))")) }
        errorLog.line(
            "cache write failed (\(what): errno \(-result)) for \(w.key.path) slice \(w.key.index); "
                + "serving it from RAM and origin", wallMilliseconds: ring.wallMilliseconds())
        finish(slot: slot)
    }

    private func finish(slot: UInt32) {
        // The paths must outlive the submission: keep the object until the ring has taken them.
        ring.submit()
        inFlight -= 1
        assert(inFlight >= 0, "more slice writes finished than started")
        writes.remove(slot)
        // The next waiting slice (a lowered `inFlightMax` lets the ones in flight drain first).
        while inFlight < inFlightMax, queueHead < queue.count {
            guard let next = queue[queueHead] else { preconditionFailure("a slice write taken twice") }
            queue[queueHead] = nil
            queueHead += 1
            start(next.fill, meta: next.meta)
        }
        if queueHead == queue.count {
            queue.removeAll(keepingCapacity: queue.capacity <= 1024); queueHead = 0
        } else if queueHead > 1024 && queueHead * 2 > queue.count {
            queue.removeFirst(queueHead); queueHead = 0
        }
    }
}
