import Glibc
import XCTest

@testable import EdgeServer

/// The output queue as a state machine: copied and borrowed pieces in order, gathered sends,
/// partial sends, and when a lent read buffer goes back to its pool.
final class OutputQueueTests: XCTestCase {
    /// What the next send would hand the kernel, gathered into one array.
    func nextBytes(_ q: OutputQueue) -> [UInt8]? {
        guard let send = q.nextSend() else { return nil }
        switch send {
        case .bytes(let b): return Array(b)
        case .message(let m):
            var out: [UInt8] = []
            for i in 0..<Int(m.pointee.msg_iovlen) {
                let v = m.pointee.msg_iov[i]
                out += UnsafeRawBufferPointer(start: v.iov_base, count: v.iov_len)
            }
            return out
        }
    }

    func copy(_ q: OutputQueue, _ s: String) { Array(s.utf8).withUnsafeBytes { q.append($0) } }

    /// A read buffer from `pool` holding `text`, lent to `q` (as `Connection.writeBody` does).
    func lend(_ q: OutputQueue, _ pool: BufferPool, _ text: String) -> ReadBuffer {
        let b = pool.take()
        let bytes = Array(text.utf8)
        bytes.withUnsafeBytes { b.bytes.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        b.share()
        q.appendBorrowed(UnsafeRawBufferPointer(start: b.bytes, count: bytes.count), keepAlive: nil, lent: b)
        return b
    }

    func testPiecesGoOutInOrderAndLentBuffersComeBackWhenSent() {
        let pool = BufferPool(size: 4096, keepMax: 4)
        let q = OutputQueue(capacity: 64)
        copy(q, "HEAD")
        let b = lend(q, pool, "body-one")
        b.release()   // the body lets go; the queue still holds it
        XCTAssertEqual(pool.outstanding, 1)
        copy(q, "|tail")
        XCTAssertEqual(q.count, 17)
        XCTAssertEqual(nextBytes(q).map { String(decoding: $0, as: UTF8.self) }, "HEADbody-one|tail")
        XCTAssertNil(q.nextSend(), "one send in flight at a time")
        // New bytes while the send is in flight go behind it, whatever the send takes.
        copy(q, "+next")
        q.sent(6)   // "HEADbo": the borrowed piece is only partly sent
        XCTAssertEqual(pool.outstanding, 1, "a buffer goes back only when its last piece is sent whole")
        XCTAssertEqual(nextBytes(q).map { String(decoding: $0, as: UTF8.self) }, "dy-one|tail")
        q.sent(6)   // "dy-one"
        XCTAssertEqual(pool.outstanding, 0)
        XCTAssertEqual(nextBytes(q).map { String(decoding: $0, as: UTF8.self) }, "|tail")
        q.sent(5)
        XCTAssertEqual(nextBytes(q).map { String(decoding: $0, as: UTF8.self) }, "+next")
        q.sent(5)
        XCTAssertTrue(q.isEmpty)
        XCTAssertNil(q.nextSend())
    }

    func testAFailedSendKeepsEverythingAndDiscardGivesBuffersBack() {
        let pool = BufferPool(size: 4096, keepMax: 4)
        let q = OutputQueue(capacity: 64)
        let a = lend(q, pool, "aaaa"), b = lend(q, pool, "bbbb")
        a.release(); b.release()
        XCTAssertEqual(nextBytes(q)?.count, 8)
        q.sent(0)   // EAGAIN: nothing taken
        XCTAssertEqual(q.count, 8)
        XCTAssertEqual(nextBytes(q).map { String(decoding: $0, as: UTF8.self) }, "aaaabbbb")
        q.sent(0)
        XCTAssertEqual(pool.outstanding, 2)
        q.discard(shrinkingTo: 64)
        XCTAssertEqual(pool.outstanding, 0, "a reset connection gives its lent buffers back")
        XCTAssertTrue(q.isEmpty)
        XCTAssertFalse(q.inFlight)
    }

    func testABufferStillSendingIsNotReadInto() {
        let pool = BufferPool(size: 4096, keepMax: 4)
        let b = lend(OutputQueue(capacity: 64), pool, "x")
        XCTAssertTrue(b.isShared)
        b.release()
        XCTAssertFalse(b.isShared)
        XCTAssertEqual(pool.outstanding, 1)
    }

    /// The pool keeps at most `keepMax` buffers, hands the last one given back out first, and
    /// releases the rest: the buffers beyond the bound are freed, not kept.
    func testThePoolKeepsAtMostItsBoundAndReusesTheLastGivenBack() {
        let pool = BufferPool(size: 64, keepMax: 2)
        weak var beyondTheBound: ReadBuffer?
        var second: ObjectIdentifier?
        do {
            let taken = (0..<3).map { _ in pool.take() }
            XCTAssertEqual(pool.outstanding, 3)
            beyondTheBound = taken[2]
            second = ObjectIdentifier(taken[1])
            for b in taken { b.release() }   // given back in order: the third finds the pool full
        }
        XCTAssertEqual(pool.outstanding, 0)
        XCTAssertEqual(pool.keptCount, 2)
        XCTAssertNil(beyondTheBound, "a buffer given back beyond keepMax is freed, not kept")
        let again = pool.take()
        XCTAssertEqual(ObjectIdentifier(again), second, "the last buffer kept is the first taken again")
        XCTAssertEqual(pool.keptCount, 1)
        XCTAssertEqual(again.users, 1)
        again.release()
        XCTAssertEqual(pool.keptCount, 2)
    }

    func testMorePiecesThanOneSendGathers() {
        let pool = BufferPool(size: 64, keepMax: 200)
        let q = OutputQueue(capacity: 64)
        var expected = ""
        for i in 0..<(OutputQueue.iovecsMax + 10) {
            copy(q, "<")
            let text = String(i)
            lend(q, pool, text).release()
            expected += "<" + text
        }
        var out = ""
        var sends = 0
        while let bytes = nextBytes(q) {
            out += String(decoding: bytes, as: UTF8.self)
            q.sent(bytes.count)
            sends += 1
        }
        XCTAssertEqual(out, expected)
        XCTAssertEqual(sends, 3, "at most \(OutputQueue.iovecsMax) pieces per send")
        XCTAssertEqual(pool.outstanding, 0)
    }

    func testCopiedBytesStayRightWhenTheBufferGrows() {
        let q = OutputQueue(capacity: 64)
        var expected: [UInt8] = []
        for i in 0..<100 {
            let chunk = [UInt8](repeating: UInt8(i), count: 37)
            chunk.withUnsafeBytes { q.append($0) }
            expected += chunk
        }
        XCTAssertEqual(nextBytes(q), expected)
    }
}
