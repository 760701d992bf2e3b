import EdgeHTTP
import EdgeAuthToken
import EdgeConfig
import Glibc

/// Routing and the access phases of a request (method → path rules → token), before any disk
/// work. Pure: the clock and the client address are inputs. Immutable and shared by reference: a
/// worker's call copied its fields (and retained each) on every request as a struct.
final class Router: Sendable {
    let tokenName: String
    /// The token's query parameter name as bytes, matched in the query without a String.
    private let tokenNameBytes: [UInt8]
    let tokenRequired: Bool
    let policy: EdgeAuthPolicy
    /// Regional licensing (`[geo]`); nil when off. Its policy is kept apart as a plain value, so
    /// the per-request check touches no reference count.
    let geo: GeoGate?
    let geoPolicy: GeoPolicy?
    /// Child edges' key (`token.child_key`); empty: no children.
    let childKey: String

    init(
        tokenName: String, tokenRequired: Bool, policy: EdgeAuthPolicy, geo: GeoGate? = nil, childKey: String = ""
    ) {
        self.tokenName = tokenName; self.tokenRequired = tokenRequired; self.policy = policy
        tokenNameBytes = Array(tokenName.utf8)
        self.geo = geo; geoPolicy = geo?.policy
        self.childKey = childKey
    }

    enum Decision {
        /// Answer now with a small plain-text body.
        case simple(status: Int, body: String, extraHeaders: [HeaderField], verdict: String)
        /// Serve the file at this canonical path (token parameters stripped: also the cache key),
        /// cacheable downstream for this long, privately (a token authorised it), or publicly when nil
        /// (see `ResponsePlan.cacheControl(privateSeconds:)`).
        case audio(path: String, verdict: String, privateSeconds: Int?)
    }

    /// `country` is asked only when a token's region claim lists countries (see `GeoPolicy.check`).
    func route(
        _ request: EdgeRequest, clientIP: String, nowSeconds: Int, verifier: EdgeAuthVerifier,
        country: () -> CountryCode? = { nil }
    ) -> Decision {
        let isGet = request.method == "GET", isHead = request.method == "HEAD"
        if request.target == "*" && request.method == "OPTIONS" {
            return .simple(
                status: 204, body: "", extraHeaders: [HeaderField("allow", "GET, HEAD, OPTIONS")], verdict: "-")
        }
        let checked = PathRules.check(request.target)
        guard case let .ok(path, query) = checked else {
            if case let .reject(why) = checked {
                return .simple(status: 400, body: "bad request: \(why)\n", extraHeaders: [], verdict: "-")
            }
            return .simple(status: 400, body: "bad request\n", extraHeaders: [], verdict: "-")
        }
        if path == "/healthz" {
            guard isGet || isHead else { return methodNotAllowed() }
            return .simple(status: 200, body: "ok\n", extraHeaders: [], verdict: "-")
        }
        guard Self.bytes(of: path, startWith: "/audio/") else {
            return .simple(status: 404, body: "not found\n", extraHeaders: [], verdict: "-")
        }
        guard isGet || isHead else { return methodNotAllowed() }
        guard tokenRequired else { return .audio(path: path, verdict: "off", privateSeconds: nil) }
        // A child edge of this parent (the shield tier): its key instead of a player's token.
        if !childKey.isEmpty, let offered = request.header("edge-child-key") {
            guard constantTimeEqual(offered, childKey) else {
                return .simple(
                    status: 403, body: "forbidden\n", extraHeaders: [], verdict: EdgeAuthVerdict.childKey.rawValue)
            }
            return .audio(path: path, verdict: "child", privateSeconds: nil)
        }

        // Query parameter, then cookie, then header of the configured name.
        let tokenCheck: EdgeAuthVerifier.Check
        if let fromQuery = queryTokenCheck(query, path: path, clientIP: clientIP, nowSeconds: nowSeconds, verifier) {
            tokenCheck = fromQuery
        } else {
            var token: String? = nil
            if let cookie = request.header("cookie") { token = PathRules.cookieValue(cookie, name: tokenName) }
            if token == nil { token = request.header(named: tokenName.lowercased()) }
            tokenCheck = verifier.check(token, path: path, clientIP: clientIP, now: nowSeconds)
        }
        var (verdict, expiry, regions) = tokenCheck
        if verdict == .ok, let geoPolicy { verdict = geoPolicy.check(regions, country: country) }
        guard verdict == .ok else {
            return .simple(status: 403, body: "forbidden\n", extraHeaders: [], verdict: verdict.rawValue)
        }
        return .audio(
            path: path, verdict: verdict.rawValue,
            privateSeconds: min(max(0, (expiry ?? nowSeconds) - nowSeconds), 31_536_000))
    }

    /// The check of the query's token; nil when the query has none. A token the verifier
    /// remembers is found by the bytes the query carries, with no String made of it per request.
    private func queryTokenCheck(
        _ query: Substring, path: String, clientIP: String, nowSeconds: Int, _ verifier: EdgeAuthVerifier
    ) -> EdgeAuthVerifier.Check? {
        var query = query
        return query.withUTF8 { q in
            tokenNameBytes.withUnsafeBufferPointer { name -> EdgeAuthVerifier.Check? in
                guard let raw = PathRules.rawQueryValue(q, name: name) else { return nil }
                let received = UnsafeRawBufferPointer(raw)
                if let known = verifier.remembered(
                    received, percentEncoded: true, path: path, clientIP: clientIP, now: nowSeconds)
                {
                    return known
                }
                guard let token = PathRules.percentDecode(bytes: raw) else { return (.malformed, nil, nil) }
                return verifier.check(
                    token, receivedAs: received, percentEncoded: true, path: path, clientIP: clientIP, now: nowSeconds)
            }
        }
    }

    /// A byte comparison: `hasPrefix` compares by canonical equivalence, about 250 instructions a
    /// request (`loadtest/instructions.py`), and a checked path is ASCII.
    private static func bytes(of s: String, startWith prefix: StaticString) -> Bool {
        let n = prefix.utf8CodeUnitCount
        return s.utf8.withContiguousStorageIfAvailable {
            $0.count >= n && memcmp($0.baseAddress!, prefix.utf8Start, n) == 0
        }
            ?? s.utf8.starts(with: UnsafeBufferPointer(start: prefix.utf8Start, count: n))
    }

    private func methodNotAllowed() -> Decision {
        .simple(
            status: 405, body: "method not allowed\n", extraHeaders: [HeaderField("allow", "GET, HEAD")], verdict: "-")
    }
}

extension Router {
    /// The router of a configuration's [token] section (the key, then the transition key), and
    /// of its `[geo]` section when `geo` is given (its database opened).
    convenience init(_ token: TokenConfig, geo: GeoGate? = nil) {
        var keys: [EdgeAuthKey] = []
        if let k = EdgeAuthKey(hex: token.keyHex) { keys.append(k) }
        if let k = EdgeAuthKey(hex: token.transitionKeyHex) { keys.append(k) }
        self.init(
            tokenName: token.name, tokenRequired: token.required,
            policy: EdgeAuthPolicy(
                keys: keys, leewaySeconds: token.leewaySeconds, lifetimeSecondsMax: token.lifetimeSecondsMax),
            geo: geo, childKey: token.childKey)
    }
}
