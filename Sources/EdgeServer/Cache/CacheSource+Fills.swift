import EdgeIO
import EdgeHTTP
import Synchronization

/// Parking on fills and waking up when they move, on this worker and across workers.
extension CacheSource: FillListener {
    /// Parks a request or body on a fill. Never resumes anything itself: it may run inside an
    /// nghttp2 callback, where calling back into nghttp2 is forbidden; resumption happens at the
    /// top of the event loop (`resumePending`).
    func park(_ p: Parked) {
        // A body that cannot wait is cut (its front end sees `failed` when this returns).
        if let body = p.body, !canWait() { body.failed = true; return }
        p.body?.parked = true
        parked.append(p)
        // Register, then look again: progress published in between is not missed. The fence pairs
        // with the one in `fillProgressed` (publish, fence, read the mask): without both, the
        // filler's read of the mask may pass its publication (x86 reorders a store with a later
        // load) while this look misses the publication, and nobody wakes this request.
        _ = p.fill.waitingWorkers.bitwiseOr(UInt64(1) << UInt64(worker), ordering: .acquiringAndReleasing)
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if canProgress(p) { resumePending = true }
    }

    private func canProgress(_ p: Parked) -> Bool {
        let phase = p.fill.currentPhase
        guard let body = p.body else { return phase != .requested }
        if phase == .failed || phase == .complete { return true }
        return phase == .head
            && p.fill.buffer.available.load(ordering: .acquiring) > body.contentOffset - body.sliceIndex * sliceBytes
    }

    /// Resumes what can progress, a bounded number of rounds; true when more is left to do.
    func runPending() -> Bool {
        var rounds = 0
        while resumePending && rounds < 8 {
            resumePending = false
            resumeParked()
            rounds += 1
        }
        defer { resumePending = false }
        return resumePending
    }

    /// Re-examines every parked request and body; resumes those whose fill moved.
    func resumeParked() {
        guard !parked.isEmpty else { return }
        var still: [Parked] = []
        let list = parked
        parked = []
        for p in list {
            if let body = p.body {
                if body.cancelled { body.parked = false; delivery?.finish(body); continue }
                if canProgress(p) { body.parked = false; delivery?.resume(body) } else { still.append(p) }
                continue
            }
            guard let (c, ex) = delivery?.waitingExchange(p.owner) else { continue }
            switch p.fill.currentPhase {
            case .requested:
                still.append(p)
            case .failed:
                delivery?.deliver(c, ex, failureAnswer(p.fill, ex))
            case .head, .complete:
                guard let meta = p.fill.meta,
                    let answer = hitResponse(
                        c, ex, p.fill.key.path, fetched: meta, upstreamStatus: p.fill.upstreamCacheStatus)
                else {
                    preconditionFailure("a fill past its head without metadata")
                }
                delivery?.deliver(c, ex, answer)
            }
        }
        parked.append(contentsOf: still)
    }

    private func failureAnswer(_ fill: Fill, _ ex: Exchange) -> ContentAnswer {
        var headers: [HeaderField] = []
        if fill.failureStatus == 416, let range = fill.failureContentRange {
            headers.append(HeaderField("content-range", range))
        }
        let text =
            fill.failureStatus == 504
            ? "origin timeout\n"
            : fill.failureStatus == 502 ? "origin error\n" : "\(HTTPStatus.reason(fill.failureStatus).lowercased())\n"
        ex.cacheStatus = statusText.miss
        return .text(status: fill.failureStatus, text: text, headers: headers)
    }

    /// Another worker's fill moved (a message to this ring).
    func fillWake() {
        directory.entries[worker].wakePending.store(false, ordering: .releasing)
        resumeParked()
    }

    /// Called whenever a fill this worker runs moves: wakes every other worker with requests
    /// parked on it (one message per worker until it has run), and this worker's own.
    func fillProgressed(_ f: Fill) {
        atomicMemoryFence(ordering: .sequentiallyConsistent)   // see `park`
        var mask = f.waitingWorkers.load(ordering: .acquiring) & ~(UInt64(1) << UInt64(worker))
        while mask != 0 {
            let w = mask.trailingZeroBitCount
            mask &= mask - 1
            let entry = directory.entries[w]
            if entry.wakePending.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing)
                .exchanged
            {
                let fd = entry.ringFD.load(ordering: .acquiring)
                if fd >= 0 { ring.message(ringFD: fd, UserData(kind: OpKind.fillWake, slot: 0)) }
            }
        }
        resumePending = true
    }

    func fillCompleted(_ f: Fill) {
        // Verify what arrived before anyone can find it in the cache: the length it announced.
        f.phase.store(Fill.Phase.complete.rawValue, ordering: .releasing)
        let done = store.completeFill(f)
        for d in done.diskEvicted { writer.unlink(d.relativePath) }
        if let outcome = done.ticketOutcome { for t in done.tickets { t.report(outcome) } }
        if done.writeToDisk, let meta = f.meta { writer.write(f, meta: meta) }
        fillProgressed(f)
    }

    func fillFailed(_ f: Fill) {
        let outcome: PrewarmOutcome =
            f.abandoned ? .failed("purged while it was fetched") : .originStatus(f.failureStatus)
        for t in store.failFill(f) { t.report(outcome) }
        fillProgressed(f)
    }

    func purge(_ path: String) {
        for d in store.purge(path) { writer.unlink(d.relativePath) }
    }
}
