/// A contiguous byte buffer with a read and a write index. Owned by one thread.
final class ByteBuffer {
    private(set) var storage: UnsafeMutableRawPointer
    private(set) var capacity: Int
    private(set) var head = 0
    private(set) var tail = 0

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

/// Output of one connection. A send in flight owns `sending`; new bytes go to `pending`, so no
/// byte under the kernel's eyes ever moves. When a send completes the two swap.
final class OutputQueue {
    var sending: ByteBuffer
    var pending: ByteBuffer
    var inFlight = false

    init(capacity: Int) {
        sending = ByteBuffer(capacity: capacity)
        pending = ByteBuffer(capacity: capacity)
    }
    var count: Int { sending.count + pending.count }
    var isEmpty: Bool { sending.isEmpty && pending.isEmpty }

    /// The bytes to hand to the next send, or nil when there is nothing (or a send is in flight).
    func nextSend() -> UnsafeRawBufferPointer? {
        guard !inFlight else { return nil }
        if sending.isEmpty {
            guard !pending.isEmpty else { return nil }
            swap(&sending, &pending)
        }
        inFlight = true
        return sending.readable
    }
    func sent(_ n: Int) {
        inFlight = false
        sending.consume(n)
    }
}

/// Fixed-size buffers for file reads, recycled per worker so the steady state allocates nothing.
final class BufferPool {
    let size: Int
    private var free: [UnsafeMutableRawPointer] = []
    let keepMax: Int
    init(size: Int, keepMax: Int) { self.size = size; self.keepMax = keepMax }
    /// Buffers taken and not given back (0 whenever no body is in flight).
    private(set) var outstanding = 0
    func take() -> UnsafeMutableRawPointer {
        outstanding += 1
        return free.popLast() ?? .allocate(byteCount: size, alignment: 4096)
    }
    func give(_ p: UnsafeMutableRawPointer) {
        outstanding -= 1
        assert(outstanding >= 0, "a read buffer given back twice")
        if free.count < keepMax { free.append(p) } else { p.deallocate() }
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
