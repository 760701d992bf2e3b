/// The life of a connection slot as one value: whether it is open, what the kernel still holds
/// (operations in flight reference the slot's buffers and fd), and when the slot may be reused.
/// Every event is one mutating method; the ones that decide something return what to do, so the
/// owner cannot, say, release a slot the kernel still writes into or close a connection twice.
///
///     free ──accept──▶ open ──finishAfterFlush──▶ finishing
///                       │                            │
///                       └────────close──────────────┴──▶ closing ──closeCompleted──▶ closed
///     closed ──(last operation completes)──▶ release ──▶ free (next generation)
struct ConnectionLife {
    fileprivate enum State { case free, open, finishing, closing, closed }

    private var state = State.free
    /// Operations submitted on the slot and not yet completed (the close included).
    private(set) var operationsInFlight = 0
    private(set) var receiveInFlight = false
    /// Bumped at each release: a completion carries the generation it was submitted under.
    private(set) var generation: UInt32 = 0

    /// Accepted and not closed: requests and responses may still move.
    var isOpen: Bool { state == .open || state == .finishing }
    /// Holds a connection (closing or closed ones included): the slot is not free.
    var isInUse: Bool { state != .free }
    /// No more requests are read; the connection closes once its output is flushed.
    var closesAfterFlush: Bool { state == .finishing }

    mutating func accept() {
        precondition(state == .free && operationsInFlight == 0, "accepted into a slot in state \(state)")
        state = .open
    }

    /// Stops reading requests: what is queued is sent, then the connection closes.
    mutating func finishAfterFlush() {
        if state == .open { state = .finishing }
    }

    /// Whether a receive may be submitted now (at most one, and only while requests are read);
    /// when true it is counted as in flight.
    mutating func submitReceive() -> Bool {
        guard state == .open, !receiveInFlight else { return false }
        receiveInFlight = true
        operationsInFlight += 1
        return true
    }

    mutating func submitSend() {
        precondition(isOpen, "a send submitted on a connection in state \(state)")
        operationsInFlight += 1
    }

    enum Delivery: Equatable {
        /// The connection is open and the completion is its own: handle it.
        case deliver
        /// The connection is closing: nothing to do.
        case drop
        /// That was the last operation of a closed connection: release the slot.
        case release
    }

    /// A receive or send completed.
    mutating func completed(receive: Bool, generation completedGeneration: UInt32) -> Delivery {
        precondition(operationsInFlight > 0, "a completion on a slot with no operation in flight (state \(state))")
        operationsInFlight -= 1
        if receive { receiveInFlight = false }
        switch state {
        case .open, .finishing:
            assert(
                completedGeneration == generation,
                "a completion from generation \(completedGeneration) on \(generation)")
            return completedGeneration == generation ? .deliver : .drop
        case .closing: return .drop
        case .closed: return operationsInFlight == 0 ? .release : .drop
        case .free: preconditionFailure("a completion on a free slot")
        }
    }

    /// Whether to submit the close now (once per connection); when true it is counted in flight.
    mutating func close() -> Bool {
        guard isOpen else { return false }
        state = .closing
        operationsInFlight += 1
        return true
    }

    /// The close completed; true when nothing else is in flight and the slot can be released.
    mutating func closeCompleted() -> Bool {
        precondition(state == .closing && operationsInFlight > 0, "a close completion on a slot in state \(state)")
        operationsInFlight -= 1
        state = .closed
        return operationsInFlight == 0
    }

    /// Frees the slot for the next connection, under a new generation.
    mutating func release() {
        precondition(
            state == .closed && operationsInFlight == 0,
            "released in state \(state) with \(operationsInFlight) operations in flight: its buffers are the kernel's")
        state = .free
        receiveInFlight = false
        generation = (generation + 1) & 0xFF_FFFF
    }
}
