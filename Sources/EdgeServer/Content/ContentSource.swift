import EdgeIO
import EdgeHTTP

/// Where response bodies come from, chosen at start-up from `origin.urls`: a directory of files
/// (`file://`), or the slice cache in front of HTTP upstreams. The mode is this type, not an
/// optional store tested (and force-unwrapped) on every request.
enum ContentSource {
    case directory(DirectorySource)
    case cache(CacheSource)
}

/// What a content source says about a request at once.
enum ContentAnswer {
    /// A response ready to go: the plan (status, fields, length) and the body to pull (nil: none,
    /// e.g. HEAD or 304). The plan travels whole to the front end, which writes its fields from
    /// where they are: a `Response` struct in between, with the fields copied out of the plan into
    /// it, retained each of their strings once more per response (`loadtest/allocs.py`).
    case respond(ResponsePlan, body: BodyStream?)
    /// A short plain-text answer (404, 503, an origin's failure status).
    case text(status: Int, text: String, headers: [HeaderField])
    /// The answer comes later, through `ContentDelivery` (a file opening, a fill on its way).
    case waiting
}

/// How a content source reaches the front ends after it answered `.waiting`, or when bytes of a
/// body arrive: the one narrow interface both sources use. They never touch a connection's
/// fields or a protocol session; the worker implements it.
protocol ContentDelivery: AnyObject {
    /// The unanswered exchange a waiter stands for, if its connection (same generation) and stream
    /// are still there.
    func waitingExchange(_ waiter: BodyOwner) -> (Connection, Exchange)?
    /// Answers an exchange that waited, and lets its front end send.
    func deliver(_ c: Connection, _ ex: Exchange, _ answer: ContentAnswer)
    /// A body has bytes, or failed: its front end pulls them.
    func resume(_ body: BodyStream)
    /// A body nobody reads any more: its buffer and file references go back.
    func finish(_ body: BodyStream)
}

/// Whose a body or a waiting request is: the connection slot, the generation it was accepted
/// under, and the HTTP/2 stream (0 for HTTP/1.1).
struct BodyOwner {
    var connectionSlot: UInt32
    var generation: UInt32
    var streamID: Int32
    /// A body waiting to read (rather than a request waiting to be answered).
    var body: BodyStream? = nil
}

/// File reads into response bodies through the ring, for both sources: at most one per body,
/// each in a slot until it completes.
final class BodyReads {
    let ring: Ring
    let pool: BufferPool
    private var inFlight = SlotTable<BodyStream>()

    init(ring: Ring, pool: BufferPool) { self.ring = ring; self.pool = pool }

    func start(_ body: BodyStream, fd: Int32, offset: Int, length: Int) {
        let into = body.takeOwnBuffer(pool)
        body.readInFlight = true
        body.pendingReadLength = length
        let slot = inFlight.insert(body)
        ring.read(fd: fd, into: into, length: length, offset: offset, UserData(kind: OpKind.fileRead, slot: slot))
    }

    /// The body whose read completed, with the result applied.
    func completed(slot: UInt32, _ result: Int32) -> BodyStream? {
        guard let body = inFlight.remove(slot) else { return nil }
        body.readCompleted(result)
        return body
    }
}
