import CEdgeCrypto
import EdgeEncoding

/// HMAC-SHA256 (OpenSSL libcrypto).
public enum HMACSHA256 {
    public static func mac(key: [UInt8], _ message: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        let rc = key.withUnsafeBufferPointer { k in
            message.withUnsafeBufferPointer { m in
                out.withUnsafeMutableBufferPointer {
                    edge_hmac_sha256(k.baseAddress, k.count, m.baseAddress, m.count, $0.baseAddress)
                }
            }
        }
        precondition(rc == 0, "HMAC-SHA256 failed in libcrypto")   // only on allocation failure inside OpenSSL
        return out
    }
}

/// AWS Signature Version 4 for a request without a body: what S3, Google Cloud Storage's XML API
/// (HMAC keys), MinIO and Ceph RGW check on a private bucket's GET. Pure: the time is a parameter.
/// https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html
public struct SigV4Signer: Sendable {
    public let accessKeyID: String
    let secret: [UInt8]
    public let region: String
    public let service: String
    /// The derived signing key of the last day signed for (it changes once a day).
    private var signingKey: (day: String, key: [UInt8]) = ("", [])

    public init(accessKeyID: String, secretAccessKey: String, region: String, service: String) {
        self.accessKeyID = accessKeyID; secret = Array(("AWS4" + secretAccessKey).utf8)
        self.region = region; self.service = service
    }

    /// `UNSIGNED-PAYLOAD`: the body is not hashed (S3 accepts it over TLS and cleartext alike).
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"

    /// The headers to add to a request (`x-amz-date`, `x-amz-content-sha256`, `authorization`).
    /// `path`: already encoded as sent (`uriEncode(_:keepSlash:)`); `query`: the canonical query
    /// string (sorted, encoded) or ""; `headers`: the other headers to sign (`host` among them),
    /// names in any case. `unixSeconds`: the request's time. `sendsPayloadHash`: the payload's hash
    /// travels (and is signed) as `x-amz-content-sha256`, as S3 requires; other services take it
    /// as part of the canonical request only (AWS's generic test suite).
    public mutating func sign(
        method: String, path: String, query: String = "", headers: [(name: String, value: String)],
        payloadHash: String = unsignedPayload, sendsPayloadHash: Bool = true, unixSeconds: Int64
    ) -> [(name: String, value: String)] {
        let amzDate = Self.amzDate(unixSeconds)
        let day = String(amzDate.prefix(8))
        var all = headers.map { (name: $0.name.lowercased(), value: Self.trimmed($0.value)) }
        all.append(("x-amz-date", amzDate))
        if sendsPayloadHash { all.append(("x-amz-content-sha256", payloadHash)) }
        all.sort { $0.name < $1.name }
        let signedHeaders = all.map(\.name).joined(separator: ";")
        let canonical =
            "\(method)\n\(path)\n\(query)\n" + all.map { "\($0.name):\($0.value)\n" }.joined() + "\n"
            + "\(signedHeaders)\n\(payloadHash)"
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign =
            "AWS4-HMAC-SHA256\n\(amzDate)\n\(scope)\n" + Hex.encode(SHA256.digest(Array(canonical.utf8)))
        if signingKey.day != day {
            var k = HMACSHA256.mac(key: secret, Array(day.utf8))
            for part in [region, service, "aws4_request"] { k = HMACSHA256.mac(key: k, Array(part.utf8)) }
            signingKey = (day, k)
        }
        let signature = Hex.encode(HMACSHA256.mac(key: signingKey.key, Array(stringToSign.utf8)))
        var out: [(name: String, value: String)] = [("x-amz-date", amzDate)]
        if sendsPayloadHash { out.append(("x-amz-content-sha256", payloadHash)) }
        out.append(
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=\(accessKeyID)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"
            ))
        return out
    }

    /// A path as SigV4 wants it and as it must then be sent: every byte but the unreserved
    /// characters (and `/` when `keepSlash`) percent-encoded, upper-case hex.
    public static func uriEncode(_ s: String, keepSlash: Bool = true) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        let hex = Array("0123456789ABCDEF".unicodeScalars)
        for b in s.utf8 {
            switch b {
            case 0x30...0x39, 0x41...0x5A, 0x61...0x7A, UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(b))
            case UInt8(ascii: "/") where keepSlash:
                out.append("/")
            default:
                out += "%"
                out.unicodeScalars.append(hex[Int(b >> 4)])
                out.unicodeScalars.append(hex[Int(b & 15)])
            }
        }
        return out
    }

    /// `YYYYMMDDTHHMMSSZ` (UTC) without Foundation's calendar: the civil date from days since 1970.
    static func amzDate(_ unixSeconds: Int64) -> String {
        let days = unixSeconds >= 0 ? unixSeconds / 86400 : (unixSeconds - 86399) / 86400
        let secondOfDay = unixSeconds - days * 86400
        // Howard Hinnant's days-to-civil algorithm.
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return
            "\(year)\(two(month))\(two(day))T\(two(secondOfDay / 3600))\(two(secondOfDay / 60 % 60))\(two(secondOfDay % 60))Z"
    }

    /// Leading and trailing blanks off, inner runs of blanks as one space (SigV4's header values).
    static func trimmed(_ v: String) -> String {
        v.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
    }
}
