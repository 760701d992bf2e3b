import EdgeIO
import XCTest

/// How a socket completion's result is read: one case per way the caller reacts.
final class TransferOutcomeTests: XCTestCase {
    func testReceiveResults() {
        XCTAssertEqual(TransferOutcome(receiveResult: 17), .bytes(17))
        XCTAssertEqual(TransferOutcome(receiveResult: 0), .peerClosed)
        XCTAssertEqual(TransferOutcome(receiveResult: Errno.again.result), .retry)
        XCTAssertEqual(TransferOutcome(receiveResult: Errno.noBuffers.result), .retry)
        XCTAssertEqual(TransferOutcome(receiveResult: Errno.interrupted.result), .retry)
        XCTAssertEqual(TransferOutcome(receiveResult: Errno.connectionReset.result), .failed(.connectionReset))
    }

    func testSendResults() {
        XCTAssertEqual(TransferOutcome(sendResult: 0), .bytes(0))
        XCTAssertEqual(TransferOutcome(sendResult: 4096), .bytes(4096))
        XCTAssertEqual(TransferOutcome(sendResult: Errno.brokenPipe.result), .failed(.brokenPipe))
        XCTAssertEqual(TransferOutcome(sendResult: Errno.again.result), .retry)
    }

    func testServerBugsAreNamed() {
        XCTAssertTrue(Errno.badDescriptor.isServerBug && Errno.badAddress.isServerBug)
        XCTAssertFalse(Errno.connectionReset.isServerBug)
        XCTAssertEqual("\(Errno(104))", "ECONNRESET")
        XCTAssertEqual("\(Errno(200))", "errno 200")
    }
}
