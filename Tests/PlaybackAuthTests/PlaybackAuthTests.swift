import Foundation
import Hummingbird
import HummingbirdTesting
import JWTKit
import XCTest
import EdgeAuthToken
import EdgeCatalog
import EdgeConfig
import EdgeEncoding
@testable import PlaybackAuth

final class PlaybackAuthTests: XCTestCase {
    static let secret = "test-identity-provider-secret-0123456789abcdef"
    static let master = [UInt8](repeating: 7, count: 32)
    static let tokenKey = "00112233445566778899aabbccddeeff"
    static let metricsToken = "metrics-scraper-token-0123456789"

    var dir = ""
    var config = PlaybackAuthConfig()

    override func setUp() async throws {
        dir = NSTemporaryDirectory() + "pa-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let catalog = try Catalog(path: dir + "/catalog.sqlite")
        let now = Int64(Date().timeIntervalSince1970)
        for (id, regions, release) in [
            ("t1", ["*"], Int64(0)), ("t2", ["US"], Int64(0)), ("t3", ["*"], now + 3600), ("t4", ["*"], Int64(0)),
            ("t5", ["US", "CA"], Int64(0)),
        ] {
            let rs = [24, 96, 160, 320].map { k in
                Rendition(
                    bitrate_kbps: k, codec: "opus", path: "/audio/\(id)/\(k).opus", bytes: k * 1000,
                    encryption: .init(scheme: "aes-128-ctr", iv_hex: String(repeating: "0", count: 32)),
                    initSegment: .init(offset: 0, length: 100),
                    chunks: [.init(offset: 100, length: k * 100, duration_ms: 10000)], sample_rate: 48000)
            }
            try catalog.insert(
                Track(
                    id: id, title: "Title \(id)", artist: "A", album: "B", durationMs: 10000, loudnessLUFS: -20,
                    manifest: Manifest(
                        track_id: id, duration_ms: 10000, loudness_lufs: -20, target_lufs: -14, renditions: rs),
                    wrappedKeyHex: KeyWrap.wrap([UInt8](repeating: 9, count: 16), master: Self.master),
                    regions: regions,
                    releaseAt: release, sourceSHA256: "src-\(id)"))
        }
        config.catalogPath = dir + "/catalog.sqlite"
        config.jwtHS256Secret = Self.secret
        config.edges = ["https://edge-a.example", "https://edge-b.example", "https://edge-c.example"]
        config.tokenKeyHex = Self.tokenKey
        config.masterKeyHex = Hex.encode(Self.master)
        config.rateLimitPerMinute = 5
        config.metricsToken = Self.metricsToken
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    struct Claims: JWTPayload {
        var sub: SubjectClaim; var exp: ExpirationClaim; var tier: String; var country: String
        func verify(using algorithm: some JWTAlgorithm) throws {}
    }

    func jwt(
        _ sub: String = "u1", tier: String = "premium", country: String = "US", expiresIn: TimeInterval = 600,
        secret: String = secret
    ) async throws -> String {
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        return try await keys.sign(
            Claims(
                sub: .init(value: sub), exp: .init(value: Date().addingTimeInterval(expiresIn)), tier: tier,
                country: country))
    }

    func withApp(_ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        let app = try await buildApplication(config: config)
        try await app.test(.router) { client in try await body(client) }
    }

    func post(
        _ client: any TestClientProtocol, _ json: String, token: String?
    ) async throws -> (Int, [String: Any], HTTPFields) {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let token { headers[.authorization] = "Bearer \(token)" }
        return try await client.execute(
            uri: "/v1/playback", method: .post, headers: headers, body: ByteBuffer(string: json)
        ) { r in
            let obj = (try? JSONSerialization.jsonObject(with: Data(buffer: r.body))) as? [String: Any] ?? [:]
            return (Int(r.status.code), obj, r.headers)
        }
    }

    func testPremiumGrant() async throws {
        let token = try await jwt()
        try await withApp { c in
            let (status, body, headers) = try await self.post(
                c, #"{"track_id":"t1","next":["t4","t3","nope"]}"#, token: token)
            XCTAssertEqual(status, 200)
            XCTAssertEqual(headers[.cacheControl], "no-store")
            XCTAssertEqual(body["bitrate_kbps"] as? Int, 320)
            XCTAssertEqual(body["quality"] as? String, "very_high")
            XCTAssertEqual(body["token_name"] as? String, "hdnts")
            XCTAssertEqual(body["key_hex"] as? String, String(repeating: "09", count: 16))
            XCTAssertTrue(self.config.edges.contains(body["base_url"] as! String))
            let tok = body["token"] as! String
            XCTAssertTrue(
                tok.contains(
                    "acl=/audio/t1/manifest.json!/audio/t1/24.opus!/audio/t1/96.opus!/audio/t1/160.opus!/audio/t1/320.opus"
                ))
            let policy = EdgeAuthPolicy(keys: [EdgeAuthKey(hex: Self.tokenKey)!])
            let now = Int(Date().timeIntervalSince1970)
            XCTAssertEqual(
                EdgeAuthToken.verify(tok, path: "/audio/t1/320.opus", clientIP: "x", now: now, policy: policy), .ok)
            XCTAssertEqual(
                EdgeAuthToken.verify(tok, path: "/audio/t2/320.opus", clientIP: "x", now: now, policy: policy), .scope)
            let prefetch = body["prefetch"] as! [[String: Any]]
            XCTAssertEqual(prefetch.map { $0["track_id"] as! String }, ["t4"])   // t3 unreleased, "nope" unknown: skipped
            XCTAssertEqual(prefetch[0]["range"] as? String, "bytes=0-32099")
            XCTAssertEqual((body["manifest"] as! [String: Any])["track_id"] as? String, "t1")
            XCTAssertEqual((body["expires_at"] as! Int) - now, 3600, accuracy: 2)
        }
    }

    /// Each grant's token carries the regions the edge enforces: the track's licensed countries,
    /// or anywhere for a worldwide licence unless worldwide grants are bound to the user's country.
    func testRegionClaimsInTokens() async throws {
        let claim = { (body: [String: Any]) -> RegionClaim? in
            EdgeAuthToken.parse(body["token"] as! String)?.fields.regions
        }
        let token = try await jwt(country: "CA")
        try await withApp { c in
            let licensed = try await self.post(c, #"{"track_id":"t5","next":["t1"]}"#, token: token)
            XCTAssertEqual(licensed.0, 200)
            XCTAssertEqual(claim(licensed.1), RegionClaim(value: "US,CA"))
            XCTAssertTrue((licensed.1["token"] as! String).contains("~data=geo=CA,US~"))
            let prefetch = (licensed.1["prefetch"] as! [[String: Any]])[0]["token"] as! String
            XCTAssertEqual(EdgeAuthToken.parse(prefetch)?.fields.regions, .anywhere, "t1 is worldwide")
            let worldwide = try await self.post(c, #"{"track_id":"t1"}"#, token: token)
            XCTAssertEqual(claim(worldwide.1), .anywhere)
        }
        config.worldwideBoundToCountry = true
        try await withApp { c in
            let bound = try await self.post(c, #"{"track_id":"t1"}"#, token: token)
            XCTAssertEqual(claim(bound.1), RegionClaim(value: "CA"))
            let licensed = try await self.post(c, #"{"track_id":"t5"}"#, token: token)
            XCTAssertEqual(claim(licensed.1), RegionClaim(value: "US,CA"), "a licence list is kept as it is")
        }
        let text = { (line: String) in
            """
            [auth]
            catalog = "/srv/catalog.sqlite"
            jwt_hs256_secret = "\(Self.secret)"
            edges = ["https://edge-a.example"]
            \(line)
            [token]
            key_hex = "\(Self.tokenKey)"
            [catalog]
            master_key_hex = "\(Hex.encode(Self.master))"
            """
        }
        XCTAssertFalse(try PlaybackAuthConfig.parse(text("")).worldwideBoundToCountry)
        XCTAssertTrue(try PlaybackAuthConfig.parse(text("worldwide_regions = \"country\"")).worldwideBoundToCountry)
        XCTAssertThrowsError(try PlaybackAuthConfig.parse(text("worldwide_regions = \"eu\""))) {
            XCTAssertTrue("\($0)".contains("auth.worldwide_regions"), "\($0)")
        }
        XCTAssertEqual(try PlaybackAuthConfig.parse(text("")).bearerTokensMax, 65_536)
        XCTAssertEqual(try PlaybackAuthConfig.parse(text("bearer_tokens_max = 10")).bearerTokensMax, 10)
        XCTAssertThrowsError(try PlaybackAuthConfig.parse(text("bearer_tokens_max = 0"))) {
            XCTAssertTrue("\($0)".contains("auth.bearer_tokens_max"), "\($0)")
        }
    }

    func testFreeTierDowngradedAndScoped() async throws {
        let token = try await jwt(tier: "free")
        try await withApp { c in
            let (status, body, _) = try await self.post(c, #"{"track_id":"t1","quality":"very_high"}"#, token: token)
            XCTAssertEqual(status, 200)
            XCTAssertEqual(body["bitrate_kbps"] as? Int, 160)
            XCTAssertEqual(body["quality"] as? String, "high")
            XCTAssertEqual(body["quality_reason"] as? String, "the free tier allows at most 160 kb/s")
            let tok = body["token"] as! String
            XCTAssertFalse(tok.contains("320.opus"))
            let renditions = (body["manifest"] as! [String: Any])["renditions"] as! [[String: Any]]
            XCTAssertEqual(renditions.map { $0["bitrate_kbps"] as! Int }, [24, 96, 160])
            let (s2, b2, _) = try await self.post(c, #"{"track_id":"t1","quality":"low"}"#, token: token)
            XCTAssertEqual(s2, 200)
            XCTAssertEqual(b2["bitrate_kbps"] as? Int, 24)
            XCTAssertNil(b2["quality_reason"] as? String)
        }
    }

    func testIdentityErrors() async throws {
        let expired = try await jwt(expiresIn: -60)
        let forged = try await jwt(secret: "another-secret-another-secret-another-secret")
        let badTier = try await jwt(tier: "gold")
        try await withApp { c in
            for t in [nil, "garbage", expired, forged, badTier] as [String?] {
                let (status, body, headers) = try await self.post(c, #"{"track_id":"t1"}"#, token: t)
                XCTAssertEqual(status, 401)
                XCTAssertNotNil(body["error"])
                XCTAssertNotNil(headers[.wwwAuthenticate])
            }
        }
    }

    /// A bearer token is verified once and remembered, but time is checked on every request: the
    /// remembered token is refused once it expires.
    func testRememberedBearerExpires() async throws {
        let shortLived = try await jwt(expiresIn: 2)
        config.rateLimitPerMinute = 1000
        try await withApp { c in
            for _ in 0..<3 {
                let (status, body, _) = try await self.post(c, #"{"track_id":"t1"}"#, token: shortLived)
                XCTAssertEqual(status, 200, "\(body)")
            }
            try await Task.sleep(for: .seconds(3))
            let (status, _, headers) = try await self.post(c, #"{"track_id":"t1"}"#, token: shortLived)
            XCTAssertEqual(status, 401, "expired since it was remembered")
            XCTAssertNotNil(headers[.wwwAuthenticate])
        }
    }

    /// The configured bound: with room for one token, a second user's grant starts the table
    /// afresh, and both users are still served (each token verified again when needed).
    func testBearerTokensBoundFromConfig() async throws {
        config.bearerTokensMax = 1
        config.rateLimitPerMinute = 1000
        XCTAssertEqual(try AuthState(config: config).bearers.entriesMax, 1)
        let first = try await jwt("u1"), second = try await jwt("u2")
        let app = try await buildApplication(config: config)
        try await app.test(.router) { c in
            for token in [first, second, first, second] {
                let (status, body, _) = try await self.post(c, #"{"track_id":"t1"}"#, token: token)
                XCTAssertEqual(status, 200, "\(body)")
            }
        }
    }

    func testVerifiedBearersTimeAndBound() {
        let b = VerifiedBearers(entriesMax: 3)
        let who = Identity(subject: "u1", tier: .premium, country: "US")
        XCTAssertNil(b.identity("a", now: 100))
        b.remember("a", .init(identity: who, expiresAt: 200, notBefore: 150))
        XCTAssertNil(b.identity("a", now: 149), "before nbf")
        XCTAssertEqual(b.identity("a", now: 150), who, "valid from nbf itself")
        XCTAssertEqual(b.identity("a", now: 199.5), who)
        XCTAssertNil(b.identity("a", now: 200), "expired at exp itself")
        XCTAssertEqual(b.count, 0, "an expired token is forgotten")
        for t in ["a", "b", "c"] { b.remember(t, .init(identity: who, expiresAt: 200, notBefore: nil)) }
        XCTAssertEqual(b.count, 3)
        b.remember("c", .init(identity: who, expiresAt: 300, notBefore: nil))
        XCTAssertEqual(b.count, 3, "a token remembered again replaces its entry")
        b.remember("d", .init(identity: who, expiresAt: 200, notBefore: nil))
        XCTAssertEqual(b.count, 1, "full: started afresh")
        XCTAssertNil(b.identity("a", now: 100))
        XCTAssertEqual(b.identity("d", now: 100), who)
    }

    struct FullClaims: JWTPayload {
        var sub: SubjectClaim; var exp: ExpirationClaim; var nbf: NotBeforeClaim?; var iss: IssuerClaim?;
        var aud: AudienceClaim?
        var tier: String; var country: String
        func verify(using algorithm: some JWTAlgorithm) throws {}
    }

    func fullJWT(nbf: TimeInterval? = nil, iss: String? = nil, aud: [String]? = nil) async throws -> String {
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: Self.secret), digestAlgorithm: .sha256)
        return try await keys.sign(
            FullClaims(
                sub: .init(value: "u1"), exp: .init(value: Date().addingTimeInterval(600)),
                nbf: nbf.map { .init(value: Date().addingTimeInterval($0)) }, iss: iss.map { .init(value: $0) },
                aud: aud.map { .init(value: $0) }, tier: "premium", country: "US"))
    }

    /// A token valid only from tomorrow is refused today; issuer and audience, when configured,
    /// must match.
    func testNotBeforeIssuerAndAudience() async throws {
        config.jwtIssuer = "https://idp.example"
        config.jwtAudience = "edge-playback"
        let good = try await fullJWT(nbf: -60, iss: "https://idp.example", aud: ["other", "edge-playback"])
        let refused = [
            try await fullJWT(nbf: 86400, iss: "https://idp.example", aud: ["edge-playback"]),   // not yet valid
            try await fullJWT(iss: "https://evil.example", aud: ["edge-playback"]),   // another issuer
            try await fullJWT(aud: ["edge-playback"]),   // no issuer
            try await fullJWT(iss: "https://idp.example", aud: ["other"]),   // another audience
            try await fullJWT(iss: "https://idp.example"),
        ]   // no audience
        try await withApp { c in
            let ok = try await self.post(c, #"{"track_id":"t1"}"#, token: good).0
            XCTAssertEqual(ok, 200)
            for (i, t) in refused.enumerated() {
                let (status, body, _) = try await self.post(c, #"{"track_id":"t1"}"#, token: t)
                XCTAssertEqual(status, 401, "case \(i): \(body)")
            }
        }
        // Without issuer/audience configured, nbf is still enforced.
        config.jwtIssuer = ""; config.jwtAudience = ""
        let early = try await fullJWT(nbf: 86400)
        try await withApp { c in
            let status = try await self.post(c, #"{"track_id":"t1"}"#, token: early).0
            XCTAssertEqual(status, 401)
        }
    }

    func testEntitlementErrors() async throws {
        let gb = try await jwt(country: "GB")
        try await withApp { c in
            var r = try await self.post(c, #"{"track_id":"t2"}"#, token: gb)
            XCTAssertEqual(r.0, 403); XCTAssertEqual(r.1["error"] as? String, "track t2 is not licensed in GB")
            r = try await self.post(c, #"{"track_id":"t3"}"#, token: gb)
            XCTAssertEqual(r.0, 403); XCTAssertEqual(r.1["error"] as? String, "track t3 is not released yet")
            r = try await self.post(c, #"{"track_id":"t9"}"#, token: gb)
            XCTAssertEqual(r.0, 404)
        }
    }

    func testMalformedBodies() async throws {
        config.rateLimitPerMinute = 100
        let token = try await jwt()
        try await withApp { c in
            for (json, message) in [
                ("{", "body is not JSON"), ("{}", "missing field track_id"),
                (#"{"track_id":5}"#, "wrong type for track_id"),
                (#"{"track_id":"t1","quality":"ultra"}"#, "quality must be one of"),
                (#"{"track_id":"../x"}"#, "track_id must be"),
                (#"{"track_id":"t1","next":"t2"}"#, "wrong type for next"),
            ] {
                let (status, body, _) = try await self.post(c, json, token: token)
                XCTAssertEqual(status, 400, json)
                XCTAssertTrue((body["error"] as? String ?? "").hasPrefix(message), "\(json): \(body)")
            }
        }
    }

    func testRateLimit() async throws {
        let token = try await jwt("busy-user")
        let other = try await jwt("other-user")
        try await withApp { c in
            for _ in 0..<5 {
                let s = try await self.post(c, #"{"track_id":"t1"}"#, token: token).0; XCTAssertEqual(s, 200)
            }
            let (status, _, headers) = try await self.post(c, #"{"track_id":"t1"}"#, token: token)
            XCTAssertEqual(status, 429)
            XCTAssertEqual(Int(headers[.retryAfter] ?? ""), 12)   // 5 a minute: one token every 12 s
            let s = try await self.post(c, #"{"track_id":"t1"}"#, token: other).0
            XCTAssertEqual(s, 200)   // per user
        }
    }

    func testTrackMetadataHealthAndMetrics() async throws {
        let token = try await jwt()
        try await withApp { c in
            try await c.execute(uri: "/v1/tracks/t1", method: .get, headers: [.authorization: "Bearer \(token)"]) { r in
                XCTAssertEqual(r.status, .ok)
                let o = try JSONSerialization.jsonObject(with: Data(buffer: r.body)) as! [String: Any]
                XCTAssertEqual(o["bitrates_kbps"] as? [Int], [24, 96, 160, 320])
                XCTAssertNil(o["key_hex"])
            }
            try await c.execute(uri: "/v1/tracks/t9", method: .get, headers: [.authorization: "Bearer \(token)"]) {
                XCTAssertEqual($0.status, .notFound)
            }
            try await c.execute(uri: "/v1/tracks/t1", method: .get) { XCTAssertEqual($0.status, .unauthorized) }
            try await c.execute(uri: "/healthz", method: .get) { XCTAssertEqual($0.status, .ok) }
            _ = try await self.post(c, #"{"track_id":"t1"}"#, token: token)
            // Metrics only for the scraper's token: no token, a wrong one, the player's JWT: 401.
            for auth in [nil, "Bearer wrong-metrics-token-0000", "Bearer \(token)"] as [String?] {
                var h: HTTPFields = [:]
                if let auth { h[.authorization] = auth }
                try await c.execute(uri: "/metrics", method: .get, headers: h) {
                    XCTAssertEqual($0.status, .unauthorized)
                }
            }
            try await c.execute(uri: "/metrics", method: .get, headers: [.authorization: "Bearer \(Self.metricsToken)"])
            { r in
                XCTAssertEqual(r.status, .ok)
                let text = String(buffer: r.body)
                XCTAssertTrue(text.contains(#"playback_grants_total{result="granted"} 1"#), text)
                XCTAssertFalse(text.contains(Self.tokenKey))
            }
        }
    }

    /// An identity provider that publishes its public keys as a JWKS (ES256 here).
    func testJWKSFile() async throws {
        let privateKey = ES256PrivateKey()
        let p = privateKey.publicKey.parameters!
        let jwks =
            #"{"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","kid":"idp-1","use":"sig","x":"\#(p.x)","y":"\#(p.y)"}]}"#
        let file = dir + "/jwks.json"
        try jwks.write(toFile: file, atomically: true, encoding: .utf8)
        config.jwtHS256Secret = ""
        config.jwksFile = file
        let signer = JWTKeyCollection()
        await signer.add(ecdsa: privateKey, kid: "idp-1")
        let good = try await signer.sign(
            Claims(
                sub: .init(value: "u9"), exp: .init(value: Date().addingTimeInterval(600)), tier: "free", country: "US"),
            kid: "idp-1")
        let hs = try await jwt()   // an HS256 token no longer verifies
        try await withApp { c in
            let ok = try await self.post(c, #"{"track_id":"t1"}"#, token: good)
            XCTAssertEqual(ok.0, 200)
            XCTAssertEqual(ok.1["bitrate_kbps"] as? Int, 160)
            let bad = try await self.post(c, #"{"track_id":"t1"}"#, token: hs)
            XCTAssertEqual(bad.0, 401)
        }
        // A broken JWKS file is a start-up error that names the key.
        try "{not json".write(toFile: file, atomically: true, encoding: .utf8)
        do { _ = try await buildApplication(config: config); XCTFail("expected a start-up error") } catch {
            XCTAssertTrue("\(error)".contains("auth.jwks_file"), "\(error)")
        }
    }

    func testEdgeSelectionConsistentWithFallback() throws {
        let catalog = try Catalog(path: config.catalogPath, readOnly: true)
        let make = { (down: [String]) in
            GrantService(
                catalog: catalog, signingKey: EdgeAuthKey(hex: Self.tokenKey)!, masterKey: Self.master,
                edges: self.config.edges,
                edgesDown: down, ttlSeconds: 60, tokenName: "hdnts", prefetchMax: 5)
        }
        let all = make([])
        var counts: [String: Int] = [:]
        for i in 0..<3000 { counts[all.edge(for: "t\(i)"), default: 0] += 1 }
        XCTAssertEqual(counts.count, 3)
        XCTAssertTrue(counts.values.allSatisfy { $0 > 800 }, "\(counts)")
        XCTAssertEqual(all.edge(for: "t42"), all.edge(for: "t42"))
        // Taking one edge down moves only its tracks.
        let down = all.edge(for: "t42")
        let less = make([down])
        for i in 0..<3000 {
            let before = all.edge(for: "t\(i)"), after = less.edge(for: "t\(i)")
            if before != down { XCTAssertEqual(before, after) } else { XCTAssertNotEqual(after, down) }
        }
    }
}
