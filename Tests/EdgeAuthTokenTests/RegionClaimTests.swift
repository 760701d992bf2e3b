import XCTest
@testable import EdgeAuthToken

final class RegionClaimTests: XCTestCase {
    let key = EdgeAuthKey(hex: "00112233445566778899aabbccddeeff")!
    let now = 1_800_000_000
    let us = CountryCode("US")!, de = CountryCode("DE")!, ca = CountryCode("CA")!

    func testCountryCodes() {
        XCTAssertEqual(CountryCode("us"), us, "either case")
        XCTAssertEqual(us.description, "US")
        for bad in ["", "U", "USA", "U1", "1S", "@A", "[A", "`a", "{a", "ÜS"] { XCTAssertNil(CountryCode(bad), bad) }
    }

    func testClaimValues() {
        XCTAssertEqual(RegionClaim(value: "*"), .anywhere)
        XCTAssertEqual(RegionClaim(value: "US,ca,US"), .countries([ca, us]), "sorted, upper case, no duplicates")
        // One country (parsed without a split): either case.
        XCTAssertEqual(RegionClaim(value: "us"), .countries([us]))
        XCTAssertEqual(RegionClaim(value: "US"[...]), .countries([us]))
        for bad in ["", ",", "US,", ",US", "US,,CA", "USA", "US CA", "**", "*,US", "U,", "1S", "U"] {
            XCTAssertNil(RegionClaim(value: bad), bad)
        }
        let many = (0..<RegionClaim.countriesMax).map { (i: Int) -> String in
            let first = UInt8(65 + (i / 26) % 26), second = UInt8(65 + i % 26)
            return String(decoding: [first, second], as: UTF8.self)
        }
        XCTAssertNotNil(RegionClaim(value: many.joined(separator: ",")))
        XCTAssertNil(RegionClaim(value: (many + ["ZZ"]).joined(separator: ",")), "over countriesMax")
        XCTAssertEqual(RegionClaim.countries([ca, us]).dataItem, "geo=CA,US")
        XCTAssertEqual(RegionClaim.anywhere.dataItem, "geo=*")
    }

    func testClaimInDataField() {
        XCTAssertEqual(RegionClaim.parse(data: nil), .absent)
        XCTAssertEqual(RegionClaim.parse(data: "user=7"), .absent, "another signer's data")
        XCTAssertEqual(RegionClaim.parse(data: "user=7;geo=DE"), .claim(.countries([de])))
        XCTAssertEqual(RegionClaim.parse(data: "geo=*;x=1"), .claim(.anywhere))
        XCTAssertEqual(RegionClaim.parse(data: "geo=US;geo=US"), .malformed, "twice")
        XCTAssertEqual(RegionClaim.parse(data: "geo=United States"), .malformed)
        XCTAssertEqual(RegionClaim.parse(data: "geography=x"), .absent, "the item's name is exactly geo")
    }

    /// The claim is signed: it arrives parsed with the token, a bad one makes the token malformed,
    /// and changing it breaks the signature.
    func testClaimTravelsInTheSignedToken() {
        let t = EdgeAuthToken.sign(key: key, acl: ["/audio/*"], expiry: now + 60, data: "geo=US,CA")
        XCTAssertEqual(EdgeAuthToken.parse(t)?.fields.regions, .countries([ca, us]))
        let plain = EdgeAuthToken.sign(key: key, acl: ["/audio/*"], expiry: now + 60)
        XCTAssertNotNil(EdgeAuthToken.parse(plain))
        XCTAssertNil(EdgeAuthToken.parse(plain)?.fields.regions)
        let bad = EdgeAuthToken.sign(key: key, acl: ["/audio/*"], expiry: now + 60, data: "geo=USA")
        XCTAssertNil(EdgeAuthToken.parse(bad))
        let policy = EdgeAuthPolicy(keys: [key])
        XCTAssertEqual(
            EdgeAuthToken.verify(bad, path: "/audio/a", clientIP: "1.2.3.4", now: now, policy: policy), .malformed)
        let widened = t.replacingOccurrences(of: "geo=US,CA", with: "geo=*")
        XCTAssertEqual(
            EdgeAuthToken.verify(widened, path: "/audio/a", clientIP: "1.2.3.4", now: now, policy: policy), .signature)
        let verifier = EdgeAuthVerifier(policy: policy)
        let first = verifier.check(t, path: "/audio/a", clientIP: "1.2.3.4", now: now)
        let cached = verifier.check(t, path: "/audio/b", clientIP: "1.2.3.4", now: now)
        XCTAssertEqual(first.regions, .countries([ca, us]))
        XCTAssertEqual(cached.regions, .countries([ca, us]), "from the verifier's cache too")
        XCTAssertEqual(verifier.hmacCount, 1)
    }

    func testPolicyDecisions() {
        let open = GeoPolicy(requireClaim: false, allowUnknown: true)
        let strict = GeoPolicy(requireClaim: true, allowUnknown: false)
        let usCA = RegionClaim.countries([ca, us])
        XCTAssertEqual(open.check(usCA, country: { self.us }), .ok)
        XCTAssertEqual(open.check(usCA, country: { self.de }), .geo)
        XCTAssertEqual(open.check(usCA, country: { nil }), .ok, "unknown allowed")
        XCTAssertEqual(strict.check(usCA, country: { nil }), .geo, "unknown denied")
        XCTAssertEqual(strict.check(usCA, country: { self.ca }), .ok)
        XCTAssertEqual(open.check(nil, country: { self.de }), .ok, "no claim, not required")
        XCTAssertEqual(strict.check(nil, country: { self.us }), .geo, "no claim, required")
        XCTAssertEqual(strict.check(.anywhere, country: { nil }), .ok)
    }

    /// The lookup is the part that costs: asked only for a claim that lists countries.
    func testCountryIsAskedOnlyWhenTheClaimListsCountries() {
        var asked = 0
        let ask = { () -> CountryCode? in
            asked += 1; return self.us
        }
        let p = GeoPolicy(requireClaim: true, allowUnknown: true)
        _ = p.check(nil, country: ask)
        _ = p.check(.anywhere, country: ask)
        XCTAssertEqual(asked, 0)
        _ = p.check(.countries([us]), country: ask)
        XCTAssertEqual(asked, 1)
    }
}
