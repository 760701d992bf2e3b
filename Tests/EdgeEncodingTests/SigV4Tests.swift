import EdgeCrypto
import XCTest

/// AWS Signature Version 4 against AWS's published examples (each also reproduced with botocore's
/// signer, an independent implementation: the end-to-end tests verify the edge's live requests
/// with it too).
final class SigV4Tests: XCTestCase {
    /// The S3 documentation's "GET Object" example: a range of /test.txt in examplebucket.
    func testS3GetObjectExample() {
        var s = SigV4Signer(
            accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            region: "us-east-1", service: "s3")
        let h = s.sign(
            method: "GET", path: "/test.txt",
            headers: [("Host", "examplebucket.s3.amazonaws.com"), ("Range", "bytes=0-9")],
            payloadHash: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            unixSeconds: 1_369_353_600)   // 2013-05-24T00:00:00Z
        XCTAssertEqual(h.first { $0.name == "x-amz-date" }?.value, "20130524T000000Z")
        XCTAssertEqual(
            h.first { $0.name == "authorization" }?.value,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        )
    }

    /// The SigV4 test suite's get-vanilla.
    func testGetVanilla() {
        var s = SigV4Signer(
            accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            region: "us-east-1", service: "service")
        let h = s.sign(
            method: "GET", path: "/", headers: [("Host", "example.amazonaws.com")],
            payloadHash: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", sendsPayloadHash: false,
            unixSeconds: 1_440_938_160)   // 2015-08-30T12:36:00Z
        XCTAssertEqual(h.map(\.name), ["x-amz-date", "authorization"])
        XCTAssertEqual(
            h.last?.value,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        )
        // A different day derives a different key; the same inputs sign the same.
        let again = s.sign(
            method: "GET", path: "/", headers: [("Host", "example.amazonaws.com")],
            payloadHash: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", sendsPayloadHash: false,
            unixSeconds: 1_440_938_160 + 86400)
        XCTAssertTrue(again.last!.value.contains("/20150831/"))
        XCTAssertNotEqual(again.last!.value.suffix(64), h.last!.value.suffix(64))
    }

    func testDatesAndEncoding() {
        XCTAssertEqual(SigV4Signer.uriEncode("/a b/ü~x+y"), "/a%20b/%C3%BC~x%2By")
        XCTAssertEqual(SigV4Signer.uriEncode("a/b", keepSlash: false), "a%2Fb")
        let sign = { (t: Int64) -> String in
            var s = SigV4Signer(accessKeyID: "A", secretAccessKey: "B", region: "r", service: "s")
            return s.sign(method: "GET", path: "/", headers: [("host", "h")], unixSeconds: t)[0].value
        }
        XCTAssertEqual(sign(0), "19700101T000000Z")
        XCTAssertEqual(sign(951_782_400), "20000229T000000Z")   // a leap day
        XCTAssertEqual(sign(4_102_444_799), "20991231T235959Z")
    }
}
