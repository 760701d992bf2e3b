import CEdgeShims

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

/// One io_uring, owned by one thread. Preparation calls never fail for a full submission queue:
/// they submit what is queued and retry, so callers see only real errors.
public final class Ring {
    let ring: OpaquePointer
    public let completionBatchMax: Int
    public private(set) var completionCount = 0
    let datas: UnsafeMutablePointer<UInt64>
    let results: UnsafeMutablePointer<Int32>
    let flags: UnsafeMutablePointer<UInt32>

    public init(entries: Int) throws {
        var err: Int32 = 0
        guard let r = edge_ring_create(UInt32(entries), &err) else { throw RingError(operation: "io_uring_queue_init", errno: -err) }
        ring = r
        completionBatchMax = entries * 2
        datas = .allocate(capacity: completionBatchMax)
        results = .allocate(capacity: completionBatchMax)
        flags = .allocate(capacity: completionBatchMax)
    }

    deinit {
        edge_ring_destroy(ring)
        datas.deallocate(); results.deallocate(); flags.deallocate()
    }

    @inline(__always) private func retrying(_ prep: () -> Int32) {
        var rc = prep()
        while rc == EBUSY_VALUE {
            _ = edge_ring_submit(ring)
            rc = prep()
        }
    }

    public func acceptMultishot(fd: Int32, _ d: UserData) { retrying { edge_prep_multishot_accept(ring, fd, d.raw) } }
    public func recv(fd: Int32, into buffer: UnsafeMutableRawPointer, length: Int, _ d: UserData) {
        retrying { edge_prep_recv(ring, fd, buffer, length, d.raw) }
    }
    public func send(fd: Int32, from buffer: UnsafeRawPointer, length: Int, _ d: UserData) {
        retrying { edge_prep_send(ring, fd, buffer, length, d.raw) }
    }
    public func read(fd: Int32, into buffer: UnsafeMutableRawPointer, length: Int, offset: Int, _ d: UserData) {
        retrying { edge_prep_read(ring, fd, buffer, UInt32(length), UInt64(offset), d.raw) }
    }
    public func write(fd: Int32, from buffer: UnsafeRawPointer, length: Int, offset: UInt64, _ d: UserData) {
        retrying { edge_prep_write(ring, fd, buffer, UInt32(length), offset, d.raw) }
    }
    public func openRead(path: UnsafePointer<CChar>, _ d: UserData) { retrying { edge_prep_openat(ring, path, 0, d.raw) } }
    public func statx(fd: Int32, into buffer: UnsafeMutableRawPointer, _ d: UserData) {
        retrying { edge_prep_statx_fd(ring, fd, buffer.assumingMemoryBound(to: CEdgeShims.statx.self), d.raw) }
    }
    public func socket(ipv6: Bool, _ d: UserData) { retrying { edge_prep_socket(ring, ipv6 ? 1 : 0, d.raw) } }
    public func connect(fd: Int32, address: UnsafeRawPointer, length: Int32, _ d: UserData) {
        retrying { edge_prep_connect(ring, fd, address, length, d.raw) }
    }
    /// Posts a completion carrying `d` into another ring (a cross-thread wake-up, no syscall of its own).
    public func message(ringFD: Int32, _ d: UserData, result: Int32 = 0) {
        retrying { edge_prep_msg_ring(ring, ringFD, d.raw, result, 0) }
    }
    public var fd: Int32 { edge_ring_fd(ring) }
    public func openCreate(path: UnsafePointer<CChar>, _ d: UserData) { retrying { edge_prep_open_create(ring, path, d.raw) } }
    public func fsync(fd: Int32, _ d: UserData) { retrying { edge_prep_fsync(ring, fd, d.raw) } }
    public func rename(from: UnsafePointer<CChar>, to: UnsafePointer<CChar>, _ d: UserData) { retrying { edge_prep_rename(ring, from, to, d.raw) } }
    public func unlink(path: UnsafePointer<CChar>, _ d: UserData) { retrying { edge_prep_unlink(ring, path, d.raw) } }
    public func cancel(fd: Int32, _ d: UserData) { retrying { edge_prep_cancel_fd(ring, fd, d.raw) } }
    public func close(fd: Int32, _ d: UserData) { retrying { edge_prep_close(ring, fd, d.raw) } }
    /// Shutdown then close, linked: wakes any receive still parked on the socket.
    public func shutdownAndClose(fd: Int32, _ d: UserData) { retrying { edge_prep_shutdown_close(ring, fd, d.raw) } }
    public func timeout(milliseconds: Int, storage: UnsafeMutableRawPointer, _ d: UserData) {
        retrying { edge_prep_timeout(ring, storage, UInt64(milliseconds), d.raw) }
    }
    public func readEventFD(fd: Int32, into value: UnsafeMutablePointer<UInt64>, _ d: UserData) {
        retrying { edge_prep_eventfd_read(ring, fd, value, d.raw) }
    }

    /// Submits everything queued, waits for at least one completion, and copies the ready
    /// completions into a fixed array (drained before any handler runs, so handlers may queue
    /// more work freely). Returns the count; read them with `completion(at:)`.
    public func submitAndWait() throws -> Int {
        let n = edge_ring_submit_wait_drain(ring, datas, results, flags, Int32(completionBatchMax))
        if n < 0 { throw RingError(operation: "io_uring_submit_and_wait", errno: -n) }
        completionCount = Int(n)
        return Int(n)
    }

    @inline(__always) public func completion(at i: Int) -> (data: UserData, result: Int32, more: Bool) {
        (UserData(raw: datas[i]), results[i], edge_cqe_more(flags[i]) != 0)
    }

    public func submit() { _ = edge_ring_submit(ring) }
}

let EBUSY_VALUE: Int32 = -16

public enum Clock {
    @inline(__always) public static func monotonicMicroseconds() -> Int64 { edge_monotonic_microseconds() }
    @inline(__always) public static func wallMilliseconds() -> Int64 { edge_wall_milliseconds() }
}
