import Foundation
import Hummingbird
import JWTKit
import Prometheus
import Logging
import EdgeAuthToken
import EdgeCatalog
import EdgeConfig
import EdgeEncoding

/// The per-request context: the identity the JWT middleware established.
public struct AuthContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var identity: Identity?
    public init(source: Source) { coreContext = .init(source: source) }
}

/// Claims the identity provider puts in the bearer JWT.
struct UserClaims: JWTPayload {
    var sub: SubjectClaim
    var exp: ExpirationClaim
    var nbf: NotBeforeClaim?
    var iss: IssuerClaim?
    var aud: AudienceClaim?
    var tier: String
    var country: String
    func verify(using algorithm: some JWTAlgorithm) throws {
        try exp.verifyNotExpired()
        // A token valid from later is not valid now (no leeway beyond the identity provider's clock).
        try nbf?.verifyNotBefore()
        guard tier == "free" || tier == "premium" else {
            throw JWTError.claimVerificationFailure(failedClaim: nil, reason: "tier")
        }
        guard country.count == 2, country.allSatisfy({ $0.isASCII && $0.isLetter }) else {
            throw JWTError.claimVerificationFailure(failedClaim: nil, reason: "country")
        }
    }
}

/// Verifies `Authorization: Bearer <JWT>` (HS256 secret or a JWKS file) on every /v1 route.
struct IdentityMiddleware: RouterMiddleware {
    typealias Context = AuthContext
    let keys: JWTKeyCollection
    /// Tokens that passed every check below, found again without decoding or verifying them.
    let bearers: VerifiedBearers
    /// When set, the token's `iss` must equal it, and `aud` must include `audience`.
    var issuer = ""
    var audience = ""

    func handle(
        _ request: Request, context: AuthContext, next: (Request, AuthContext) async throws -> Response
    ) async throws -> Response {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer "), header.count > 7 else {
            return errorResponse(401, "missing bearer token", extra: [.wwwAuthenticate: "Bearer"])
        }
        let token = String(header.dropFirst(7))
        var context = context
        if let known = bearers.identity(token, now: Date().timeIntervalSince1970) {
            context.identity = known
            return try await next(request, context)
        }
        let claims: UserClaims
        do { claims = try await keys.verify(token, as: UserClaims.self) } catch {
            return errorResponse(
                401, "invalid or expired bearer token", extra: [.wwwAuthenticate: "Bearer error=\"invalid_token\""])
        }
        if !issuer.isEmpty && claims.iss?.value != issuer {
            return errorResponse(
                401, "bearer token from another issuer", extra: [.wwwAuthenticate: "Bearer error=\"invalid_token\""])
        }
        if !audience.isEmpty {
            do {
                guard let aud = claims.aud else {
                    throw JWTError.claimVerificationFailure(failedClaim: nil, reason: "aud")
                }
                try aud.verifyIntendedAudience(includes: audience)
            } catch {
                return errorResponse(
                    401, "bearer token for another audience",
                    extra: [.wwwAuthenticate: "Bearer error=\"invalid_token\""])
            }
        }
        let identity = Identity(
            subject: claims.sub.value, tier: Identity.Tier(rawValue: claims.tier)!, country: claims.country.uppercased()
        )
        bearers.remember(
            token,
            .init(
                identity: identity, expiresAt: claims.exp.value.timeIntervalSince1970,
                notBefore: claims.nbf?.value.timeIntervalSince1970))
        context.identity = identity
        return try await next(request, context)
    }
}

func errorResponse(_ status: Int, _ message: String, extra: HTTPFields = [:]) -> Response {
    var headers: HTTPFields = [.contentType: "application/json"]
    for f in extra { headers.append(f) }
    let body = try! JSONSerialization.data(withJSONObject: ["error": message])
    return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
}

func jsonResponse<T: Encodable>(_ value: T) -> Response {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys]
    let body = try! e.encode(value)
    return Response(
        status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
        body: .init(byteBuffer: ByteBuffer(bytes: body)))
}

/// Everything the routes share.
public final class AuthState: Sendable {
    public let grants: GrantService
    public let limiter: RateLimiter
    /// Bearer tokens that verified (`VerifiedBearers`, at most `auth.bearer_tokens_max`).
    public let bearers: VerifiedBearers
    let registry: PrometheusCollectorRegistry
    let granted: Counter
    let refused: [Int: Counter]
    let latency: DurationHistogram

    public init(config: PlaybackAuthConfig) throws {
        let catalog = try Catalog(path: config.catalogPath, readOnly: true)
        guard let key = EdgeAuthKey(hex: config.tokenKeyHex), let master = Hex.decode(config.masterKeyHex),
            master.count == 32
        else {
            throw CatalogError("token.key_hex or catalog.master_key_hex is not valid hex")
        }
        grants = GrantService(
            catalog: catalog, signingKey: key, masterKey: master, edges: config.edges, edgesDown: config.edgesDown,
            ttlSeconds: config.grantTTLSeconds, tokenName: config.tokenName, prefetchMax: config.prefetchMax,
            worldwideBoundToCountry: config.worldwideBoundToCountry)
        limiter = RateLimiter(perMinute: config.rateLimitPerMinute)
        bearers = VerifiedBearers(entriesMax: config.bearerTokensMax)
        registry = PrometheusCollectorRegistry()
        granted = registry.makeCounter(name: "playback_grants_total", labels: [("result", "granted")])
        var r: [Int: Counter] = [:]
        for s in [400, 401, 403, 404, 429] {
            r[s] = registry.makeCounter(name: "playback_grants_total", labels: [("result", String(s))])
        }
        refused = r
        latency = registry.makeDurationHistogram(
            name: "playback_grant_duration_seconds", labels: [],
            buckets: [
                .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
                .milliseconds(30), .milliseconds(100),
            ])
    }

    func count(_ status: Int) { if status == 200 { granted.increment() } else { refused[status]?.increment() } }
}

public func buildRouter(
    state: AuthState, keys: JWTKeyCollection, issuer: String = "", audience: String = "", metricsToken: String = ""
) -> Router<AuthContext> {
    let router = Router(context: AuthContext.self)
    router.get("/healthz") { _, _ in Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ok\n"))) }
    // Metrics are for the operator's scraper only: behind their own bearer token (compared in
    // constant time), and not served at all without one configured.
    router.get("/metrics") { request, _ -> Response in
        guard !metricsToken.isEmpty else { return errorResponse(404, "not found") }
        let presented =
            request.headers[.authorization].map { $0.hasPrefix("Bearer ") ? String($0.dropFirst(7)) : "" } ?? ""
        guard constantTimeEqual(presented, metricsToken) else {
            return errorResponse(
                401, "metrics need the bearer token of auth.metrics_token", extra: [.wwwAuthenticate: "Bearer"])
        }
        var out = [UInt8]()
        state.registry.emit(into: &out)
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
            body: .init(byteBuffer: ByteBuffer(bytes: out)))
    }
    let v1 = router.group("v1").add(
        middleware: IdentityMiddleware(keys: keys, bearers: state.bearers, issuer: issuer, audience: audience))
    v1.post("playback") { request, context -> Response in
        let start = ContinuousClock.now
        let user = context.identity!
        let response = await playback(request, user: user, state: state)
        state.count(Int(response.status.code))
        state.latency.recordNanoseconds(
            Int64(
                (ContinuousClock.now - start).components.attoseconds / 1_000_000_000 + (ContinuousClock.now - start)
                    .components.seconds * 1_000_000_000))
        return response
    }
    v1.get("tracks/:id") { request, context -> Response in
        let user = context.identity!
        if let wait = state.limiter.take(user.subject, now: Date().timeIntervalSince1970) {
            return errorResponse(429, "rate limit: \(wait) s", extra: [.retryAfter: String(wait)])
        }
        let id = context.parameters.get("id") ?? ""
        do {
            let t = try state.grants.entitled(id, user, now: Int(Date().timeIntervalSince1970))
            struct Meta: Encodable {
                var track_id, title, artist, album: String; var duration_ms: Int; var bitrates_kbps: [Int];
                var loudness_lufs: Double; var release_at: Int64
            }
            return jsonResponse(
                Meta(
                    track_id: t.id, title: t.title, artist: t.artist, album: t.album, duration_ms: t.durationMs,
                    bitrates_kbps: t.bitratesKbps, loudness_lufs: t.loudnessLUFS, release_at: t.releaseAt))
        } catch let e as GrantError {
            return errorResponse(e.status, e.message)
        } catch {
            return errorResponse(500, "catalog unavailable")
        }
    }
    return router
}

func playback(_ request: Request, user: Identity, state: AuthState) async -> Response {
    if let wait = state.limiter.take(user.subject, now: Date().timeIntervalSince1970) {
        return errorResponse(
            429, "rate limit: \(state.limiter.limit) requests a minute; retry in \(wait) s",
            extra: [.retryAfter: String(wait)])
    }
    let body: ByteBuffer
    do { body = try await request.body.collect(upTo: 64 * 1024) } catch {
        return errorResponse(413, "body larger than 64 KiB")
    }
    let req: PlaybackRequest
    do { req = try JSONDecoder().decode(PlaybackRequest.self, from: Data(buffer: body)) } catch let
        DecodingError.keyNotFound(k, _)
    {
        return errorResponse(400, "missing field \(k.stringValue)")
    } catch let DecodingError.typeMismatch(_, c) {
        return errorResponse(400, "wrong type for \(c.codingPath.map(\.stringValue).joined(separator: "."))")
    } catch let DecodingError.valueNotFound(_, c) {
        return errorResponse(400, "null for \(c.codingPath.map(\.stringValue).joined(separator: "."))")
    } catch {
        return errorResponse(400, "body is not JSON: {\"track_id\": ..., \"quality\"?: ..., \"next\"?: [...]}")
    }
    do {
        let g = try state.grants.grant(req, for: user, now: Int(Date().timeIntervalSince1970))
        return Response(
            status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(string: g.json())))
    } catch let e as GrantError {
        return errorResponse(e.status, e.message)
    } catch {
        return errorResponse(500, "catalog unavailable")
    }
}

/// The JWT verifier from config: an HS256 secret, or every key of a JWKS file.
public func makeKeys(_ config: PlaybackAuthConfig) async throws -> JWTKeyCollection {
    let keys = JWTKeyCollection()
    if !config.jwtHS256Secret.isEmpty {
        await keys.add(hmac: HMACKey(from: config.jwtHS256Secret), digestAlgorithm: .sha256)
    } else {
        guard let json = FileManager.default.contents(atPath: config.jwksFile) else {
            throw CatalogError("auth.jwks_file: cannot read \(config.jwksFile)")
        }
        do { try await keys.add(jwksJSON: String(decoding: json, as: UTF8.self)) } catch {
            throw CatalogError("auth.jwks_file: \(config.jwksFile) is not a usable JWKS: \(error)")
        }
    }
    return keys
}

public func buildApplication(config: PlaybackAuthConfig) async throws -> some ApplicationProtocol {
    let state = try AuthState(config: config)
    let keys = try await makeKeys(config)
    var logger = Logger(label: "playback-auth")
    logger.logLevel = .info
    return Application(
        router: buildRouter(
            state: state, keys: keys, issuer: config.jwtIssuer, audience: config.jwtAudience,
            metricsToken: config.metricsToken),
        configuration: .init(
            address: .hostname(config.listen.host, port: config.listen.port), serverName: "playback-auth"),
        logger: logger)
}
