import EdgeClient
import EdgeHTTP

/// What an origin client tells its owner as fills move.
protocol FillListener: AnyObject {
    /// More of the fill is published (its head, or body bytes).
    func fillProgressed(_ f: Fill)
    func fillCompleted(_ f: Fill)
    func fillFailed(_ f: Fill)
    /// The object changed at the origin: everything cached for it goes.
    func purge(_ path: String)
}

/// One keep-alive HTTP/1.1 connection to an upstream, owned by one worker.
final class OriginConnection {
    enum State { case free, opening, connecting, idle, busy }
    let slot: UInt32
    var generation: UInt32 = 0
    var state = State.free
    var fd: Int32 = -1
    var upstream = 0
    /// Which of the upstream's addresses it connected to.
    var endpoint = 0
    let address = UnsafeMutableRawPointer.allocate(byteCount: 128, alignment: 8)
    var addressLength: Int32 = 0
    let recvBuffer = UnsafeMutableRawPointer.allocate(byteCount: 65536, alignment: 64)
    let request = ByteBuffer(capacity: 512)
    /// HTTPS: the session, and the ciphertext waiting to be sent (handshake, sealed request).
    var tls: ClientTLS?
    /// Its resumable session is in the pool's keeping already.
    var sessionKept = false
    let wire = ByteBuffer(capacity: 512)
    let head = ByteBuffer(capacity: 4096)
    var job: OriginClient.Job?
    var headParsed = false
    var bodyExpected = 0   // bytes of the slice still to come
    var bodyToDiscard = 0   // a 200 whose rest we do not keep: the connection is closed instead
    var keepAlive = true
    /// The body is in the chunked coding (decoded before it reaches the slice).
    var chunked: ChunkedDecoder?
    /// 1xx responses skipped before the final one.
    var interimResponses = 0
    var pendingOps = 0
    var recvPending = false
    /// A request send is in flight: the request buffer is the kernel's until it completes.
    var sendPending = false
    var deadlineMicroseconds: Int64 = 0
    /// The whole response must be in by then (slow-loris origins), whatever the idle timeout.
    var responseDeadlineMicroseconds: Int64 = 0
    var deadlineStatus = 504
    /// When the current request was sent (the origin latency histogram).
    var sentMicroseconds: Int64 = 0

    init(slot: UInt32) { self.slot = slot }
    deinit { address.deallocate(); recvBuffer.deallocate() }
}
