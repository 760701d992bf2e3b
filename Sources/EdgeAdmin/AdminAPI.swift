import EdgeAuthToken
import EdgeConfig
import EdgeEncoding
import EdgeHTTP
import EdgeServer
import Foundation
import Hummingbird
import Logging

/// The operators' API on its own listener (`[admin] listen`): JSON in and out, a bearer token on
/// everything but `/healthz` and `/readyz` (which a load balancer probes without credentials, and
/// which reveal nothing), compared in constant time. It runs on Hummingbird's own threads: it
/// never blocks a worker, and no worker waits for it.
public struct AdminContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public init(source: Source) { coreContext = .init(source: source) }
}

struct BearerMiddleware: RouterMiddleware {
    typealias Context = AdminContext
    let control: EdgeControl

    func handle(
        _ request: Request, context: AdminContext, next: (Request, AdminContext) async throws -> Response
    )
        async throws -> Response
    {
        let presented =
            request.headers[.authorization].map { $0.hasPrefix("Bearer ") ? String($0.dropFirst(7)) : "" } ?? ""
        guard constantTimeEqual(presented, control.adminToken) else {
            return errorResponse(
                401, "missing or wrong bearer token (admin.token)", extra: [.wwwAuthenticate: "Bearer"])
        }
        return try await next(request, context)
    }
}

func errorResponse(_ status: Int, _ message: String, extra: HTTPFields = [:]) -> Response {
    var headers: HTTPFields = [.contentType: "application/json", .cacheControl: "no-store"]
    for f in extra { headers.append(f) }
    let body = try! JSONSerialization.data(withJSONObject: ["error": message])
    return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
}

func jsonResponse<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys]
    let body = try! e.encode(value)
    return Response(
        status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"],
        body: .init(byteBuffer: ByteBuffer(bytes: body)))
}

/// Reads a request body that must be one JSON object of type `T` with only the fields `T`
/// declares: a wrong type, an unknown field or a body that is not JSON is a 400 naming the field.
/// `expected`: how to name each field's type in an error ("an array of strings").
func readJSON<T: Decodable>(
    _ request: Request, _ type: T.Type, allowed: Set<String>, expected: [String: String] = [:], bytesMax: Int
) async -> (T?, Response?) {
    let buffer: ByteBuffer
    do { buffer = try await request.body.collect(upTo: bytesMax) } catch {
        return (nil, errorResponse(413, "body larger than admin.request_body_bytes_max (\(bytesMax) bytes)"))
    }
    let data = Data(buffer: buffer)
    guard let object = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]),
        let fields = object as? [String: Any]
    else {
        return (nil, errorResponse(400, "body must be a JSON object"))
    }
    for k in fields.keys.sorted() where !allowed.contains(k) {
        return (
            nil, errorResponse(400, "unknown field \"\(k)\" (expected: \(allowed.sorted().joined(separator: ", ")))")
        )
    }
    func named(_ t: Any.Type, _ c: DecodingError.Context) -> String {
        let field = c.codingPath.first?.stringValue ?? ""
        return expected[field] ?? typeName(t)
    }
    do { return (try JSONDecoder().decode(T.self, from: data), nil) } catch let DecodingError.typeMismatch(t, c) {
        return (nil, errorResponse(400, "\(fieldName(c)): must be \(named(t, c))"))
    } catch let DecodingError.valueNotFound(t, c) {
        return (nil, errorResponse(400, "\(fieldName(c)): must be \(named(t, c)), not null"))
    } catch {
        return (nil, errorResponse(400, "body does not decode: \(error)"))
    }
}

private func fieldName(_ c: DecodingError.Context) -> String {
    c.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        .replacingOccurrences(of: ".[", with: "[")
}

private func typeName(_ t: Any.Type) -> String {
    switch t {
    case is String.Type: "a string"
    case is Int.Type: "an integer"
    case is [String].Type: "an array of strings"
    case is [Int].Type: "an array of integers"
    default: "\(t)"
    }
}

struct FieldError: Error {
    let message: String
    init(_ field: String, _ why: String) { message = "\(field): \(why)" }
}

/// A path a player could ask for: canonical, under /audio/.
func audioPath(_ text: String, field: String) throws -> String {
    guard case .ok(let path, let query) = PathRules.check(text), query.isEmpty else {
        throw FieldError(field, "\(text) is not a valid path (absolute, no query, no dot segments)")
    }
    guard path.hasPrefix("/audio/") else { throw FieldError(field, "\(text) is not under /audio/") }
    return path
}

func isTrackID(_ s: String) -> Bool {
    !s.isEmpty && s.utf8.count <= 128
        && s.utf8.allSatisfy {
            ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || $0 == 0x5F || $0 == 0x2D
        }
}

/// The admin API's routes. Their bounds (`[admin]`) are read at each request: a reload changes them.
func buildAdminRouter(
    control: EdgeControl, prewarm: PrewarmJobs, metrics: MetricsExporter
)
    -> Router<AdminContext>
{
    let router = Router(context: AdminContext.self)
    router.get("/healthz") { _, _ in jsonResponse(["status": "alive"]) }
    router.get("/readyz") { _, _ -> Response in
        let r = control.readiness
        return jsonResponse(
            ["status": r.ready ? "ready" : "not ready", "reason": r.reason], status: r.ready ? .ok : .serviceUnavailable
        )
    }
    let authed = router.group().add(middleware: BearerMiddleware(control: control))
    authed.get("/metrics") { _, _ -> Response in
        Response(
            status: .ok,
            headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(bytes: await metrics.render())))
    }
    let admin = authed.group("admin")
    admin.post("purge") { request, _ -> Response in
        struct Body: Decodable { var path: String?; var prefix: String? }
        let (parsed, refusal) = await readJSON(
            request, Body.self, allowed: ["path", "prefix"], bytesMax: control.adminLimits.requestBodyBytesMax)
        guard let body = parsed else { return refusal! }
        let path: String?, prefix: String?
        do {
            path = try body.path.map { try audioPath($0, field: "path") }
            prefix = body.prefix
            if let prefix {
                guard prefix.hasPrefix("/audio/") || prefix == "/" || prefix == "/audio" else {
                    throw FieldError("prefix", "must start with /audio/ (or be / for everything)")
                }
            }
        } catch let e as FieldError { return errorResponse(400, e.message) }
        guard (path == nil) != (prefix == nil) else { return errorResponse(400, "give exactly one of path and prefix") }
        guard control.hasCache else {
            return errorResponse(409, "this edge serves a directory origin: nothing is cached")
        }
        // Off the event loop: the purge unlinks slice files.
        let result = await offloaded { control.purge(path: path, prefix: prefix) }
        guard let result else { return errorResponse(409, "this edge has no cache") }
        struct Out: Encodable { var objects, slices, fills_abandoned, files_removed: Int }
        return jsonResponse(
            Out(
                objects: result.objects, slices: result.slices, fills_abandoned: result.fillsAbandoned,
                files_removed: result.filesRemoved))
    }
    admin.get("cache") { request, _ -> Response in
        let prefix = request.uri.queryParameters.get("prefix") ?? "/"
        guard prefix.hasPrefix("/") else { return errorResponse(400, "prefix: must start with /") }
        let limitText = request.uri.queryParameters.get("limit") ?? "1000"
        guard let limit = Int(limitText), (1...100_000).contains(limit) else {
            return errorResponse(400, "limit: must be an integer in 1...100000")
        }
        guard control.hasCache else {
            return errorResponse(409, "this edge serves a directory origin: nothing is cached")
        }
        let listing = await offloaded { control.listing(prefix: prefix, limit: limit) }
        guard let listing else { return errorResponse(409, "this edge has no cache") }
        struct Object: Encodable {
            var path, etag: String
            var size, slices_total, ram_slices, ram_bytes, disk_slices, disk_bytes, filling, pinned_bytes, hits: Int
            var pinned_until, last_access: String?
        }
        struct Out: Encodable { var prefix: String; var objects: [Object]; var more: Bool }
        return jsonResponse(
            Out(
                prefix: prefix,
                objects: listing.objects.map { o in
                    Object(
                        path: o.path, etag: o.etag, size: o.size, slices_total: o.slicesTotal, ram_slices: o.ramSlices,
                        ram_bytes: o.ramBytes, disk_slices: o.diskSlices, disk_bytes: o.diskBytes, filling: o.filling,
                        pinned_bytes: o.pinnedBytes, hits: o.hits,
                        pinned_until: o.pinnedUntilSeconds > 0 ? RFC3339.format(o.pinnedUntilSeconds) : nil,
                        last_access: o.lastAccessSeconds > 0 ? RFC3339.format(o.lastAccessSeconds) : nil)
                }, more: listing.more))
    }
    admin.post("reload") { _, _ -> Response in
        let result = await offloaded {
            EdgeServer.reload(control, trigger: "POST /admin/reload")
        }
        switch result {
        case .success(let r):
            return jsonResponse(["applied": r.applied, "needs_restart": r.needsRestart])
        case .failure(let e):
            return errorResponse(400, "configuration refused, the running one keeps serving: \(e)")
        }
    }
    admin.get("geo") { request, _ -> Response in
        let q = request.uri.queryParameters
        guard let ip = q.get("ip"), IPAddress(ip) != nil else {
            return errorResponse(400, "ip: an IPv4 or IPv6 address is required")
        }
        var claim: RegionClaim? = nil
        if let r = q.get("regions") {
            guard let c = RegionClaim(value: r) else {
                return errorResponse(400, "regions: * or comma-separated ISO 3166-1 country codes (US,CA)")
            }
            claim = c
        }
        guard let geo = control.geo else { return errorResponse(409, "geo is off on this edge (no [geo] database)") }
        let e = geo.explain(peer: ip, forwardedFor: q.get("forwarded_for"), claim: claim)
        struct Database: Encodable { var path, type: String; var build_epoch: UInt64; var ip_version: Int }
        struct Out: Encodable {
            var ip, address_used, answer, decision, reason, unknown: String
            var country, regions: String?
            var trusted_proxy, require_claim: Bool
            var database: Database
        }
        var country: String? = nil
        let answer: String
        switch e.answer {
        case .country(let c): country = c.description; answer = "country"
        case .unknown: answer = "unknown"
        case .notAnAddress: answer = "not an address"
        case .damaged: answer = "damaged record"
        }
        let d = geo.database
        return jsonResponse(
            Out(
                ip: ip, address_used: e.addressUsed, answer: answer, decision: e.verdict == .ok ? "allow" : "deny",
                reason: e.reason, unknown: geo.policy.allowUnknown ? "allow" : "deny", country: country,
                regions: claim?.description, trusted_proxy: e.trustedProxy, require_claim: geo.policy.requireClaim,
                database: Database(
                    path: d.path, type: d.databaseType, build_epoch: d.buildEpochSeconds, ip_version: d.ipVersion)))
    }
    admin.post("prewarm") { request, _ -> Response in
        let limits = control.adminLimits
        let allowed: Set<String> = [
            "paths", "tracks", "bitrates", "pin_until", "not_before", "origin_concurrency", "origin_bytes_per_second",
        ]
        let (parsed, refusal) = await readJSON(
            request, PrewarmRequest.self, allowed: allowed,
            expected: [
                "paths": "an array of strings", "tracks": "an array of strings", "bitrates": "an array of integers",
                "pin_until": "an RFC 3339 time (a string)", "not_before": "an RFC 3339 time (a string)",
                "origin_concurrency": "an integer", "origin_bytes_per_second": "an integer",
            ], bytesMax: limits.requestBodyBytesMax)
        guard let body = parsed else { return refusal! }
        let spec: PrewarmSpec
        do { spec = try prewarmSpec(body, control: control, limits: limits) } catch let e as FieldError {
            return errorResponse(400, e.message)
        }
        guard control.hasCache else {
            return errorResponse(409, "this edge serves a directory origin: nothing to pre-warm")
        }
        do {
            let job = try await prewarm.submit(spec)
            return jsonResponse(["id": job.id, "state": job.state.rawValue], status: .accepted)
        } catch {
            return errorResponse(
                429, "admin.prewarm_jobs_max (\(limits.prewarmJobsMax)) jobs exist and none has finished",
                extra: [.retryAfter: "60"])
        }
    }
    admin.get("prewarm") { _, _ -> Response in
        let now = Int64(Date().timeIntervalSince1970)
        return jsonResponse(["jobs": await prewarm.list().map { PrewarmJobView($0, nowSeconds: now) }])
    }
    admin.get("prewarm/:id") { _, context -> Response in
        let id = context.parameters.get("id") ?? ""
        guard let j = await prewarm.job(id) else { return errorResponse(404, "no prewarm job \(id)") }
        return jsonResponse(PrewarmJobView(j, nowSeconds: Int64(Date().timeIntervalSince1970)))
    }
    admin.delete("prewarm/:id") { _, context -> Response in
        let id = context.parameters.get("id") ?? ""
        guard let j = await prewarm.cancel(id) else { return errorResponse(404, "no prewarm job \(id)") }
        return jsonResponse(PrewarmJobView(j, nowSeconds: Int64(Date().timeIntervalSince1970)))
    }
    return router
}

/// The body of `POST /admin/prewarm`, as sent.
struct PrewarmRequest: Decodable {
    var paths: [String]?
    var tracks: [String]?
    var bitrates: [Int]?
    var pin_until: String?
    var not_before: String?
    var origin_concurrency: Int?
    var origin_bytes_per_second: Int?
}

/// Validates a pre-warm request; the error names the field.
func prewarmSpec(_ body: PrewarmRequest, control: EdgeControl, limits: AdminConfig) throws -> PrewarmSpec {
    for (name, list) in [("paths", body.paths), ("tracks", body.tracks)] {
        guard let list else { continue }
        guard !list.isEmpty else { throw FieldError(name, "must not be empty") }
        guard list.count <= limits.prewarmObjectsPerJobMax else {
            throw FieldError(
                name, "at most \(limits.prewarmObjectsPerJobMax) entries (admin.prewarm_objects_per_job_max)")
        }
    }
    let paths = try body.paths?.map { try audioPath($0, field: "paths") }
    let tracks = body.tracks
    for t in tracks ?? [] where !isTrackID(t) {
        throw FieldError("tracks", "\"\(t)\" is not a track ID (letters, digits, '_' or '-', at most 128)")
    }
    guard (paths == nil) != (tracks == nil) else { throw FieldError("paths", "give exactly one of paths and tracks") }
    if let bitrates = body.bitrates {
        guard tracks != nil else { throw FieldError("bitrates", "only with tracks") }
        guard !bitrates.isEmpty, bitrates.allSatisfy({ (1...10_000).contains($0) }) else {
            throw FieldError("bitrates", "must be a non-empty array of kb/s in 1...10000")
        }
    }
    let now = Int64(Date().timeIntervalSince1970)
    var pinUntil: Int64 = 0
    if let text = body.pin_until {
        guard let t = RFC3339.parse(text) else { throw FieldError("pin_until", "\(text) is not an RFC 3339 time") }
        guard t > now else { throw FieldError("pin_until", "\(text) is in the past") }
        guard control.pinnedBytesMax > 0 else {
            throw FieldError("pin_until", "this edge pins nothing (cache.pinned_bytes_max = 0)")
        }
        pinUntil = t
    }
    var notBefore: Int64 = 0
    if let text = body.not_before {
        guard let t = RFC3339.parse(text) else { throw FieldError("not_before", "\(text) is not an RFC 3339 time") }
        notBefore = t
    }
    let concurrencyMax = limits.prewarmOriginConcurrencyMax
    let concurrency = body.origin_concurrency ?? min(4, concurrencyMax)
    guard (1...concurrencyMax).contains(concurrency) else {
        throw FieldError(
            "origin_concurrency", "must be in 1...\(concurrencyMax) (admin.prewarm_origin_concurrency_max)")
    }
    let rate = body.origin_bytes_per_second ?? 0
    guard body.origin_bytes_per_second == nil || rate >= 1024 else {
        throw FieldError("origin_bytes_per_second", "must be at least 1024")
    }
    return PrewarmSpec(
        paths: paths, tracks: tracks, bitrates: body.bitrates, pinUntilSeconds: pinUntil, notBeforeSeconds: notBefore,
        originConcurrency: concurrency, originBytesPerSecond: rate)
}

/// Starts the admin API (when `[admin]` is configured) on its own threads: binds its listener
/// before returning (a bind failure stops start-up), restores persisted pre-warm jobs, expires
/// pins every few seconds.
public enum EdgeAdmin {
    public static func start(control: EdgeControl, log: @escaping @Sendable (String) -> Void) throws {
        let config = control.config.admin
        guard let listen = config.listen else { return }
        var database: PrewarmDatabase? = nil
        if !config.prewarmDatabase.isEmpty {
            do { database = try PrewarmDatabase(path: config.prewarmDatabase) } catch {
                throw StartupError(description: "admin.prewarm_database: \(config.prewarmDatabase): \(error)")
            }
        }
        let prewarm = PrewarmJobs(control: control, database: database, log: log)
        let metrics = MetricsExporter(control: control, prewarm: prewarm)
        var logger = Logger(label: "edge-admin")
        logger.logLevel = .warning
        let bound = DispatchSemaphore(value: 0)
        let failure = LockedBox<Error?>(nil)
        let app = Application(
            router: buildAdminRouter(control: control, prewarm: prewarm, metrics: metrics),
            configuration: .init(address: .hostname(listen.host, port: listen.port), serverName: "edge-admin"),
            onServerRunning: { _ in bound.signal() },
            logger: logger)
        Task.detached {
            do {
                try await prewarm.restore()
            } catch {
                log("admin: cannot restore pre-warm jobs from \(config.prewarmDatabase): \(error)")
            }
            Task.detached {
                while true {
                    try? await Task.sleep(for: .seconds(5))
                    control.expirePins(nowSeconds: Int64(Date().timeIntervalSince1970))
                }
            }
            // run(), not runService(): ServiceLifecycle would take SIGTERM (setting it to SIG_IGN), which
            // the main thread waits for with sigwait to drain the workers.
            do { try await app.run() } catch {
                failure.set(error)
                bound.signal()
            }
        }
        guard bound.wait(timeout: .now() + 30) == .success else {
            throw StartupError(description: "admin.listen \(listen): the admin API did not start within 30 s")
        }
        if let e = failure.get() { throw StartupError(description: "admin.listen \(listen): \(e)") }
        log("edge: admin API on http://\(listen)")
    }
}

/// Runs blocking work (unlinking slice files, reading a manifest, a reload's file read) on a
/// Dispatch thread, off Hummingbird's event loops and Swift's cooperative pool.
func offloaded<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { c in DispatchQueue.global().async { c.resume(returning: work()) } }
}

final class LockedBox<T>: @unchecked Sendable {
    private var value: T
    private let lock = NSLock()
    init(_ v: T) { value = v }
    func set(_ v: T) { lock.lock(); value = v; lock.unlock() }
    func get() -> T { lock.lock(); defer { lock.unlock() }; return value }
}
