import XCTest
@testable import EdgeServer

/// The connection state machine, driven event by event (no worker, no ring).
final class ConnectionLifeTests: XCTestCase {
    func testReceiveAndSendDeliveredWhileOpen() {
        var life = ConnectionLife()
        XCTAssertFalse(life.isInUse)
        life.accept()
        XCTAssertTrue(life.isOpen)
        XCTAssertTrue(life.submitReceive())
        XCTAssertFalse(life.submitReceive(), "a second receive while one is in flight")
        life.submitSend()
        XCTAssertEqual(life.operationsInFlight, 2)
        XCTAssertEqual(life.completed(receive: true, generation: 0), .deliver)
        XCTAssertFalse(life.receiveInFlight)
        XCTAssertTrue(life.submitReceive(), "the next receive once the last completed")
        XCTAssertEqual(life.completed(receive: false, generation: 0), .deliver)
        XCTAssertEqual(life.operationsInFlight, 1)
    }

    func testCloseWaitsForEveryOperationBeforeRelease() {
        var life = ConnectionLife()
        life.accept()
        XCTAssertTrue(life.submitReceive())
        life.submitSend()
        XCTAssertTrue(life.close())
        XCTAssertFalse(life.close(), "a second close is refused")
        XCTAssertFalse(life.isOpen)
        XCTAssertTrue(life.isInUse)
        XCTAssertFalse(life.submitReceive(), "no receive on a closing connection")
        XCTAssertEqual(life.completed(receive: true, generation: 0), .drop)
        XCTAssertFalse(life.closeCompleted(), "the send is still in flight: its buffer is the kernel's")
        XCTAssertTrue(life.isInUse)
        XCTAssertEqual(life.completed(receive: false, generation: 0), .release)
        life.release()
        XCTAssertFalse(life.isInUse)
        XCTAssertEqual(life.generation, 1)
        XCTAssertEqual(life.operationsInFlight, 0)
    }

    func testCloseWithNothingInFlightReleasesOnCloseCompletion() {
        var life = ConnectionLife()
        life.accept()
        XCTAssertTrue(life.close())
        XCTAssertTrue(life.closeCompleted())
        life.release()
        life.accept()   // the slot is reusable
        XCTAssertTrue(life.isOpen)
        XCTAssertEqual(life.generation, 1)
    }

    func testFinishingStopsReceivesButSends() {
        var life = ConnectionLife()
        life.accept()
        life.finishAfterFlush()
        XCTAssertTrue(life.closesAfterFlush)
        XCTAssertTrue(life.isOpen, "queued responses still go out")
        XCTAssertFalse(life.submitReceive(), "no more requests are read")
        life.submitSend()
        XCTAssertEqual(life.completed(receive: false, generation: 0), .deliver)
        XCTAssertTrue(life.close())
        XCTAssertFalse(life.closesAfterFlush)
        life.finishAfterFlush()   // too late to matter: stays closing
        XCTAssertFalse(life.isOpen)
    }

    func testGenerationWrapsInTwentyFourBits() {
        var life = ConnectionLife()
        for _ in 0..<(1 << 24) {
            life.accept()
            _ = life.close()
            _ = life.closeCompleted()
            life.release()
        }
        XCTAssertEqual(life.generation, 0, "UserData carries 24 bits of generation")
    }
}
