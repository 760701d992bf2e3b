import Synchronization
import EdgeConfig

/// What the control plane (the admin API, the main thread) asks of a worker. Delivered through the
/// worker's mailbox and its eventfd: the worker acts on it on its own thread, at the top of its
/// loop, and the sender never waits for it.
enum WorkerMail: @unchecked Sendable {
    /// Fetch this fill from the origin: a pre-warm started it, and the worker owns it.
    case fetch(Fill)
    /// New token settings (a reload): the worker swaps its router and verifier between requests.
    case reload(Router)
    /// A new TLS context (a reload found new certificate files): for connections accepted next.
    case tls(TLSServerContext)
    /// The running configuration after a reload (limits, origin, cache bounds).
    case configure(EdgeConfig)
    /// The upstreams' host names resolved anew (start-up, a reload, the resolver's interval).
    case addresses(AddressBook)
}

/// Each worker's ring, for cross-worker wake-ups (IORING_OP_MSG_RING), and a flag per worker so
/// that many progress events coalesce into one wake-up; each worker's mailbox for the control plane.
final class WorkerDirectory: @unchecked Sendable {
    final class Entry: @unchecked Sendable {
        let ringFD = Atomic<Int32>(-1)
        let wakePending = Atomic<Bool>(false)
        /// The worker's eventfd: a write wakes it to read its mailbox (and the stop flag).
        let wakeFD = Atomic<Int32>(-1)
        let stopRequested = Atomic<Bool>(false)
        let mailbox = Mutex<[WorkerMail]>([])
    }
    let entries: [Entry]
    /// Writes to an eventfd (the kernel's, or the simulation's).
    let signal: @Sendable (Int32) -> Void

    init(workers: Int, signal: @escaping @Sendable (Int32) -> Void) {
        entries = (0..<workers).map { _ in Entry() }
        self.signal = signal
    }
    func register(worker: Int, ringFD: Int32) { entries[worker].ringFD.store(ringFD, ordering: .releasing) }

    /// Queues mail for a worker and wakes it; false when its mailbox is full (`mailboxMax`).
    /// `bounded: false` for a reload's mail, which must never be lost (a worker left on the old
    /// keys); reloads are serialised, so at most one per worker is queued beyond the bound.
    @discardableResult
    func post(_ mail: WorkerMail, to worker: Int, bounded: Bool = true) -> Bool {
        let entry = entries[worker]
        let queued = entry.mailbox.withLock { box -> Bool in
            guard !bounded || box.count < Self.mailboxMax else { return false }
            box.append(mail)
            return true
        }
        if queued, case let fd = entry.wakeFD.load(ordering: .acquiring), fd >= 0 { signal(fd) }
        return queued
    }

    /// Wakes a worker without mail: it re-examines what it has parked (a fill the control plane
    /// failed, which players may have joined).
    func wake(_ worker: Int) {
        let fd = entries[worker].wakeFD.load(ordering: .acquiring)
        if fd >= 0 { signal(fd) }
    }

    /// SIGTERM's path: every worker drains and stops.
    func requestStop() {
        for e in entries {
            e.stopRequested.store(true, ordering: .releasing)
            let fd = e.wakeFD.load(ordering: .acquiring)
            if fd >= 0 { signal(fd) }
        }
    }

    /// Bounds what the control plane can queue on a worker before it answers 503.
    static let mailboxMax = 65536
}
