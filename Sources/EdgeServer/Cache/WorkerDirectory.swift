import Synchronization

/// Each worker's ring, for cross-worker wake-ups (IORING_OP_MSG_RING), and a flag per worker so
/// that many progress events coalesce into one wake-up.
final class WorkerDirectory: @unchecked Sendable {
    final class Entry: @unchecked Sendable {
        let ringFD = Atomic<Int32>(-1)
        let wakePending = Atomic<Bool>(false)
    }
    let entries: [Entry]
    init(workers: Int) { entries = (0..<workers).map { _ in Entry() } }
    func register(worker: Int, ringFD: Int32) { entries[worker].ringFD.store(ringFD, ordering: .releasing) }
}
