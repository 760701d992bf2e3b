import XCTest
@testable import EdgeHTTP

final class ClientAddressTests: XCTestCase {
    func net(_ s: String) -> IPNetwork { IPNetwork.parse(s)! }
    func ip(_ s: String) -> IPAddress { IPAddress(s)! }

    func testAddresses() {
        XCTAssertEqual(ip("192.0.2.7").description, "192.0.2.7")
        XCTAssertEqual(ip("2001:DB8::1").description, "2001:db8::1")
        XCTAssertEqual(ip("::ffff:192.0.2.7"), ip("192.0.2.7"), "IPv4-mapped is the IPv4 address")
        for bad in ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "[::1]", "::1%lo", "example.com", " 1.2.3.4", "1.2.3.4/8"] {
            XCTAssertNil(IPAddress(bad), bad)
        }
    }

    func testNetworks() {
        XCTAssertTrue(net("10.0.0.0/8").contains(ip("10.255.1.2")))
        XCTAssertFalse(net("10.0.0.0/8").contains(ip("11.0.0.1")))
        XCTAssertTrue(net("192.0.2.7").contains(ip("192.0.2.7")))
        XCTAssertFalse(net("192.0.2.7").contains(ip("192.0.2.8")))
        XCTAssertTrue(net("2001:db8::/32").contains(ip("2001:db8:1::5")))
        XCTAssertFalse(net("2001:db8::/32").contains(ip("2001:db9::5")))
        XCTAssertTrue(net("0.0.0.0/0").contains(ip("8.8.8.8")))
        XCTAssertFalse(net("0.0.0.0/0").contains(ip("2001:db8::1")), "an IPv4 network holds no IPv6 address")
        XCTAssertTrue(net("::/0").contains(ip("8.8.8.8")), "all of the IPv6 space, IPv4-mapped included")
        XCTAssertTrue(net("::1").contains(ip("::1")))
        XCTAssertTrue(net("2001:db8::1:0/112").contains(ip("2001:db8::1:ffff")))
        XCTAssertFalse(net("2001:db8::1:0/112").contains(ip("2001:db8::2:0")))
        for bad in ["10.0.0.1/8", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/8/8", "x/8", "::1/0x"]
        {
            XCTAssertNil(IPNetwork.parse(bad), bad)
        }
    }

    func testForwardedFor() {
        let trusted = [net("10.0.0.0/8")]
        func client(_ h: String, hops: Int = 8) -> String? {
            ForwardedFor.client(Substring(h), trusted: trusted, hopsMax: hops)?.description
        }
        XCTAssertEqual(client("203.0.113.9"), "203.0.113.9")
        XCTAssertEqual(client("203.0.113.9, 10.0.0.2"), "203.0.113.9", "our own proxies are skipped")
        XCTAssertEqual(client("198.51.100.1, 203.0.113.9"), "203.0.113.9", "a client's own entries are not believed")
        XCTAssertEqual(client("10.0.0.3,10.0.0.2"), "10.0.0.3", "all trusted: the farthest")
        XCTAssertEqual(client("garbage, 10.0.0.2"), "10.0.0.2", "a bad entry stops the walk")
        XCTAssertNil(client("garbage"))
        XCTAssertNil(client(""))
        XCTAssertEqual(client(" 2001:db8::7 ,10.0.0.2 "), "2001:db8::7")
        XCTAssertEqual(client("203.0.113.9, 10.0.0.4, 10.0.0.3, 10.0.0.2", hops: 2), "10.0.0.3", "at most hopsMax read")
    }
}
