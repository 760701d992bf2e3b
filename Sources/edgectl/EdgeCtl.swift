import ArgumentParser
import EdgeAuthToken
import EdgeConfig
import EdgeCache
import Foundation

@main
struct EdgeCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edgectl",
        abstract: "Operator CLI for the edge.",
        subcommands: [
            Sign.self, Check.self, Prewarm.self, Purge.self, CacheList.self, Stats.self, Reload.self, Geo.self,
            CacheSim.self, TraceGen.self,
        ])
}

struct Sign: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print an EdgeAuth 2.0 token.")

    @Option(name: .long, help: "HMAC key, hex.")
    var keyHex: String
    @Option(name: .long, help: "ACL pattern(s), '*' wildcard; repeat or join with '!'.")
    var acl: [String] = []
    @Option(name: .long, help: "Sign a single URL path instead of an ACL.")
    var url: String?
    @Option(name: .long, help: "Lifetime in seconds.")
    var ttl: Int = 3600
    @Option(name: .long, help: "Start time (Unix seconds); default: none.")
    var startTime: Int?
    @Option(name: .long, help: "Bind the token to this client IP.")
    var ip: String?
    @Option(name: .long, help: "Session id field.")
    var id: String?
    @Option(name: .long, help: "Opaque data field.")
    var data: String?
    @Option(name: .long, help: "Region claim: '*' or countries (US,CA), added to the data field as geo=...")
    var regions: String?
    @Option(name: .long, help: "Print a full URL for this path (the token added as ?NAME=).")
    var path: String?
    @Option(name: .long, help: "Token parameter name for --path.")
    var name: String = "hdnts"

    func validate() throws {
        if acl.isEmpty == (url == nil) { throw ValidationError("give exactly one of --acl and --url") }
        if ttl <= 0 { throw ValidationError("--ttl must be positive") }
        if EdgeAuthKey(hex: keyHex) == nil {
            throw ValidationError("--key-hex must be non-empty hex with an even number of digits")
        }
        if let regions, RegionClaim(value: regions) == nil {
            throw ValidationError("--regions must be * or comma-separated two-letter country codes (US,CA)")
        }
        if let data, data.contains("~") { throw ValidationError("--data must not contain '~' (the field separator)") }
    }

    func run() throws {
        let key = EdgeAuthKey(hex: keyHex)!
        let now = Int(Date().timeIntervalSince1970)
        let items = [data, regions.flatMap { RegionClaim(value: $0)?.dataItem }].compactMap { $0 }
        let token = EdgeAuthToken.sign(
            key: key, acl: acl.isEmpty ? nil : acl.flatMap { $0.split(separator: "!").map(String.init) },
            url: url, startTime: startTime, expiry: (startTime ?? now) + ttl, ip: ip, sessionID: id,
            data: items.isEmpty ? nil : items.joined(separator: ";"))
        if let path { print("\(path)?\(name)=\(token)") } else { print(token) }
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Validate an edge configuration file.")
    @Argument(help: "The configuration file.")
    var file: String

    func run() throws {
        do { _ = try loadConfigFile(file, EdgeConfig.parse) } catch let e as ConfigError {
            FileHandle.standardError.write("edgectl: \(file): \(e)\n".data(using: .utf8)!)
            throw ExitCode(2)
        }
        print("\(file): ok")
    }
}

struct CacheSim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cachesim",
        abstract: "Replay a trace (CSV time,key,size_bytes) through the edge's cache policy and the baselines.")

    @Argument(help: "Trace file (CSV: time,key,size_bytes).")
    var trace: String
    @Option(name: .long, help: "Cache sizes as fractions of the trace's unique bytes.")
    var fractions: [Double] = [0.001, 0.01, 0.1]
    @Option(name: .long, help: "Policies, comma-separated.")
    var policies: String = CacheSimulator.policyNames.joined(separator: ",")
    @Flag(name: .long, help: "Print JSON instead of a table.")
    var json = false

    func run() throws {
        let text: String
        do { text = try String(contentsOfFile: trace, encoding: .utf8) } catch {
            FileHandle.standardError.write(
                "edgectl cachesim: cannot read \(trace): \(error.localizedDescription)\n".data(using: .utf8)!)
            throw ExitCode(2)
        }
        let requests: [TraceRequest]
        do { requests = try Trace.parseCSV(text) } catch {
            FileHandle.standardError.write("edgectl cachesim: \(trace): \(error)\n".data(using: .utf8)!)
            throw ExitCode(2)
        }
        let names = policies.split(separator: ",").map(String.init)
        for n in names where !CacheSimulator.policyNames.contains(n) {
            throw ValidationError("unknown policy \(n); known: \(CacheSimulator.policyNames.joined(separator: ", "))")
        }
        let unique = Trace.uniqueBytes(requests)
        let sizes = fractions.map { max(1, Int(Double(unique) * $0)) }
        var results: [String: [SimulationResult]] = [:]
        for name in names {
            results[name] = sizes.map { CacheSimulator.run(trace: requests, policy: name, capacityBytes: $0) }
        }
        if json {
            var out = "{\"unique_bytes\":\(unique),\"requests\":\(requests.count),\"results\":{"
            out += names.map { name in
                "\"\(name)\":["
                    + results[name]!.map {
                        "{\"size_bytes\":\($0.sizeBytes),\"byte_miss_ratio\":\($0.byteMissRatio),\"object_miss_ratio\":\($0.objectMissRatio)}"
                    }.joined(separator: ",") + "]"
            }.joined(separator: ",")
            print(out + "}}")
            return
        }
        print("\(requests.count) requests, \(unique) unique bytes; byte miss ratio / object miss ratio, cold start")
        var header = "policy    "
        for (f, s) in zip(fractions, sizes) { header += " | \(f * 100)% (\(s) B)".padding(30) }
        print(header)
        for name in names {
            var line = name.padding(10)
            for r in results[name]! {
                line += " | " + (fmt(r.byteMissRatio) + " / " + fmt(r.objectMissRatio)).padding(27)
            }
            print(line)
        }
    }

    func fmt(_ v: Double) -> String { String(format: "%.4f", v) }
}

struct TraceGen: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tracegen",
        abstract: "Write a synthetic audio workload trace (CSV time,key,size_bytes).")

    @Option(name: .long, help: "Output file ('-' for standard output).")
    var out: String = "-"
    @Option(name: .long) var tracks: Int = 5000
    @Option(name: .long) var sessions: Int = 20000
    @Option(name: .long) var days: Int = 3
    @Option(name: .long, help: "Zipf exponent of track popularity.") var zipf: Double = 0.9
    @Option(name: .long, help: "Release drops (new albums that jump to the top).") var releases: Int = 2
    @Option(name: .long) var seed: UInt64 = 1

    func validate() throws {
        if tracks < 1 || sessions < 1 || days < 1 {
            throw ValidationError("--tracks, --sessions and --days must be positive")
        }
    }

    func run() throws {
        var g = AudioTraceGenerator()
        g.tracks = tracks; g.sessions = sessions; g.days = days; g.zipfExponent = zipf; g.releases = releases;
        g.seed = seed
        var text = "time,key,size_bytes\n"
        for r in g.generate() { text += "\(r.time),\(r.key),\(r.size)\n" }
        if out == "-" {
            print(text, terminator: "")
        } else {
            try text.write(toFile: out, atomically: true, encoding: .utf8)
        }
    }
}

extension String {
    func padding(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
}
