import EdgeIO

/// The worker loop's notion of now, read from the ring once per turn and shared (read-only) with
/// the parts the loop drives: one clock read per batch of completions, not one per use, and the
/// virtual clock under simulation.
final class LoopClock {
    private(set) var nowMicroseconds: Int64 = 0
    /// The wall clock at the same moment: what token expiry, a cached object's age and the access
    /// log's timestamp read, as nginx reads its cached time (a turn lasts milliseconds at most).
    private(set) var wallMilliseconds: Int64 = 0
    let ring: Ring
    init(ring: Ring) {
        self.ring = ring
        nowMicroseconds = ring.monotonicMicroseconds()
        wallMilliseconds = ring.wallMilliseconds()
    }
    /// Called by the loop after each wait.
    func advance() {
        nowMicroseconds = ring.monotonicMicroseconds()
        wallMilliseconds = ring.wallMilliseconds()
    }
    /// A fresh reading, for what must be timed at the event itself (time to first byte, a
    /// response's total time), not at the start of the loop's turn.
    func read() -> Int64 { ring.monotonicMicroseconds() }
    var wallSeconds: Int64 { wallMilliseconds / 1000 }
}
