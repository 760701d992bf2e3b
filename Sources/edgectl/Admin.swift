import ArgumentParser
import EdgeCatalog
import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Where the admin APIs are and the bearer token they take.
struct AdminOptions: ParsableArguments {
    @Option(name: .long, help: "An edge's admin API base URL (http://host:port); repeat for several edges.")
    var edge: [String] = []
    @Option(name: .long, help: "The admin bearer token (default: $EDGE_ADMIN_TOKEN).")
    var token: String?
    @Option(name: .long, help: "A file holding the admin bearer token.")
    var tokenFile: String?

    func validate() throws {
        guard !edge.isEmpty else { throw ValidationError("give at least one --edge URL") }
        for e in edge where !(e.hasPrefix("http://") || e.hasPrefix("https://")) {
            throw ValidationError("--edge \(e): expected http://host:port")
        }
        if token != nil && tokenFile != nil { throw ValidationError("give --token or --token-file, not both") }
    }

    func bearer() throws -> String {
        if let token { return token }
        if let tokenFile {
            guard let d = FileManager.default.contents(atPath: tokenFile) else {
                throw ValidationError("--token-file \(tokenFile): cannot read")
            }
            return String(decoding: d, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        if let t = ProcessInfo.processInfo.environment["EDGE_ADMIN_TOKEN"], !t.isEmpty { return t }
        throw ValidationError("no admin token: --token, --token-file or EDGE_ADMIN_TOKEN")
    }
}

extension AdminOptions {
    /// Runs `body` against every edge; an edge that fails is reported and named at the end, and
    /// the command exits 1.
    func onEveryEdge(_ what: String, _ body: (AdminClient) throws -> Void) throws {
        let token = try bearer()
        var failed: [String] = []
        for e in edge {
            do { try body(AdminClient(base: e, token: token)) } catch {
                print("edgectl: \(error)")
                failed.append(e)
            }
        }
        if !failed.isEmpty {
            print("edgectl: \(what) failed on: \(failed.joined(separator: ", "))")
            throw ExitCode(1)
        }
    }
}

/// One admin API call, synchronous (a CLI): status and body, or the transport error.
struct AdminClient {
    let base: String
    let token: String

    struct Failure: Error, CustomStringConvertible { let description: String }

    func call(_ method: String, _ path: String, json: Any? = nil, timeout: Double = 30) throws -> (Int, Data) {
        let trimmed = base.hasSuffix("/") ? String(base.dropLast()) : base
        guard let url = URL(string: trimmed + path) else { throw Failure(description: "\(base): not a URL") }
        var req = URLRequest(url: url, timeoutInterval: timeout)
        req.httpMethod = method
        req.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        if let json {
            req.httpBody = try JSONSerialization.data(withJSONObject: json)
            req.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var result: Result<(Int, Data), Error> = .failure(Failure(description: "no answer"))
        URLSession.shared.dataTask(with: req) { data, response, error in
            if let error {
                result = .failure(Failure(description: "\(base): \(error.localizedDescription)"))
            } else {
                result = .success(((response as? HTTPURLResponse)?.statusCode ?? 0, data ?? Data()))
            }
            done.signal()
        }.resume()
        done.wait()
        return try result.get()
    }

    /// A JSON object from a 2xx answer; otherwise the API's error text.
    func object(_ method: String, _ path: String, json: Any? = nil) throws -> [String: Any] {
        let (status, data) = try call(method, path, json: json)
        let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        guard (200..<300).contains(status), let object else {
            let why = (object?["error"] as? String) ?? String(decoding: data.prefix(200), as: UTF8.self)
            throw Failure(description: "\(base): \(status) \(why)")
        }
        return object
    }
}

func humanBytes(_ n: Int) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"]
    var v = Double(n), u = 0
    while v >= 1000 && u < units.count - 1 { v /= 1000; u += 1 }
    return u == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[u])
}

struct Prewarm: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pre-warm (and pin) content on one or more edges, with a live progress line per edge.")
    @OptionGroup var admin: AdminOptions
    @Option(name: .long, parsing: .upToNextOption, help: "Track IDs: every rendition of each (from its manifest).")
    var tracks: [String] = []
    @Option(name: .long, help: "A file of paths, one per line (/audio/...).")
    var pathsFile: String?
    @Option(name: .long, help: "The track catalog (SQLite): with --releasing-within, its tracks releasing soon.")
    var catalog: String?
    @Option(name: .long, help: "With --catalog: tracks whose release time is within this (e.g. 24h, 90m, 3600s).")
    var releasingWithin: String?
    @Option(name: .long, help: "Pin until this RFC 3339 time (e.g. 2026-12-01T00:00:00Z).")
    var pinUntil: String?
    @Option(name: .long, parsing: .upToNextOption, help: "Only these renditions (kb/s), with tracks.")
    var bitrates: [Int] = []
    @Option(name: .long, help: "Start no earlier than this RFC 3339 time.")
    var notBefore: String?
    @Option(name: .long, help: "Slices fetched at once per edge.")
    var originConcurrency: Int?
    @Option(name: .long, help: "Origin bytes per second per edge.")
    var originBytesPerSecond: Int?
    @Flag(name: .long, help: "Start the jobs and exit without watching.")
    var noWait = false

    func validate() throws {
        let sources = [!tracks.isEmpty, pathsFile != nil, catalog != nil].filter { $0 }.count
        guard sources == 1 else { throw ValidationError("give exactly one of --tracks, --paths-file and --catalog") }
        if catalog != nil && releasingWithin == nil { throw ValidationError("--catalog needs --releasing-within") }
        if let w = releasingWithin, Self.seconds(w) == nil {
            throw ValidationError("--releasing-within \(w): expected a duration such as 24h, 90m or 3600s")
        }
    }

    static func seconds(_ text: String) -> Int64? {
        let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        guard let last = text.last, let unit = units[last], let n = Int64(text.dropLast()), n > 0, n < 10_000_000
        else { return Int64(text).flatMap { $0 > 0 ? $0 : nil } }
        return n * unit
    }

    func body() throws -> [String: Any] {
        var body: [String: Any] = [:]
        if !tracks.isEmpty { body["tracks"] = tracks }
        if let pathsFile {
            guard let d = FileManager.default.contents(atPath: pathsFile) else {
                throw ValidationError("--paths-file \(pathsFile): cannot read")
            }
            body["paths"] = String(decoding: d, as: UTF8.self).split(whereSeparator: \.isNewline).map {
                $0.trimmingCharacters(in: .whitespaces)
            }.filter { !$0.isEmpty && !$0.hasPrefix("#") }
        }
        if let catalog, let within = releasingWithin.flatMap(Self.seconds) {
            let now = Int64(Date().timeIntervalSince1970)
            let soon = try Catalog(path: catalog, readOnly: true).allTracks().filter {
                $0.releaseAt > now && $0.releaseAt <= now + within
            }
            guard !soon.isEmpty else {
                throw ValidationError("no track in \(catalog) releases within \(releasingWithin!)")
            }
            print(
                "edgectl: \(soon.count) tracks release within \(releasingWithin!): \(soon.map(\.id).joined(separator: " "))"
            )
            body["tracks"] = soon.map(\.id)
        }
        if !bitrates.isEmpty { body["bitrates"] = bitrates }
        if let pinUntil { body["pin_until"] = pinUntil }
        if let notBefore { body["not_before"] = notBefore }
        if let originConcurrency { body["origin_concurrency"] = originConcurrency }
        if let originBytesPerSecond { body["origin_bytes_per_second"] = originBytesPerSecond }
        return body
    }

    func run() throws {
        let token = try admin.bearer()
        let body = try body()
        var jobs: [(AdminClient, String)] = []
        var failed: [String] = []
        for e in admin.edge {
            let client = AdminClient(base: e, token: token)
            do {
                // A job for the same content that has not finished: watch it instead of starting another.
                let existing = try client.object("GET", "/admin/prewarm")["jobs"] as? [[String: Any]] ?? []
                if let j = existing.first(where: { Self.sameContent($0, body) && Self.live($0) }),
                    let id = j["id"] as? String
                {
                    print("edgectl: \(e): watching job \(id), already \(j["state"] as? String ?? "?")")
                    jobs.append((client, id))
                    continue
                }
                let out = try client.object("POST", "/admin/prewarm", json: body)
                guard let id = out["id"] as? String else { throw AdminClient.Failure(description: "\(e): no job id") }
                print("edgectl: \(e): job \(id)")
                jobs.append((client, id))
            } catch {
                print("edgectl: \(error)")
                failed.append(e)
            }
        }
        if !noWait { failed += watch(jobs) }
        if !failed.isEmpty {
            print("edgectl: prewarm failed on: \(failed.joined(separator: ", "))")
            throw ExitCode(1)
        }
    }

    static func live(_ j: [String: Any]) -> Bool { ["queued", "running"].contains(j["state"] as? String ?? "") }

    static func sameContent(_ j: [String: Any], _ body: [String: Any]) -> Bool {
        (j["tracks"] as? [String]) == (body["tracks"] as? [String])
            && (j["paths"] as? [String]) == (body["paths"] as? [String])
            && (j["pin_until"] as? String) == (body["pin_until"] as? String)
    }

    /// Polls every job until each ends, redrawing one progress line per edge; returns the edges
    /// whose job did not end `done`.
    func watch(_ jobs: [(AdminClient, String)]) -> [String] {
        var finished: [String: String] = [:]
        var finalState: [String: String] = [:]
        // An edge restarting (its job resumes) is unreachable for a moment: give up after a minute.
        var unreachableSince: [String: Date] = [:]
        var drawn = 0
        let interactive = isatty(1) != 0
        while finished.count < jobs.count {
            var lines: [String] = []
            for (client, id) in jobs {
                if let state = finished[client.base] { lines.append("\(client.base)  \(state)"); continue }
                do {
                    let j = try client.object("GET", "/admin/prewarm/\(id)")
                    let state = j["state"] as? String ?? "?"
                    let done = j["bytes_done"] as? Int ?? 0, total = j["bytes_total"] as? Int ?? 0
                    let rate = j["bytes_per_second"] as? Int ?? 0
                    let fraction = total > 0 ? Double(done) / Double(total) : (state == "done" ? 1 : 0)
                    let bar = String(repeating: "#", count: Int(fraction * 30)).padding(
                        toLength: 30, withPad: " ", startingAt: 0)
                    var line =
                        "\(client.base) [\(bar)] \(Int(fraction * 100))% \(humanBytes(done))/\(humanBytes(total)) \(humanBytes(rate))/s"
                    if let eta = j["eta_seconds"] as? Int { line += " ETA \(eta)s" }
                    line += " \(state)"
                    if let failures = j["failures_count"] as? Int, failures > 0 { line += " (\(failures) failures)" }
                    if ["done", "failed", "cancelled"].contains(state) {
                        finished[client.base] = line
                        finalState[client.base] = state
                        if state != "done", let reason = j["reason"] as? String { line += ": \(reason)" }
                    }
                    lines.append(line)
                    unreachableSince[client.base] = nil
                } catch {
                    let since = unreachableSince[client.base] ?? Date()
                    unreachableSince[client.base] = since
                    if Date().timeIntervalSince(since) > 60 { finished[client.base] = "\(error)" }
                    lines.append("\(client.base)  unreachable for \(Int(Date().timeIntervalSince(since))) s: \(error)")
                }
            }
            if interactive && drawn > 0 { print("\u{1B}[\(drawn)A", terminator: "") }
            if interactive || finished.count == jobs.count {
                for l in lines { print("\u{1B}[2K" + l) }
                drawn = lines.count
            }
            if finished.count < jobs.count { Thread.sleep(forTimeInterval: 0.5) }
        }
        return jobs.map(\.0.base).filter { finalState[$0] != "done" }.sorted()
    }
}

struct Purge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove an object or a prefix from every edge's RAM and disk (effective before this returns).")
    @OptionGroup var admin: AdminOptions
    @Option(name: .long, help: "One object (/audio/...).") var path: String?
    @Option(name: .long, help: "Every object under this prefix.") var prefix: String?

    func validate() throws {
        guard (path == nil) != (prefix == nil) else { throw ValidationError("give exactly one of --path and --prefix") }
    }

    func run() throws {
        try admin.onEveryEdge("purge") { client in
            let out = try client.object("POST", "/admin/purge", json: path.map { ["path": $0] } ?? ["prefix": prefix!])
            print(
                "\(client.base): purged \(out["objects"] ?? 0) objects, \(out["slices"] ?? 0) slices, \(out["files_removed"] ?? 0) files; \(out["fills_abandoned"] ?? 0) fills abandoned"
            )
        }
    }
}

struct CacheList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cache", abstract: "What an edge has cached under a prefix: slices and bytes per tier, pins, hits."
    )
    @OptionGroup var admin: AdminOptions
    @Option(name: .long) var prefix: String = "/"
    @Option(name: .long) var limit: Int = 1000

    func run() throws {
        let token = try admin.bearer()
        var failed = false
        for e in admin.edge {
            do {
                let q = prefix.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed) ?? prefix
                let out = try AdminClient(base: e, token: token).object(
                    "GET", "/admin/cache?prefix=\(q)&limit=\(limit)")
                print("# \(e)")
                print("path\tsize\tram_slices\tdisk_slices\tslices_total\tpinned_until\thits\tlast_access")
                for o in out["objects"] as? [[String: Any]] ?? [] {
                    let fields = [
                        "path", "size", "ram_slices", "disk_slices", "slices_total", "pinned_until", "hits",
                        "last_access",
                    ]
                    print(fields.map { f in o[f].map { "\($0)" } ?? "-" }.joined(separator: "\t"))
                }
                if out["more"] as? Bool == true { print("# more: raise --limit or narrow --prefix") }
            } catch {
                print("edgectl: \(error)")
                failed = true
            }
        }
        if failed { throw ExitCode(1) }
    }
}

struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-read the configuration and keys on every edge (as SIGHUP does).")
    @OptionGroup var admin: AdminOptions

    func run() throws {
        try admin.onEveryEdge("reload") { client in
            let out = try client.object("POST", "/admin/reload")
            let applied = out["applied"] as? [String] ?? [], restart = out["needs_restart"] as? [String] ?? []
            print(
                "\(client.base): reloaded; applied: \(applied.isEmpty ? "nothing changed" : applied.joined(separator: ", "))"
                    + (restart.isEmpty ? "" : "; needs a restart: \(restart.joined(separator: ", "))"))
        }
    }
}

struct Geo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "What each edge decides for a client address: its database's country, and allow or deny.",
        discussion:
            "Asks the running edge (GET /admin/geo), so the answer comes from the database and [geo] settings it has loaded now."
    )
    @OptionGroup var admin: AdminOptions
    @Argument(help: "The client address (IPv4 or IPv6).") var ip: String
    @Option(name: .long, help: "A token's region claim to decide for: * or US,CA (default: a token without one).")
    var regions: String?
    @Option(name: .long, help: "An X-Forwarded-For value, as if the address were the peer sending it.")
    var forwardedFor: String?

    func run() throws {
        var query = [URLQueryItem(name: "ip", value: ip)]
        if let regions { query.append(URLQueryItem(name: "regions", value: regions)) }
        if let forwardedFor { query.append(URLQueryItem(name: "forwarded_for", value: forwardedFor)) }
        var c = URLComponents()
        c.queryItems = query
        let path = "/admin/geo?" + (c.percentEncodedQuery ?? "")
        try admin.onEveryEdge("geo") { client in
            let o = try client.object("GET", path)
            let db = o["database"] as? [String: Any] ?? [:]
            let used = o["address_used"] as? String ?? ip
            print(
                "\(client.base): \(ip)\(used != ip ? " (client \(used) by X-Forwarded-For)" : ""): country \(o["country"] as? String ?? "unknown") (\(o["answer"] ?? "")), database \(db["type"] ?? "") built \(db["build_epoch"] ?? "") (\(db["path"] ?? ""))"
            )
            print("  \(o["decision"] ?? ""): \(o["reason"] ?? "")")
        }
    }
}

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "A refreshing view of one or several edges from /metrics: req/s, hit ratio by tier, TTFB, origin load.")
    @OptionGroup var admin: AdminOptions
    @Option(name: .long, help: "Seconds between refreshes.") var interval: Double = 2
    @Option(name: .long, help: "Stop after this many refreshes (0: until interrupted).") var count: Int = 0

    func run() throws {
        let token = try admin.bearer()
        var previous: [String: (Date, PromText)] = [:]
        var drawn = 0
        var n = 0
        let interactive = isatty(1) != 0
        while count == 0 || n < count {
            n += 1
            var lines = [
                "edge".padding(toLength: 28, withPad: " ", startingAt: 0)
                    + "  req/s   hit%  ram%  disk%  ttfb p50   p99  origin req/s errors  pinned   conns"
            ]
            for e in admin.edge {
                let label = String(e.prefix(28)).padding(toLength: 28, withPad: " ", startingAt: 0)
                do {
                    let (status, data) = try AdminClient(base: e, token: token).call("GET", "/metrics")
                    guard status == 200 else { throw AdminClient.Failure(description: "HTTP \(status)") }
                    let now = Date(), m = PromText(String(decoding: data, as: UTF8.self))
                    defer { previous[e] = (now, m) }
                    guard let (then, old) = previous[e] else { lines.append(label + "  (first sample)"); continue }
                    let dt = max(0.001, now.timeIntervalSince(then))
                    let d = { (name: String, labels: [String: String]) in m.sum(name, labels) - old.sum(name, labels) }
                    let reqs = d("edge_requests_total", [:])
                    let ram = d("edge_cache_lookups_total", ["tier": "ram"]),
                        disk = d("edge_cache_lookups_total", ["tier": "disk"])
                    let all = d("edge_cache_lookups_total", [:])
                    let pct = { (x: Double) in all > 0 ? String(format: "%5.1f", 100 * x / all) : "    -" }
                    let ttfb = m.histogramDelta("edge_ttfb_seconds", since: old)
                    let ms = { (q: Double) -> String in
                        guard let v = PromText.quantile(q, ttfb) else { return "     -" }
                        return String(format: "%6.1f", v * 1000)
                    }
                    let line =
                        label + String(format: " %6.0f", reqs / dt) + " " + pct(ram + disk) + " " + pct(ram) + "  "
                        + pct(disk) + "  " + ms(0.5) + ms(0.99) + "ms"
                        + String(
                            format: " %9.1f %6.0f", d("edge_origin_requests_total", [:]) / dt,
                            d("edge_origin_errors_total", [:]))
                        + "  "
                        + humanBytes(Int(m.sum("edge_cache_pinned_bytes", [:]))).padding(
                            toLength: 8, withPad: " ", startingAt: 0)
                        + String(format: " %6.0f", m.sum("edge_connections_open", [:]))
                    lines.append(line)
                } catch {
                    lines.append(label + "  unreachable: \(error)")
                }
            }
            if interactive && drawn > 0 { print("\u{1B}[\(drawn)A", terminator: "") }
            for l in lines { print((interactive ? "\u{1B}[2K" : "") + l) }
            drawn = lines.count
            if count == 0 || n < count { Thread.sleep(forTimeInterval: interval) }
        }
    }
}

/// Just enough of the Prometheus text format for `stats`: samples by name and labels.
struct PromText {
    var samples: [(name: String, labels: [String: String], value: Double)] = []

    init(_ text: String) {
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                continue
            }
            let head = line[..<space]
            var labels: [String: String] = [:]
            var name = String(head)
            if let open = head.firstIndex(of: "{"), head.hasSuffix("}") {
                name = String(head[..<open])
                for pair in head[head.index(after: open)..<head.index(before: head.endIndex)].split(separator: ",") {
                    let kv = pair.split(separator: "=", maxSplits: 1)
                    if kv.count == 2 {
                        labels[String(kv[0])] = kv[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
                    }
                }
            }
            samples.append((name, labels, value))
        }
    }

    func sum(_ name: String, _ labels: [String: String]) -> Double {
        samples.filter { s in s.name == name && labels.allSatisfy { s.labels[$0.key] == $0.value } }.reduce(0) {
            $0 + $1.value
        }
    }

    /// A histogram's cumulative buckets (upper bound, count) over the interval since `old`.
    func histogramDelta(_ name: String, since old: PromText) -> [(Double, Double)] {
        samples.filter { $0.name == name + "_bucket" }.compactMap { s in
            guard let le = s.labels["le"] else { return nil }
            let bound = le == "+Inf" ? Double.infinity : Double(le) ?? .infinity
            return (bound, s.value - old.sum(name + "_bucket", ["le": le]))
        }.sorted { $0.0 < $1.0 }
    }

    /// The bucket bound at or above quantile `q` (what Prometheus' histogram_quantile would
    /// interpolate within); nil without observations.
    static func quantile(_ q: Double, _ buckets: [(Double, Double)]) -> Double? {
        guard let total = buckets.last?.1, total > 0 else { return nil }
        var lower = 0.0, below = 0.0
        for (bound, count) in buckets {
            if count >= q * total {
                guard bound.isFinite else { return lower }
                let inBucket = count - below
                return inBucket > 0 ? lower + (bound - lower) * (q * total - below) / inBucket : bound
            }
            lower = bound.isFinite ? bound : lower
            below = count
        }
        return lower
    }
}
