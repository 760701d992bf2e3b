import CEdgeRing
import EdgeClient
import EdgeIO
import Glibc

public struct LoadError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// The generator's event loop: one io_uring ring, the connections on it, a 1 ms tick that
/// measures the loop's own lag. `ReplayEngine` and `PlayerEngine` are its two drivers; each
/// thread of a run has its own loop and `Recorder`, merged at the end without loss.
public class LoadLoop {
    enum Op {
        static let socket: UInt8 = 1, connect: UInt8 = 2, send: UInt8 = 3, recv: UInt8 = 4, tick: UInt8 = 5,
            close: UInt8 = 6
    }
    static let tickMilliseconds = 1

    let ring: Ring
    var connections: [ClientConnection] = []
    private var freeSlots: [Int] = []
    let bufferBytes: Int
    let plaintext: UnsafeMutableRawPointer
    let caFile: String?
    private var tlsContexts: [Bool: ClientTLS.Context] = [:]
    public internal(set) var recorder = Recorder()
    /// Read by the progress line on another thread.
    public let progress: Progress
    let timeoutMicroseconds: Int64
    let lagLimitMicroseconds: Int64
    var behind = false
    var startMicroseconds: Int64 = 0
    private var expectedTickMicroseconds: Int64 = 0
    private let tickStorage = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 8)

    init(
        ringEntries: Int, bufferBytes: Int, caFile: String?, timeoutMilliseconds: Int, lagLimitMilliseconds: Int,
        progress: Progress
    ) throws {
        // The submission queue refills itself when full (`Ring.queue`), and the kernel keeps
        // completions past the completion queue (IORING_FEAT_NODROP): 4096 entries suffice.
        ring = try Ring(entries: max(256, min(4096, ringEntries)))
        self.progress = progress
        self.bufferBytes = bufferBytes
        plaintext = .allocate(byteCount: bufferBytes, alignment: 64)
        self.caFile = caFile
        timeoutMicroseconds = Int64(timeoutMilliseconds) * 1000
        lagLimitMicroseconds = Int64(lagLimitMilliseconds) * 1000
    }

    deinit { tickStorage.deallocate(); plaintext.deallocate() }

    public var now: Int64 { ring.monotonicMicroseconds() }

    /// One TLS context per ALPN choice, made on first use (a bad CA file fails every TLS connection).
    func tlsContext(http2: Bool) -> ClientTLS.Context? {
        if let c = tlsContexts[http2] { return c }
        guard let c = try? ClientTLS.Context(caFile: caFile, alpn: [http2 ? "h2" : "http/1.1"]) else { return nil }
        tlsContexts[http2] = c
        return c
    }

    /// A connection slot for `endpoint`: a released one reused (its generation keeps counting, so
    /// stale completions are still dropped), or a new one.
    func makeConnection(_ endpoint: Endpoint, pool: ConnectionPool?) -> ClientConnection {
        let c: ClientConnection
        if let slot = freeSlots.popLast() {
            c = connections[slot]
            c.endpoint = endpoint
        } else {
            c = ClientConnection(
                slot: UInt32(connections.count), loop: self, endpoint: endpoint, bufferBytes: bufferBytes)
            connections.append(c)
        }
        c.pool = pool
        c.retireWhenIdle = false
        c.reopenAtMicroseconds = 0
        return c
    }

    /// Runs completions until `done` says so (checked after each batch); the tick is armed here.
    func loop(until done: () -> Bool) throws {
        if startMicroseconds == 0 { startMicroseconds = now }
        armTick()
        while true {
            let n = try ring.submitAndWait()
            for i in 0..<n {
                let c = ring.completion(at: i)
                dispatch(c.data, c.result)
            }
            flushPending()
            if done() { break }
        }
    }

    private func dispatch(_ d: UserData, _ result: Int32) {
        if d.kind == Op.tick { onTick(); return }
        guard Int(d.slot) < connections.count else { return }
        let c = connections[Int(d.slot)]
        if d.kind == Op.close { return }
        if d.kind == Op.socket {
            // A socket made for an earlier incarnation is closed, never leaked.
            if d.generation == c.generation {
                c.onSocket(result)
            } else if result >= 0 {
                ring.close(fd: result, UserData(kind: Op.close, slot: d.slot))
            }
            afterEvent(c)
            return
        }
        guard d.generation == c.generation else { return }
        switch d.kind {
        case Op.connect: c.onConnect(result)
        case Op.send: c.onSend(result)
        case Op.recv: c.onRecv(result)
        default: break
        }
        afterEvent(c)
    }

    /// Connections with output waiting for the end of the batch (`ClientConnection.flushSoon`).
    private var toFlush: [ClientConnection] = []

    func flushLater(_ c: ClientConnection) { toFlush.append(c) }

    private func flushPending() {
        var i = 0
        while i < toFlush.count {   // a flush may fail a connection, whose callbacks may start more
            let c = toFlush[i]
            i += 1
            if c.flushPending { c.flush() }
        }
        toFlush.removeAll(keepingCapacity: true)
    }

    private func armTick() {
        expectedTickMicroseconds = now + Int64(Self.tickMilliseconds) * 1000
        ring.timeout(milliseconds: Self.tickMilliseconds, storage: tickStorage, UserData(kind: Op.tick, slot: 0))
    }

    private func onTick() {
        let t = now
        let lag = t - expectedTickMicroseconds
        recorder.generatorLag.record(microseconds: lag)
        if lag > lagLimitMicroseconds { behind = true }
        tick(now: t)
        afterTick()
        armTick()
    }

    // MARK: what drivers override

    func tick(now: Int64) {}
    /// After a completion on `c`: only `c`'s state changed, so only `c` can have room now.
    func afterEvent(_ c: ClientConnection) {}
    /// After the tick: anything may have changed (a reconnect, a timeout, a new second).
    func afterTick() {}
    func connectionReady(_ c: ClientConnection) { c.pool?.pump(now: now) }
    func connectionClosed(_ c: ClientConnection) {
        if c.retireWhenIdle {
            c.pool = nil
            freeSlots.append(Int(c.slot))
        } else {
            c.pool?.pump(now: now)
        }
    }
    func connectionFailed(_ c: ClientConnection, kind: String) {
        recorder.error(kind == "connect" || kind == "tls" || kind == "alpn" ? kind : "connection_\(kind)")
    }
    func exchangeFailed(_ e: Exchange, kind: String) {
        recorder.error(kind)
        progress.errors.add(1)
    }
    func exchangeCompleted(_ e: Exchange, on c: ClientConnection, now t: Int64) {
        record(e, now: t)
        c.pool?.pump(now: t)
    }

    /// Records one whole response: TTFB corrected (from the intended time) and not, the hit/miss
    /// split, status classes as errors.
    func record(_ e: Exchange, now t: Int64) {
        recorder.responses += 1
        progress.responses.add(1)
        recorder.statuses[e.status, default: 0] += 1
        recorder.bytes += e.bytes
        if let head = e.head {
            recorder.ttfbHeadCorrected.record(microseconds: head - e.intended)
            recorder.ttfbHeadUncorrected.record(microseconds: head - e.sent)
            recorder.ttfbSeries.record(
                second: Int((e.intended - startMicroseconds) / 1_000_000), microseconds: head - e.intended)
            if let hit = e.hit {
                if hit {
                    recorder.hits += 1; recorder.hitTTFB.record(microseconds: head - e.intended)
                } else {
                    recorder.misses += 1; recorder.missTTFB.record(microseconds: head - e.intended)
                }
            }
        }
        if let first = e.firstBodyByte {
            recorder.ttfbBodyCorrected.record(microseconds: first - e.intended)
            recorder.ttfbBodyUncorrected.record(microseconds: first - e.sent)
        }
        recorder.totalCorrected.record(microseconds: t - e.intended)
        if e.status >= 500 {
            recorder.error("status_5xx"); progress.errors.add(1)
        } else if e.status >= 400 {
            recorder.error("status_4xx"); progress.errors.add(1)
        }
    }

    /// Closes every socket at the end of a run (no loop left to block).
    func closeAll() {
        for c in connections where c.fd >= 0 { Glibc.close(c.fd); c.fd = -1 }
    }
}

/// Connections to one endpoint, at most `connectionsMax`, each carrying at most `streamsMax`
/// exchanges; requests wait in a bounded queue (with their intended time: the wait counts in
/// the corrected latency) until a connection can take them.
final class ConnectionPool {
    struct Pending {
        var method = "GET"
        var path: String
        var headers: [(name: String, value: String)]
        var body: [UInt8] = []
        var exchange: Exchange
    }

    let endpoint: Endpoint
    let connectionsMax: Int
    let streamsMax: Int
    let queueMax: Int
    unowned let loop: LoadLoop
    private(set) var connections: [ClientConnection] = []
    private var queue: [Pending] = []
    private var queueHead = 0
    private var closed = false

    init(loop: LoadLoop, endpoint: Endpoint, connectionsMax: Int, streamsMax: Int, queueMax: Int) {
        self.loop = loop; self.endpoint = endpoint; self.connectionsMax = connectionsMax
        self.streamsMax = streamsMax; self.queueMax = queueMax
    }

    var queued: Int { queue.count - queueHead }

    /// False when the queue is full (the caller counts it as an error).
    func submit(_ p: Pending) -> Bool {
        guard !closed, queued < queueMax else { return false }
        queue.append(p)
        pump(now: loop.now)
        return true
    }

    /// Starts what can start; opens connections while requests wait and the bound allows; fails
    /// requests that waited past the timeout without a connection (`not_sent`).
    func pump(now: Int64) {
        guard !closed else { return }
        while queueHead < queue.count {
            guard let c = connections.first(where: { $0.canStart(streamsMax: streamsMax) }) else { break }
            var p = queue[queueHead]
            queueHead += 1
            p.exchange.sent = now
            if !c.start(method: p.method, path: p.path, headers: p.headers, body: p.body, exchange: p.exchange) {
                loop.exchangeFailed(p.exchange, kind: "protocol")
            }
        }
        while queueHead < queue.count, now - queue[queueHead].exchange.intended > loop.timeoutMicroseconds {
            loop.exchangeFailed(queue[queueHead].exchange, kind: "not_sent")
            queueHead += 1
        }
        if queueHead > 1024 && queueHead * 2 > queue.count { queue.removeFirst(queueHead); queueHead = 0 }
        if queueHead == queue.count { queue.removeAll(keepingCapacity: true); queueHead = 0; return }
        // Waiting requests and no connection that will take them soon: open one.
        let opening = connections.filter { $0.state != .closed && $0.state != .ready }.count
        guard opening == 0 || connections.count < connectionsMax else { return }
        if let c = connections.first(where: { $0.state == .closed && now >= $0.reopenAtMicroseconds }) {
            c.open()
        } else if connections.count < connectionsMax, opening < queued {
            let c = loop.makeConnection(endpoint, pool: self)
            connections.append(c)
            c.open()
        }
    }

    /// The owner is done: queued requests are dropped (not sent, not failed: nobody waits for
    /// them), connections close once idle and go back to the loop.
    func close() {
        closed = true
        queue.removeAll(); queueHead = 0
        for c in connections { c.release() }
        connections.removeAll()
    }
}
