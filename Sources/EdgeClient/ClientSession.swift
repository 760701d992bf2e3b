import EdgeHTTP

/// What a client session (HTTP/2 or HTTP/1.1) reports as responses arrive.
public protocol ClientSessionDelegate: AnyObject {
    /// A response's final head (status and fields, names lower-case; 1xx heads are skipped).
    func responseHead(stream: Int32, status: Int, fields: [(name: String, value: String)])
    /// Body bytes arrived (valid only during the call).
    func responseData(stream: Int32, bytes: UnsafeRawBufferPointer)
    /// The exchange ended: `errorCode` 0 after a whole response, else why it did not complete
    /// (HTTP/2: the RST_STREAM/GOAWAY code; HTTP/1.1: `ClientSessionError`).
    func streamClosed(stream: Int32, errorCode: UInt32)
}

/// Error codes an HTTP/1.1 session closes a stream with (HTTP/2's own codes are below 0x100).
public enum ClientSessionError {
    public static let cancelled: UInt32 = 0x8   // as HTTP/2 CANCEL
    public static let malformed: UInt32 = 0x101
    public static let truncated: UInt32 = 0x102
}

/// One client connection's protocol, with no I/O of its own: bytes read go to `receive`,
/// `send` hands over the bytes to write. `HTTP2ClientSession` multiplexes; `HTTP1ClientSession`
/// carries one exchange at a time.
public protocol ClientSession: AnyObject {
    var delegate: (any ClientSessionDelegate)? { get set }
    /// Field names `responseHead` passes (lower case); nil passes every field.
    var fieldNamesKept: [String]? { get set }
    /// Exchanges started and not yet closed.
    var openStreams: Int { get }
    /// How many exchanges may be open at once (the peer's bound for HTTP/2, 1 for HTTP/1.1).
    var concurrentStreamsMax: Int { get }
    /// No new exchange may start (GOAWAY, `Connection: close`, a cancelled HTTP/1.1 exchange):
    /// the connection is retired once `openStreams` is 0.
    var goAwayReceived: Bool { get }
    /// Starts an exchange; nil when the session cannot take one now.
    func request(
        method: String, scheme: String, authority: String, path: String, headers: [(name: String, value: String)],
        body: [UInt8]
    ) -> Int32?
    func cancel(stream: Int32)
    /// False: the peer broke the protocol; the connection is dead.
    func receive(_ bytes: UnsafeRawBufferPointer) -> Bool
    /// The transport reached end of stream (a response delimited by the close ends here).
    func transportClosed()
    /// Hands bytes to write; false on a session error.
    func send(_ write: (UnsafeRawBufferPointer) -> Void) -> Bool
}

/// HTTP/1.1 client (RFC 9112): one exchange at a time, no pipelining, persistent unless either
/// side says close. The response head is parsed strictly by `HTTP1ResponseParser` within
/// `headBytesMax`; the body is delimited by Content-Length, chunked coding, or the close.
public final class HTTP1ClientSession: ClientSession {
    /// Unowned, as `H2ClientSession`'s: the owner outlives its session.
    public unowned var delegate: (any ClientSessionDelegate)?
    public var fieldNamesKept: [String]? = nil
    public private(set) var openStreams = 0
    public var concurrentStreamsMax: Int { 1 }
    public private(set) var goAwayReceived = false
    public let headBytesMax: Int
    private var nextStream: Int32 = 1
    private var current: Int32 = 0
    private var isHead = false
    private var output: [UInt8] = []
    private var head: [UInt8] = []
    private var inBody = false
    private var remaining = 0
    private var chunked: ChunkedDecoder?
    private var untilClose = false
    private var broken = false

    public init(headBytesMax: Int = 32768, delegate: (any ClientSessionDelegate)? = nil) {
        self.headBytesMax = headBytesMax
        self.delegate = delegate
    }

    public func request(
        method: String = "GET", scheme: String, authority: String, path: String,
        headers: [(name: String, value: String)] = [], body: [UInt8] = []
    ) -> Int32? {
        guard openStreams == 0, !goAwayReceived, !broken, nextStream < Int32.max else { return nil }
        var text = "\(method) \(path) HTTP/1.1\r\nhost: \(authority)\r\n"
        for (n, v) in headers { text += "\(n): \(v)\r\n" }
        if !body.isEmpty || method == "POST" || method == "PUT" { text += "content-length: \(body.count)\r\n" }
        text += "\r\n"
        output += text.utf8
        output += body
        current = nextStream
        nextStream += 1
        isHead = method == "HEAD"
        openStreams = 1
        head.removeAll(keepingCapacity: true)
        inBody = false
        return current
    }

    /// HTTP/1.1 cannot abandon one exchange and keep the connection: cancelling retires it.
    public func cancel(stream: Int32) {
        guard openStreams == 1, stream == current else { return }
        goAwayReceived = true
        end(ClientSessionError.cancelled)
    }

    public func receive(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard !broken else { return false }
        var input = bytes
        while !input.isEmpty {
            guard openStreams == 1 else { return fail() }   // bytes nobody asked for
            if !inBody {
                let before = head.count
                head += input.prefix(headBytesMax + 4 - min(before, headBytesMax + 4))
                let parsed = head.withUnsafeBytes { HTTP1ResponseParser.parse($0, headerBytesMax: headBytesMax) }
                switch parsed {
                case .needMore:
                    if head.count >= headBytesMax { return fail() }
                    return true
                case .error: return fail()
                case .head(let h, let consumed):
                    input = UnsafeRawBufferPointer(rebasing: input[(consumed - before)...])
                    head.removeAll(keepingCapacity: true)
                    if h.isInterim { continue }
                    guard h.status >= 200 else { return fail() }   // 101: no upgrade was asked for
                    if h.values("connection").contains(where: { $0.lowercased().contains("close") }) {
                        goAwayReceived = true
                    }
                    delegate?.responseHead(
                        stream: current, status: h.status,
                        fields: h.headers.compactMap { f in
                            fieldNamesKept.map { $0.contains(f.name) } ?? true ? (f.name, f.value) : nil
                        })
                    guard openStreams == 1 else { return true }   // the delegate cancelled
                    inBody = true
                    chunked = nil; untilClose = false; remaining = 0
                    if isHead || h.status == 204 || h.status == 304 {
                        end(0); continue
                    }
                    switch h.framing {
                    case .length(let n): remaining = n
                    case .chunked: chunked = ChunkedDecoder()
                    case .untilClose: untilClose = true; goAwayReceived = true
                    case .error: return fail()
                    }
                    if chunked == nil && !untilClose && remaining == 0 { end(0) }
                }
            } else if chunked != nil {
                let stream = current
                let r = chunked!.feed(input) { piece in
                    delegate?.responseData(stream: stream, bytes: piece); return true
                }
                guard case .consumed(let n) = r else { return fail() }
                input = UnsafeRawBufferPointer(rebasing: input[n...])
                if chunked!.isDone { end(0) }
            } else if untilClose {
                delegate?.responseData(stream: current, bytes: input)
                return true
            } else {
                let take = min(remaining, input.count)
                delegate?.responseData(stream: current, bytes: UnsafeRawBufferPointer(rebasing: input[..<take]))
                remaining -= take
                input = UnsafeRawBufferPointer(rebasing: input[take...])
                if remaining == 0 { end(0) }
            }
        }
        return true
    }

    public func transportClosed() {
        goAwayReceived = true
        guard openStreams == 1 else { return }
        end(inBody && untilClose ? 0 : ClientSessionError.truncated)
    }

    public func send(_ write: (UnsafeRawBufferPointer) -> Void) -> Bool {
        guard !output.isEmpty else { return !broken }
        output.withUnsafeBytes { write($0) }
        output.removeAll(keepingCapacity: true)
        return !broken
    }

    private func end(_ code: UInt32) {
        openStreams = 0
        inBody = false
        let stream = current
        delegate?.streamClosed(stream: stream, errorCode: code)
    }

    private func fail() -> Bool {
        broken = true
        goAwayReceived = true
        if openStreams == 1 { end(ClientSessionError.malformed) }
        return false
    }
}
