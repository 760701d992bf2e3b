import CEdgeRing
import Glibc

/// What a completion belongs to. The worker packs (kind, slot, generation) into the 64-bit
/// user_data, so a completion finds its owner without any allocation or lookup table, and a
/// completion for a slot that has since been reused is recognised by its stale generation.
public struct UserData: Equatable {
    public var raw: UInt64
    public init(raw: UInt64) { self.raw = raw }
    public init(kind: UInt8, slot: UInt32, generation: UInt32 = 0) {
        raw = UInt64(kind) << 56 | UInt64(generation & 0xFF_FFFF) << 32 | UInt64(slot)
    }
    public var kind: UInt8 { UInt8(truncatingIfNeeded: raw >> 56) }
    public var slot: UInt32 { UInt32(truncatingIfNeeded: raw) }
    public var generation: UInt32 { UInt32(truncatingIfNeeded: raw >> 32) & 0xFF_FFFF }
}

public struct RingError: Error, CustomStringConvertible {
    public let operation: String
    public let errno: Int32
    public var description: String { "\(operation) failed: errno \(errno)" }
}

/// One io_uring, owned by one thread: the only way the server does I/O. Preparation calls never
/// fail for a full submission queue: they submit what is queued and retry, so callers see only
/// real errors.
///
/// The same server code runs on the kernel's ring or on `SimulatedIO` (tests): the backend is an
/// enum, so choosing it costs one predictable branch per operation and no existential call or
/// allocation. (A generic parameter would have to reach nghttp2's C callbacks, which cannot be
/// generic; see docs/ARCHITECTURE.md.)
public final class Ring {
    enum Backend {
        case kernel(OpaquePointer)
        case simulated(SimulatedIO)
    }
    let backend: Backend
    public let completionBatchMax: Int
    public private(set) var completionCount = 0
    let datas: UnsafeMutablePointer<UInt64>
    let results: UnsafeMutablePointer<Int32>
    let flags: UnsafeMutablePointer<UInt32>

    public init(entries: Int) throws {
        var err: Int32 = 0
        guard let r = edge_ring_create(UInt32(entries), &err) else {
            throw RingError(operation: "io_uring_queue_init", errno: -err)
        }
        backend = .kernel(r)
        completionBatchMax = entries * 2
        datas = .allocate(capacity: completionBatchMax)
        results = .allocate(capacity: completionBatchMax)
        flags = .allocate(capacity: completionBatchMax)
    }

    /// A ring whose operations complete in `simulated`, on its virtual clock.
    public init(simulated: SimulatedIO, completionBatchMax: Int = 256) {
        backend = .simulated(simulated)
        self.completionBatchMax = completionBatchMax
        datas = .allocate(capacity: completionBatchMax)
        results = .allocate(capacity: completionBatchMax)
        flags = .allocate(capacity: completionBatchMax)
    }

    deinit {
        if case .kernel(let r) = backend { edge_ring_destroy(r) }
        datas.deallocate(); results.deallocate(); flags.deallocate()
    }

    /// Queues one operation: on the kernel ring through `prep` (retried after a submit while the
    /// submission queue is full), in the simulation as `operation`.
    @inline(__always) private func queue(
        _ operation: @autoclosure () -> SimulatedIO.Operation, _ d: UserData,
        _ prep: (OpaquePointer) -> Int32
    ) {
        switch backend {
        case .kernel(let ring):
            var rc = prep(ring)
            while rc == Errno.busy.result {
                _ = edge_ring_submit(ring)
                rc = prep(ring)
            }
            precondition(rc == 0, "io_uring prep failed: \(Errno(-rc))")
        case .simulated(let sim):
            sim.submit(operation(), d.raw)
        }
    }

    public func acceptMultishot(fd: Int32, _ d: UserData) {
        queue(.accept(fd: fd), d) { edge_prep_multishot_accept($0, fd, d.raw) }
    }
    public func recv(fd: Int32, into buffer: UnsafeMutableRawPointer, length: Int, _ d: UserData) {
        queue(.recv(fd: fd, buffer: buffer, length: length), d) { edge_prep_recv($0, fd, buffer, length, d.raw) }
    }
    public func send(fd: Int32, from buffer: UnsafeRawPointer, length: Int, _ d: UserData) {
        queue(.send(fd: fd, pieces: [UnsafeRawBufferPointer(start: buffer, count: length)]), d) {
            edge_prep_send($0, fd, buffer, length, d.raw)
        }
    }
    /// Sends the pieces `message` gathers, in one operation: `message` and its iovecs must stay
    /// valid, and their bytes unchanged, until the completion.
    public func sendMessage(fd: Int32, _ message: UnsafePointer<msghdr>, _ d: UserData) {
        queue(.send(fd: fd, pieces: Self.pieces(message)), d) { edge_prep_sendmsg($0, fd, message, d.raw) }
    }
    private static func pieces(_ message: UnsafePointer<msghdr>) -> [UnsafeRawBufferPointer] {
        (0..<Int(message.pointee.msg_iovlen)).map {
            let v = message.pointee.msg_iov[$0]
            return UnsafeRawBufferPointer(start: v.iov_base, count: v.iov_len)
        }
    }
    public func read(fd: Int32, into buffer: UnsafeMutableRawPointer, length: Int, offset: Int, _ d: UserData) {
        queue(.read(fd: fd, buffer: buffer, length: length, offset: offset), d) {
            edge_prep_read($0, fd, buffer, UInt32(length), UInt64(offset), d.raw)
        }
    }
    public func write(fd: Int32, from buffer: UnsafeRawPointer, length: Int, offset: UInt64, _ d: UserData) {
        queue(.write(fd: fd, buffer: buffer, length: length, offset: offset), d) {
            edge_prep_write($0, fd, buffer, UInt32(length), offset, d.raw)
        }
    }
    public func openRead(path: UnsafePointer<CChar>, _ d: UserData) {
        queue(.openRead(path: String(cString: path)), d) { edge_prep_openat($0, path, 0, d.raw) }
    }
    public func statx(fd: Int32, into buffer: UnsafeMutableRawPointer, _ d: UserData) {
        queue(.statx(fd: fd, buffer: buffer), d) {
            edge_prep_statx_fd($0, fd, buffer.assumingMemoryBound(to: CEdgeRing.statx.self), d.raw)
        }
    }
    public func socket(ipv6: Bool, _ d: UserData) { queue(.socket, d) { edge_prep_socket($0, ipv6 ? 1 : 0, d.raw) } }
    public func connect(fd: Int32, address: UnsafeRawPointer, length: Int32, _ d: UserData) {
        // sockaddr_in and sockaddr_in6 both keep the port, big-endian, at bytes 2 and 3.
        queue(
            .connect(
                fd: fd,
                port: Int(address.load(fromByteOffset: 2, as: UInt8.self)) << 8
                    | Int(address.load(fromByteOffset: 3, as: UInt8.self))), d
        ) {
            edge_prep_connect($0, fd, address, length, d.raw)
        }
    }
    /// Posts a completion carrying `d` into another ring (a cross-thread wake-up, no syscall of its own).
    public func message(ringFD: Int32, _ d: UserData, result: Int32 = 0) {
        queue(.message(ringFD: ringFD, data: d.raw, result: result), UserData(raw: 0)) {
            edge_prep_msg_ring($0, ringFD, d.raw, result, 0)
        }
    }
    public var fd: Int32 {
        switch backend {
        case .kernel(let r): return edge_ring_fd(r)
        case .simulated(let sim): return sim.ringFD
        }
    }
    public func openCreate(path: UnsafePointer<CChar>, _ d: UserData) {
        queue(.openCreate(path: String(cString: path)), d) { edge_prep_open_create($0, path, d.raw) }
    }
    public func fsync(fd: Int32, _ d: UserData) { queue(.fsync(fd: fd), d) { edge_prep_fsync($0, fd, d.raw) } }
    public func rename(from: UnsafePointer<CChar>, to: UnsafePointer<CChar>, _ d: UserData) {
        queue(.rename(from: String(cString: from), to: String(cString: to)), d) {
            edge_prep_rename($0, from, to, d.raw)
        }
    }
    public func unlink(path: UnsafePointer<CChar>, _ d: UserData) {
        queue(.unlink(path: String(cString: path)), d) { edge_prep_unlink($0, path, d.raw) }
    }
    public func cancel(fd: Int32, _ d: UserData) { queue(.cancel(fd: fd), d) { edge_prep_cancel_fd($0, fd, d.raw) } }
    public func close(fd: Int32, _ d: UserData) { queue(.close(fd: fd), d) { edge_prep_close($0, fd, d.raw) } }
    /// Shutdown then close, linked: wakes any receive still parked on the socket.
    public func shutdownAndClose(fd: Int32, _ d: UserData) {
        queue(.shutdownClose(fd: fd), d) { edge_prep_shutdown_close($0, fd, d.raw) }
    }
    public func timeout(milliseconds: Int, storage: UnsafeMutableRawPointer, _ d: UserData) {
        queue(.timeout(deadlineMicroseconds: monotonicMicroseconds() + Int64(milliseconds) * 1000), d) {
            edge_prep_timeout($0, storage, UInt64(milliseconds), d.raw)
        }
    }
    public func readEventFD(fd: Int32, into value: UnsafeMutablePointer<UInt64>, _ d: UserData) {
        queue(.eventfdRead(fd: fd, value: value), d) { edge_prep_eventfd_read($0, fd, value, d.raw) }
    }

    /// Submits everything queued, waits for at least one completion, and copies the ready
    /// completions into a fixed array (drained before any handler runs, so handlers may queue
    /// more work freely). Returns the count; read them with `completion(at:)`.
    public func submitAndWait() throws -> Int {
        let n: Int
        switch backend {
        case .kernel(let r):
            let rc = edge_ring_submit_wait_drain(r, datas, results, flags, Int32(completionBatchMax))
            if rc < 0 { throw RingError(operation: "io_uring_submit_and_wait", errno: -rc) }
            n = Int(rc)
        case .simulated(let sim):
            n = sim.submitAndWait(datas: datas, results: results, flags: flags, max: completionBatchMax)
        }
        completionCount = n
        return n
    }

    @inline(__always) public func completion(at i: Int) -> (data: UserData, result: Int32, more: Bool) {
        (UserData(raw: datas[i]), results[i], edge_cqe_more(flags[i]) != 0)
    }

    public func submit() { if case .kernel(let r) = backend { _ = edge_ring_submit(r) } }

    // MARK: what the server asks of the system outside the ring

    /// The monotonic clock (vDSO, no system call), or the simulation's virtual one.
    @inline(__always) public func monotonicMicroseconds() -> Int64 {
        switch backend {
        case .kernel: return edge_monotonic_microseconds()
        case .simulated(let sim): return sim.nowMicroseconds
        }
    }

    @inline(__always) public func wallMilliseconds() -> Int64 {
        switch backend {
        case .kernel: return edge_wall_milliseconds()
        case .simulated(let sim): return sim.wallMilliseconds
        }
    }

    /// TCP_NODELAY on an accepted or connected socket (best effort).
    public func setNoDelay(fd: Int32) {
        if case .kernel = backend { _ = edge_set_nodelay(fd) }
    }

    /// The peer's address as text ("1.2.3.4", "::1"), or "-".
    public func peerAddress(fd: Int32) -> String {
        switch backend {
        case .kernel:
            return withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buffer in
                _ = edge_peer_address(fd, buffer.baseAddress, 64)
                return String(cString: buffer.baseAddress!)
            }
        case .simulated(let sim):
            return sim.peerAddress(fd)
        }
    }
}
