import EdgeConfig

/// What a protocol front end (`HTTP1Session`, `H2Session`) asks of the server it runs in, and
/// all it sees of it: the clock, starting an exchange, refusing one, the next bytes of a body,
/// and the end of an exchange. The worker implements it. A front end owns its exchanges and
/// writes to its connection; it never submits I/O, closes the connection or touches content.
///
/// Front ends hold the host as a class-bound existential: a call through it is one witness-table
/// lookup, with nothing allocated. (A generic parameter would not do: nghttp2's callbacks are C
/// functions, which cannot be generic.)
protocol ExchangeHost: AnyObject {
    /// The loop's clock.
    var nowMicroseconds: Int64 { get }
    /// A fresh clock reading: when a request arrived, for its time to first byte.
    func clockMicroseconds() -> Int64
    /// A complete request: routed, checked and answered, now or later, through the front end's
    /// own `respond`.
    func start(_ ex: Exchange, on c: Connection)
    /// Answers a request the front end itself refuses (a parse error, 408, 413, 431) with a
    /// short text body.
    func refuse(_ ex: Exchange, on c: Connection, status: Int, text: String)
    /// Makes the next bytes of a body ready, or starts what will (a read, a wait for a fill).
    func refill(_ body: BodyStream)
    /// The exchange is over (sent, reset or cut): its access-log line written once, its body's
    /// buffer and file references returned.
    func end(_ ex: Exchange, on c: Connection)
}

/// The protocol a connection speaks: unknown until the first bytes (or ALPN) say.
enum FrontEnd {
    case undecided
    case http1(HTTP1Session)
    case http2(H2Session)
}

/// What a front end's deadline check wants of the transport.
enum DeadlineVerdict {
    /// Nothing is late.
    case none
    /// Frames were queued (a GOAWAY, stream resets): send them.
    case send
    /// Close the connection.
    case close
}

/// The timeouts a front end enforces, in microseconds (from `LimitsConfig`).
struct Deadlines {
    let headerMicroseconds: Int64
    let keepAliveMicroseconds: Int64
    let sendMicroseconds: Int64
    let requestMicroseconds: Int64
    let h2StreamRequestMicroseconds: Int64

    init(_ limits: LimitsConfig) {
        headerMicroseconds = Int64(limits.headerTimeoutMilliseconds) * 1000
        keepAliveMicroseconds = Int64(limits.keepAliveTimeoutMilliseconds) * 1000
        sendMicroseconds = Int64(limits.sendTimeoutMilliseconds) * 1000
        requestMicroseconds = Int64(limits.requestTimeoutMilliseconds) * 1000
        h2StreamRequestMicroseconds = Int64(limits.h2StreamRequestTimeoutMilliseconds) * 1000
    }
}
