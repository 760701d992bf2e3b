import EdgeIO
import Glibc

/// A contiguous byte buffer with a read and a write index. Owned by one thread.
final class ByteBuffer {
    // `@exclusivity(unchecked)`: see "Exclusivity checks" in docs/ARCHITECTURE.md (scalars of a
    // one-thread object; collections keep their checks).
    @exclusivity(unchecked) private(set) var storage: UnsafeMutableRawPointer
    @exclusivity(unchecked) private(set) var capacity: Int
    @exclusivity(unchecked) private(set) var head = 0
    @exclusivity(unchecked) private(set) var tail = 0

    init(capacity: Int) {
        self.capacity = max(capacity, 64)
        storage = .allocate(byteCount: self.capacity, alignment: 16)
    }
    deinit { storage.deallocate() }

    var count: Int { tail - head }
    var isEmpty: Bool { tail == head }
    var readable: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: storage + head, count: tail - head) }

    func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        let w = reserve(bytes.count)
        w.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        tail += bytes.count
    }
    func append(_ bytes: [UInt8]) { bytes.withUnsafeBytes { append($0) } }
    func append(_ s: String) { var s = s; s.withUTF8 { append(UnsafeRawBufferPointer($0)) } }

    /// Space for at least `n` more bytes at the tail (compacting or growing); commit with `commit`.
    func reserve(_ n: Int) -> UnsafeMutableRawPointer {
        if capacity - tail < n {
            if head > 0 {
                if tail > head { (storage).copyMemory(from: storage + head, byteCount: tail - head) }
                tail -= head; head = 0
            }
            if capacity - tail < n {
                var newCapacity = capacity * 2
                while newCapacity - tail < n { newCapacity *= 2 }
                let s = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
                s.copyMemory(from: storage, byteCount: tail)
                storage.deallocate()
                storage = s; capacity = newCapacity
            }
        }
        return storage + tail
    }
    var writableCount: Int { capacity - tail }
    func commit(_ n: Int) { tail += n }
    func consume(_ n: Int) {
        head += n
        if head == tail { head = 0; tail = 0 }
    }
    func clear() { head = 0; tail = 0 }

    /// Gives memory back when a connection goes idle after a large burst.
    func shrink(to target: Int) {
        guard isEmpty, capacity > target else { return }
        storage.deallocate()
        capacity = target
        storage = .allocate(byteCount: target, alignment: 16)
        head = 0; tail = 0
    }
}

/// Output of one connection: bytes copied into its buffer (frame and response headers, sealed
/// TLS records) and body bytes *borrowed* from a read buffer or a slice, kept in order as pieces
/// and sent together by one gathered send, so a body's bytes are never copied in user space on a
/// cleartext connection. A send in flight owns `sending` and its pieces; new bytes go to
/// `pending`, so no byte under the kernel's eyes ever moves. When a send completes the two swap.
/// A borrowed piece keeps what it points into alive (a slice buffer by reference; a read buffer
/// by its count of users, given back to the pool when its last piece is sent or discarded).
final class OutputQueue {
    struct Piece {
        /// Where a copied piece starts in its buffer (nil `pointer`), which may move as it grows.
        var offset: Int
        /// A borrowed piece's bytes.
        var pointer: UnsafeRawPointer?
        var count: Int
        var keepAlive: AnyObject?
        var lent: ReadBuffer?
    }

    private var sending: ByteBuffer
    private var pending: ByteBuffer
    private var sendingPieces: [Piece] = []
    private var pendingPieces: [Piece] = []
    // `@exclusivity(unchecked)`: see "Exclusivity checks" in docs/ARCHITECTURE.md (scalars of a
    // one-thread object; collections keep their checks).
    /// The first piece of `sendingPieces` not yet sent whole.
    @exclusivity(unchecked) private var firstUnsent = 0
    @exclusivity(unchecked) private var sendingBytes = 0
    @exclusivity(unchecked) private var pendingBytes = 0
    /// The copied bytes at the end of `pending` not yet in `pendingPieces`: appends only count
    /// them, and they become one piece when a borrowed piece follows or the queue is sent.
    @exclusivity(unchecked) private var openStart = 0
    @exclusivity(unchecked) private var openCount = 0
    @exclusivity(unchecked) private(set) var inFlight = false
    /// Pieces one send gathers at most (the rest go in the next one).
    static let iovecsMax = 64
    private let iovecs: UnsafeMutablePointer<iovec>
    private let message: UnsafeMutablePointer<msghdr>

    init(capacity: Int) {
        sending = ByteBuffer(capacity: capacity)
        pending = ByteBuffer(capacity: capacity)
        iovecs = .allocate(capacity: Self.iovecsMax)
        message = .allocate(capacity: 1)
        message.initialize(to: msghdr())
    }
    deinit { iovecs.deallocate(); message.deallocate() }

    var count: Int { sendingBytes + pendingBytes }
    var isEmpty: Bool { count == 0 }

    /// Copies `bytes` in.
    func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        reserve(bytes.count).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        commit(bytes.count)
    }

    /// Space for at least `n` more copied bytes; `commit` the ones written.
    func reserve(_ n: Int) -> UnsafeMutableRawPointer { pending.reserve(n) }

    func commit(_ n: Int) {
        guard n > 0 else { return }
        // `pending` is only ever appended to and cleared (never consumed from the front), so an
        // offset into it stays right when it grows; copied bytes are contiguous.
        if openCount == 0 { openStart = pending.count }
        pending.commit(n)
        pendingBytes += n
        openCount += n
    }

    private func closeOpenPiece() {
        guard openCount > 0 else { return }
        pendingPieces.append(Piece(offset: openStart, pointer: nil, count: openCount, keepAlive: nil, lent: nil))
        openCount = 0
    }

    /// Queues `bytes` without copying them: `keepAlive` (a slice buffer) or `lent` (a read buffer
    /// whose user count the caller has already raised for this piece) keeps them valid until sent.
    func appendBorrowed(_ bytes: UnsafeRawBufferPointer, keepAlive: AnyObject?, lent: ReadBuffer?) {
        guard bytes.count > 0 else { lent?.release(); return }
        closeOpenPiece()
        pendingPieces.append(
            Piece(offset: 0, pointer: bytes.baseAddress, count: bytes.count, keepAlive: keepAlive, lent: lent))
        pendingBytes += bytes.count
    }

    enum Send {
        case bytes(UnsafeRawBufferPointer)
        case message(UnsafePointer<msghdr>)
    }

    /// What to hand to the next send, or nil when there is nothing (or a send is in flight).
    func nextSend() -> Send? {
        guard !inFlight else { return nil }
        if firstUnsent == sendingPieces.count {
            guard pendingBytes > 0 else { return nil }
            closeOpenPiece()
            swap(&sending, &pending)
            swap(&sendingPieces, &pendingPieces)
            firstUnsent = 0
            sendingBytes = pendingBytes
            pendingBytes = 0
        }
        inFlight = true
        if sendingPieces.count - firstUnsent == 1 {
            return .bytes(UnsafeRawBufferPointer(start: start(of: sendingPieces[firstUnsent]), count: sendingBytes))
        }
        let n = min(sendingPieces.count - firstUnsent, Self.iovecsMax)
        for i in 0..<n {
            let piece = sendingPieces[firstUnsent + i]
            iovecs[i] = iovec(iov_base: UnsafeMutableRawPointer(mutating: start(of: piece)), iov_len: piece.count)
        }
        message.pointee.msg_iov = iovecs
        message.pointee.msg_iovlen = n
        return .message(UnsafePointer(message))
    }

    private func start(of piece: Piece) -> UnsafeRawPointer {
        piece.pointer ?? UnsafeRawPointer(sending.storage + piece.offset)
    }

    /// The last send took `n` bytes (0: it failed or must be retried).
    func sent(_ n: Int) {
        inFlight = false
        sendingBytes -= n
        var left = n, first = firstUnsent
        sendingPieces.withUnsafeMutableBufferPointer { pieces in   // one access for the walk
            while left > 0 {
                let c = pieces[first].count
                if c <= left {
                    left -= c
                    Self.finish(&pieces[first])
                    first += 1
                } else {
                    pieces[first].count -= left
                    pieces[first].offset += left
                    pieces[first].pointer = pieces[first].pointer.map { $0 + left }
                    left = 0
                }
            }
        }
        firstUnsent = first
        if firstUnsent == sendingPieces.count {
            sendingPieces.removeAll(keepingCapacity: true)
            firstUnsent = 0
            sending.clear()
        }
    }

    /// Whether the send in flight gathers bytes of a file mapping: then EFAULT is the file's doing
    /// (truncated under the response), not a bug of the server's (see `FileMapping`). Asked only
    /// when a send failed with EFAULT.
    var sendsFromFileMappings: Bool {
        sendingPieces[firstUnsent...].prefix(Self.iovecsMax).contains { $0.keepAlive is FileMapping }
    }

    private static func finish(_ piece: inout Piece) {
        piece.lent?.release()
        piece.lent = nil
        piece.keepAlive = nil
    }

    /// Drops everything queued (the connection is gone and nothing is in flight), giving lent
    /// read buffers back.
    func discard(shrinkingTo capacity: Int) {
        for i in firstUnsent..<sendingPieces.count { Self.finish(&sendingPieces[i]) }
        for i in pendingPieces.indices { Self.finish(&pendingPieces[i]) }
        sendingPieces.removeAll(keepingCapacity: true)
        pendingPieces.removeAll(keepingCapacity: true)
        firstUnsent = 0
        sendingBytes = 0
        pendingBytes = 0
        openCount = 0
        inFlight = false
        sending.clear(); pending.clear()
        sending.shrink(to: capacity); pending.shrink(to: capacity)
    }
}

/// A file-read buffer of a worker's pool. The body that reads into it and every output piece
/// that sends from it without a copy are its users; the last to let go gives it back to the pool.
/// Owned by one thread.
final class ReadBuffer {
    let bytes: UnsafeMutableRawPointer
    @exclusivity(unchecked) fileprivate(set) var users = 0
    // The worker owns the pool and every connection whose output could hold this buffer, and
    // gives buffers back before it goes.
    fileprivate unowned(unsafe) let pool: BufferPool

    fileprivate init(size: Int, pool: BufferPool) {
        bytes = .allocate(byteCount: size, alignment: 4096)
        self.pool = pool
    }
    deinit { bytes.deallocate() }

    /// One more user (an output piece about to send from it).
    func share() { users += 1 }

    /// One user fewer: the last gives the buffer back to its pool.
    func release() {
        precondition(users > 0, "a read buffer released more often than taken")
        users -= 1
        if users == 0 { pool.give(self) }
    }

    /// Whether anything besides its taker still sends from it (a read into it must wait).
    var isShared: Bool { users > 1 }
}

/// Fixed-size buffers for file reads, recycled per worker so the steady state allocates nothing.
/// The buffers kept for reuse are a stack in memory allocated once for `keepMax` (the last given
/// back is the next taken, still warm in the CPU's cache). An `Array` property paid a dynamic
/// exclusivity check on each take and give (see "Exclusivity checks" in docs/ARCHITECTURE.md);
/// the first `keptCount` slots are initialized, the rest are not.
final class BufferPool {
    let size: Int
    let keepMax: Int
    // `@exclusivity(unchecked)`: see "Exclusivity checks" in docs/ARCHITECTURE.md.
    @exclusivity(unchecked) private var kept: UnsafeMutablePointer<ReadBuffer>
    @exclusivity(unchecked) private(set) var keptCount = 0
    /// Buffers taken and not given back (0 whenever no body is in flight and no output holds one).
    @exclusivity(unchecked) private(set) var outstanding = 0

    init(size: Int, keepMax: Int) {
        precondition(keepMax >= 0, "a negative number of buffers to keep")
        self.size = size
        self.keepMax = keepMax
        kept = .allocate(capacity: max(keepMax, 1))
    }
    deinit {
        kept.deinitialize(count: keptCount)
        kept.deallocate()
    }

    /// A buffer with one user, the taker.
    func take() -> ReadBuffer {
        outstanding += 1
        let b: ReadBuffer
        if keptCount > 0 {
            keptCount -= 1
            b = (kept + keptCount).move()
        } else {
            b = ReadBuffer(size: size, pool: self)
        }
        b.users = 1
        return b
    }

    fileprivate func give(_ b: ReadBuffer) {
        outstanding -= 1
        assert(outstanding >= 0, "a read buffer given back twice")
        if keptCount < keepMax {
            (kept + keptCount).initialize(to: b)
            keptCount += 1
        }
    }
}

/// Operations in flight on a ring, by slot: the slot travels in the completion's user data and
/// finds the operation again. Freed slots are reused, so the table is as large as the most
/// operations ever in flight at once (each owner bounds that).
struct SlotTable<Element> {
    private(set) var items: [Element?] = []
    private var freeSlots: [UInt32] = []

    /// Stores `element` in a free slot; returns the slot.
    mutating func insert(_ element: Element) -> UInt32 {
        if let s = freeSlots.popLast() {
            items[Int(s)] = element
            return s
        }
        items.append(element)
        return UInt32(items.count - 1)
    }

    /// The element in `slot`, nil when the slot is free or out of range (a stale completion).
    subscript(slot: UInt32) -> Element? { Int(slot) < items.count ? items[Int(slot)] : nil }

    /// Takes the element out of `slot` and frees the slot.
    @discardableResult
    mutating func remove(_ slot: UInt32) -> Element? {
        guard let e = self[slot] else { return nil }
        items[Int(slot)] = nil
        freeSlots.append(slot)
        return e
    }

    var isEmpty: Bool { items.count == freeSlots.count }
}
