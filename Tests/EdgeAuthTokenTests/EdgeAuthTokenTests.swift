import XCTest
@testable import EdgeAuthToken
import Foundation

final class EdgeAuthTokenTests: XCTestCase {
    let key = EdgeAuthKey(hex: "00112233445566778899aabbccddeeff")!
    let other = EdgeAuthKey(hex: "ffeeddccbbaa99887766554433221100")!
    let now = 1_800_000_000
    var policy: EdgeAuthPolicy { EdgeAuthPolicy(keys: [key], leewaySeconds: 10, lifetimeSecondsMax: 86400) }

    func verify(
        _ t: String?, _ path: String = "/audio/t0001/160/000.bin", ip: String = "127.0.0.1", now: Int? = nil,
        policy: EdgeAuthPolicy? = nil
    ) -> EdgeAuthVerdict {
        EdgeAuthToken.verify(t, path: path, clientIP: ip, now: now ?? self.now, policy: policy ?? self.policy)
    }

    /// A vector computed with Python's hmac module over the documented EdgeAuth 2.0 layout.
    func testKnownVector() {
        let t = EdgeAuthToken.sign(key: key, acl: ["/audio/t0001/*"], expiry: 1_800_003_600)
        XCTAssertEqual(
            t,
            "exp=1800003600~acl=/audio/t0001/*~hmac="
                + EdgeAuthToken.hmacHex(key: key, message: Array("exp=1800003600~acl=/audio/t0001/*".utf8)))
        XCTAssertEqual(
            EdgeAuthToken.hmacHex(
                key: EdgeAuthKey(hex: "6b6579")!, message: Array("The quick brown fox jumps over the lazy dog".utf8)),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8")   // RFC 4231-style known HMAC-SHA256
    }

    func testAclTokenCoversTrack() {
        let t = EdgeAuthToken.sign(key: key, acl: ["/audio/t0001/*"], expiry: now + 600)
        XCTAssertEqual(verify(t), .ok)
        XCTAssertEqual(verify(t, "/audio/t0001/320/023.bin"), .ok)
        XCTAssertEqual(verify(t, "/audio/t0002/160/000.bin"), .scope)
        XCTAssertEqual(verify(t, "/audio/t00011/160/000.bin"), .scope)
    }

    func testAclListWithBang() {
        let t = EdgeAuthToken.sign(key: key, acl: ["/audio/t1/96/*", "/audio/t1/160/*"], expiry: now + 600)
        XCTAssertTrue(t.contains("acl=/audio/t1/96/*!/audio/t1/160/*"))
        XCTAssertEqual(verify(t, "/audio/t1/160/0.bin"), .ok)
        XCTAssertEqual(verify(t, "/audio/t1/320/0.bin"), .scope)
    }

    func testURLToken() {
        let t = EdgeAuthToken.sign(key: key, url: "/audio/t1/160/000.bin", expiry: now + 600)
        XCTAssertFalse(t.contains("url="))
        XCTAssertEqual(verify(t, "/audio/t1/160/000.bin"), .ok)
        XCTAssertEqual(verify(t, "/audio/t1/160/001.bin"), .signature)
    }

    func testTimes() {
        XCTAssertEqual(verify(EdgeAuthToken.sign(key: key, acl: ["/*"], expiry: now - 11)), .expired)
        XCTAssertEqual(verify(EdgeAuthToken.sign(key: key, acl: ["/*"], expiry: now - 5)), .ok)   // within leeway
        XCTAssertEqual(
            verify(EdgeAuthToken.sign(key: key, acl: ["/*"], startTime: now + 60, expiry: now + 600)), .early)
        XCTAssertEqual(verify(EdgeAuthToken.sign(key: key, acl: ["/*"], startTime: now + 5, expiry: now + 600)), .ok)
        XCTAssertEqual(verify(EdgeAuthToken.sign(key: key, acl: ["/*"], expiry: now + 86400 * 2)), .lifetime)
    }

    func testTamperAndKeys() {
        let t = EdgeAuthToken.sign(key: key, acl: ["/audio/t0001/*"], expiry: now + 600)
        XCTAssertEqual(verify(t.replacingOccurrences(of: "t0001", with: "t0002"), "/audio/t0002/x"), .signature)
        XCTAssertEqual(verify(t.replacingOccurrences(of: "exp=\(now + 600)", with: "exp=\(now + 700)")), .signature)
        var flipped = Array(t.utf8);
        flipped[flipped.count - 1] = flipped.last == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
        XCTAssertEqual(verify(String(decoding: flipped, as: UTF8.self)), .signature)
        let foreign = EdgeAuthToken.sign(key: other, acl: ["/audio/t0001/*"], expiry: now + 600)
        XCTAssertEqual(verify(foreign), .signature)
        // Rotation: the transition key is accepted.
        XCTAssertEqual(verify(foreign, policy: EdgeAuthPolicy(keys: [key, other])), .ok)
    }

    func testMalformed() {
        XCTAssertEqual(verify(nil), .missing)
        XCTAssertEqual(verify(""), .missing)
        let mac = String(repeating: "0", count: 64)
        for t in [
            "exp=1", "acl=/*~hmac=\(mac)", "exp=x~acl=/*~hmac=\(mac)", "exp=1~exp=2~acl=/*~hmac=\(mac)",
            "exp=1~acl=/*~foo=1~hmac=\(mac)", "exp=1~acl=/*~hmac=zz", "exp=1~acl=/*~hmac=\(mac)00",
            "exp=1~~acl=/*~hmac=\(mac)",
            "exp=1~acl=/*~url=/x~hmac=\(mac)", "exp=1~acl=~hmac=\(mac)",
        ] {
            XCTAssertEqual(verify(t), .malformed, t)
        }
    }

    func testIPBinding() {
        let t = EdgeAuthToken.sign(key: key, acl: ["/*"], expiry: now + 600, ip: "10.0.0.1")
        XCTAssertEqual(verify(t, ip: "10.0.0.1"), .ok)
        XCTAssertEqual(verify(t, ip: "10.0.0.2"), .ip)
    }

    func testFieldsIDAndData() {
        let t = EdgeAuthToken.sign(
            key: key, acl: ["/*"], startTime: now, expiry: now + 60, sessionID: "s1", data: "u=42")
        XCTAssertEqual(
            t.split(separator: "~").map { $0.split(separator: "=")[0] }, ["st", "exp", "acl", "id", "data", "hmac"])
        XCTAssertEqual(verify(t), .ok)
    }

    func testAclGlob() {
        XCTAssertTrue(EdgeAuthToken.aclMatches(pattern: "/audio/*", path: "/audio/a/b/c"))
        XCTAssertTrue(EdgeAuthToken.aclMatches(pattern: "/audio/*/160/*", path: "/audio/t1/160/0.bin"))
        XCTAssertFalse(EdgeAuthToken.aclMatches(pattern: "/audio/*/160/*", path: "/audio/t1/320/0.bin"))
        XCTAssertTrue(EdgeAuthToken.aclMatches(pattern: "/audio/t?/x", path: "/audio/t1/x"))
        XCTAssertFalse(EdgeAuthToken.aclMatches(pattern: "/audio/t1", path: "/audio/t1/x"))
        XCTAssertTrue(EdgeAuthToken.aclMatches(pattern: "*", path: "/anything"))
    }

    func testVerifierCachesSignatureButChecksClaimsEveryTime() {
        let v = EdgeAuthVerifier(policy: policy, entriesMax: 2)
        let t = EdgeAuthToken.sign(key: key, acl: ["/audio/t1/*"], expiry: now + 60)
        XCTAssertEqual(v.verify(t, path: "/audio/t1/a", clientIP: "x", now: now), .ok)
        XCTAssertEqual(v.verify(t, path: "/audio/t1/b", clientIP: "x", now: now), .ok)
        XCTAssertEqual(v.hmacCount, 1)
        XCTAssertEqual(v.verify(t, path: "/audio/t2/a", clientIP: "x", now: now), .scope)
        XCTAssertEqual(v.verify(t, path: "/audio/t1/a", clientIP: "x", now: now + 100), .expired)
        XCTAssertEqual(v.hmacCount, 1)
        // A forged token is never cached as good. It ends with the good one's HMAC, so the
        // verifier hashes it the same (only the last bytes are hashed): told apart by comparing every byte.
        let forged = t.replacingOccurrences(of: "t1", with: "t2")
        XCTAssertEqual(v.verify(forged, path: "/audio/t2/a", clientIP: "x", now: now), .signature)
        XCTAssertEqual(v.verify(forged, path: "/audio/t2/a", clientIP: "x", now: now), .signature)
        // URL tokens sign the path outside the token: checked every time.
        let u = EdgeAuthToken.sign(key: key, url: "/audio/t1/a", expiry: now + 60)
        XCTAssertEqual(v.verify(u, path: "/audio/t1/a", clientIP: "x", now: now), .ok)
        XCTAssertEqual(v.verify(u, path: "/audio/t1/b", clientIP: "x", now: now), .signature)
        // Bounded.
        for i in 0..<5 {
            _ = v.verify(
                EdgeAuthToken.sign(key: key, acl: ["/\(i)/*"], expiry: now + 60), path: "/\(i)/x", clientIP: "x",
                now: now)
        }
        XCTAssertEqual(v.verify(t, path: "/audio/t1/a", clientIP: "x", now: now), .ok)
    }

    /// The verifier remembers a token by the bytes the request carried it as: found again by them
    /// alone (no decoding, no HMAC), and only by exactly them.
    func testRememberedByReceivedBytes() {
        let v = EdgeAuthVerifier(policy: policy)
        let t = EdgeAuthToken.sign(key: key, acl: ["/audio/t1/*"], expiry: now + 60)
        let encoded = t.replacingOccurrences(of: "=", with: "%3D")
        func remembered(
            _ received: String, _ path: String = "/audio/t1/a", now: Int? = nil, percentEncoded: Bool = true
        ) -> EdgeAuthVerifier.Check? {
            var r = received
            return r.withUTF8 {
                v.remembered(
                    UnsafeRawBufferPointer($0), percentEncoded: percentEncoded, path: path, clientIP: "x",
                    now: now ?? self.now)
            }
        }
        XCTAssertNil(remembered(encoded), "nothing checked yet")
        var e = encoded
        let first = e.withUTF8 {
            v.check(
                t, receivedAs: UnsafeRawBufferPointer($0), percentEncoded: true, path: "/audio/t1/a", clientIP: "x",
                now: now)
        }
        XCTAssertEqual(first.verdict, .ok)
        XCTAssertEqual(first.expiry, now + 60)
        XCTAssertEqual(v.hmacCount, 1)
        XCTAssertEqual(remembered(encoded)?.verdict, .ok)
        XCTAssertEqual(remembered(encoded)?.expiry, now + 60)
        // The claims are checked on every request: scope and time.
        XCTAssertEqual(remembered(encoded, "/audio/t2/a")?.verdict, .scope)
        XCTAssertEqual(remembered(encoded, now: now + 100)?.verdict, .expired)
        // The decoded spelling is other bytes: not found by the encoded one's entry.
        XCTAssertNil(remembered(t))
        let lastFlipped = String(encoded.dropLast()) + (encoded.hasSuffix("0") ? "1" : "0")
        XCTAssertNil(remembered(lastFlipped), "one byte off (in the hashed suffix)")
        XCTAssertNil(remembered("x" + encoded.dropFirst()), "one byte off (outside the hashed suffix)")
        XCTAssertEqual(v.hmacCount, 1)
        // The same bytes as a cookie's or a header's text are another token ("%3D" is not "="): not
        // found by the query's entry, and refused as they would be had the query never come.
        XCTAssertNil(remembered(encoded, percentEncoded: false))
        XCTAssertEqual(v.verify(encoded, path: "/audio/t1/a", clientIP: "x", now: now), .malformed)
        // The decoded text, as a cookie, is the token itself: checked (one HMAC), then remembered.
        XCTAssertEqual(v.verify(t, path: "/audio/t1/a", clientIP: "x", now: now), .ok)
        XCTAssertEqual(v.hmacCount, 2)
        XCTAssertEqual(remembered(t, percentEncoded: false)?.verdict, .ok)
        XCTAssertNil(remembered(t, percentEncoded: true), "the query form of those bytes is not checked yet")
    }

    /// Many remembered tokens share the table's slots (linear probing): each is found, and the
    /// table never holds more than `entriesMax`.
    func testRememberedTableProbesAndIsBounded() {
        let v = EdgeAuthVerifier(policy: policy, entriesMax: 6)
        let tokens = (0..<6).map { EdgeAuthToken.sign(key: key, acl: ["/audio/t\($0)/*"], expiry: now + 60) }
        for (i, t) in tokens.enumerated() {
            XCTAssertEqual(v.verify(t, path: "/audio/t\(i)/a", clientIP: "x", now: now), .ok)
        }
        XCTAssertEqual(v.hmacCount, 6)
        XCTAssertEqual(v.rememberedCount, 6)
        for (i, t) in tokens.enumerated() {
            XCTAssertEqual(v.verify(t, path: "/audio/t\(i)/a", clientIP: "x", now: now), .ok)
            XCTAssertEqual(v.verify(t, path: "/audio/t\((i + 1) % 6)/a", clientIP: "x", now: now), .scope)
        }
        XCTAssertEqual(v.hmacCount, 6, "all six found again")
        let seventh = EdgeAuthToken.sign(key: key, acl: ["/audio/t6/*"], expiry: now + 60)
        XCTAssertEqual(v.verify(seventh, path: "/audio/t6/a", clientIP: "x", now: now), .ok)
        XCTAssertEqual(v.rememberedCount, 1, "full: started afresh")
        XCTAssertEqual(v.verify(tokens[0], path: "/audio/t0/a", clientIP: "x", now: now), .ok)
        XCTAssertEqual(v.hmacCount, 8, "a token dropped with the rest is checked again")
    }

    /// A compiled ACL pattern answers as the glob does; a literal prefix with one trailing `*` is a
    /// prefix comparison.
    func testCompiledACLPatterns() {
        func matches(_ pattern: String, _ path: String) -> Bool {
            var p = path
            return p.withUTF8 { ACLPattern(pattern).matches($0) }
        }
        guard case .prefix = ACLPattern("/audio/t1/*") else { return XCTFail("not a prefix pattern") }
        guard case .glob = ACLPattern("/audio/*/160/*") else { return XCTFail("two wildcards: a glob") }
        guard case .glob = ACLPattern("/audio/t?/*") else { return XCTFail("a '?': a glob") }
        guard case .glob = ACLPattern("/audio/t1") else { return XCTFail("no wildcard: a glob (exact)") }
        XCTAssertTrue(matches("/audio/t1/*", "/audio/t1/a/b"))
        XCTAssertTrue(matches("/audio/t1/*", "/audio/t1/"))
        XCTAssertFalse(matches("/audio/t1/*", "/audio/t1"))
        XCTAssertFalse(matches("/audio/t1/*", "/audio/t2/a"))
        XCTAssertTrue(matches("*", "/anything"))
        XCTAssertTrue(matches("/audio/*/160/*", "/audio/t1/160/0.bin"))
        XCTAssertFalse(matches("/audio/*/160/*", "/audio/t1/320/0.bin"))
        XCTAssertFalse(matches("/audio/t1", "/audio/t1/x"))
        XCTAssertTrue(matches("/audio/t1", "/audio/t1"))
        let patterns = ["*", "/a*", "/a/*", "/a/b*", "/a?/*", "/a/*/c", "/a/b", "/*/b/*", "/a/b/*"]
        let paths = ["/", "/a", "/a/", "/a/b", "/a/b/c", "/ab/c", "/x/b/c", "/a/bc", "/a/c"]
        for pattern in patterns {
            for path in paths {
                XCTAssertEqual(
                    matches(pattern, path), EdgeAuthToken.aclMatches(pattern: pattern, path: path), "\(pattern) \(path)"
                )
            }
        }
    }
}
