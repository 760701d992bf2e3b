import XCTest
@testable import EdgeHTTP
import Foundation

final class PathRulesTests: XCTestCase {
    func testAccepts() {
        XCTAssertEqual(
            PathRules.check("/audio/t0001/160/003.bin?hdnts=x"), .ok(path: "/audio/t0001/160/003.bin", query: "hdnts=x")
        )
        XCTAssertEqual(PathRules.check("/audio/a%7Eb.bin"), .ok(path: "/audio/a~b.bin", query: ""))
        XCTAssertEqual(PathRules.check("/audio/A%41.bin"), .ok(path: "/audio/AA.bin", query: ""))
        XCTAssertEqual(PathRules.check("/audio/x/"), .ok(path: "/audio/x/", query: ""))
    }

    func testRejects() {
        for t in [
            "/audio/../etc/passwd", "/audio/./x", "/audio//x", "/audio/%2e%2e/x", "/audio/%2E/x", "/audio%2Fx",
            "/audio/%2fx", "/audio/%00x", "/audio\\x", "/audio/%5cx", "/audio/é", "/audio/%zz", "/audio/%4",
            "/audio/a%20b", "/..", "/audio/x/..", "audio/x", "/a#b",
            // Path parameters: "..;" is ".." to several origin frameworks.
            "/audio/..;/etc/passwd", "/audio/.;/x", "/audio/..%3b/x", "/audio/..%3B/x", "/audio/x;jsessionid=1/y.bin",
            "/audio/x.bin;",
        ] {
            guard case .reject = PathRules.check(t) else { return XCTFail("accepted \(t)") }
        }
    }

    /// Every byte value in a path: what each one does, so the table of ordinary bytes the scan
    /// skips with one test is checked byte by byte.
    func testEveryByteInAPath() {
        for b in 0...255 {
            var target = Array("/audio/a".utf8)
            target.append(UInt8(b))
            target += Array("b.bin".utf8)
            let verdict = PathRules.check(String(decoding: target, as: UTF8.self))
            switch UInt8(b) {
            case UInt8(ascii: "?"):
                XCTAssertEqual(verdict, .ok(path: "/audio/a", query: "b.bin"))
            case UInt8(ascii: "#"):
                XCTAssertEqual(verdict, .reject("fragment"))
            case UInt8(ascii: "%"):
                XCTAssertEqual(verdict, .reject("bad escape"))
            case UInt8(ascii: "\\"):
                XCTAssertEqual(verdict, .reject("backslash"))
            case UInt8(ascii: ";"):
                XCTAssertEqual(verdict, .reject("path parameter"))
            case 0x21...0x7E:
                XCTAssertEqual(
                    verdict, .ok(path: String(decoding: target, as: UTF8.self), query: ""), "byte \(b)")
            default:
                XCTAssertEqual(verdict, .reject("non-ASCII or control byte"), "byte \(b)")
            }
        }
        // After the query begins, a '#' is the query's (only the path is refused one).
        XCTAssertEqual(PathRules.check("/audio/a.bin?x=#"), .ok(path: "/audio/a.bin", query: "x=#"))
        XCTAssertEqual(PathRules.check("/audio/a#?x=1"), .reject("fragment"))
    }

    func testRawQueryValue() {
        func raw(_ query: String, _ name: String) -> String? {
            var q = query, n = name
            return q.withUTF8 { qb in
                n.withUTF8 { nb in PathRules.rawQueryValue(qb, name: nb).map { String(decoding: $0, as: UTF8.self) } }
            }
        }
        XCTAssertEqual(raw("a=1&hdnts=exp%3D1~hmac%3Dab&b", "hdnts"), "exp%3D1~hmac%3Dab", "not decoded")
        XCTAssertEqual(raw("hdnts", "hdnts"), "")
        XCTAssertEqual(raw("hdntsx=1&hdnts=2", "hdnts"), "2")
        XCTAssertNil(raw("xhdnts=1", "hdnts"))
        XCTAssertNil(raw("", "hdnts"))
        XCTAssertNil(raw("a=1", ""))
    }

    func testQueryAndCookie() {
        XCTAssertEqual(
            PathRules.queryValue("a=1&hdnts=exp%3D1~acl%3D%2Faudio%2F*~hmac%3Dab&b", name: "hdnts"),
            .some("exp=1~acl=/audio/*~hmac=ab"))
        XCTAssertEqual(PathRules.queryValue("a=1", name: "hdnts"), .none)
        XCTAssertEqual(PathRules.queryValue("hdnts=%zz", name: "hdnts"), .some(nil))
        XCTAssertEqual(PathRules.cookieValue("a=b; hdnts=\"exp=1~hmac=00\"; c=d", name: "hdnts"), "exp=1~hmac=00")
        XCTAssertNil(PathRules.cookieValue("a=b", name: "hdnts"))
    }

    func testQueryValueEdges() {
        // A parameter whose name only starts with the wanted one is not it.
        XCTAssertEqual(PathRules.queryValue("hdntsx=1&hdnts=2", name: "hdnts"), .some("2"))
        XCTAssertEqual(PathRules.queryValue("xhdnts=1", name: "hdnts"), .none)
        XCTAssertEqual(PathRules.queryValue("hdnts", name: "hdnts"), .some(""))
        XCTAssertEqual(PathRules.queryValue("a=1&hdnts=", name: "hdnts"), .some(""))
        XCTAssertEqual(PathRules.queryValue("a=1&hdnts=v&hdnts=w", name: "hdnts"), .some("v"))
        XCTAssertEqual(PathRules.queryValue("hdnts=a%4", name: "hdnts"), .some(nil))
        XCTAssertEqual(PathRules.queryValue("hdnts=%C3%A9", name: "hdnts"), .some("é"))
        XCTAssertEqual(PathRules.queryValue("hdnts=%FF", name: "hdnts"), .some(nil), "not UTF-8")
        XCTAssertEqual(PathRules.queryValue("", name: "hdnts"), .none)
        XCTAssertEqual(PathRules.queryValue("a=1", name: ""), .none)
        // The query as check() hands it over: a slice of the target.
        guard case .ok(let path, let query) = PathRules.check("/audio/a%7E.bin?b=2&hdnts=x%7Ey") else {
            return XCTFail("rejected")
        }
        XCTAssertEqual(path, "/audio/a~.bin")
        XCTAssertEqual(PathRules.queryValue(query, name: "hdnts"), .some("x~y"))
        XCTAssertEqual(PathRules.check("/audio/a.bin?"), .ok(path: "/audio/a.bin", query: ""))
        XCTAssertEqual(PathRules.check("/audio/a.bin"), .ok(path: "/audio/a.bin", query: ""))
    }

    func testMediaTypesAndDates() {
        XCTAssertEqual(MediaTypes.type(forPath: "/audio/x/160.m4a"), "audio/mp4")
        XCTAssertEqual(MediaTypes.type(forPath: "/audio/x/manifest.json"), "application/json")
        XCTAssertEqual(MediaTypes.type(forPath: "/audio/x/noext"), "application/octet-stream")
        XCTAssertEqual(HTTPDate.format(unixSeconds: 0), "Thu, 01 Jan 1970 00:00:00 GMT")
        XCTAssertEqual(HTTPDate.format(unixSeconds: 1795229216), "Sat, 21 Nov 2026 02:46:56 GMT")
        XCTAssertEqual(HTTPDate.format(unixSeconds: 951782400), "Tue, 29 Feb 2000 00:00:00 GMT")
        XCTAssertEqual(HTTPDate.isoSecond(unixSeconds: 1795229216), "2026-11-21T02:46:56")
    }
}
