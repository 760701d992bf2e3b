import ArgumentParser
import EdgeAuthToken
import EdgeConfig
import Foundation

@main
struct EdgeCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edgectl",
        abstract: "Operator CLI for the edge.",
        subcommands: [Sign.self, Check.self])
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
    @Option(name: .long, help: "Print a full URL for this path (the token added as ?NAME=).")
    var path: String?
    @Option(name: .long, help: "Token parameter name for --path.")
    var name: String = "hdnts"

    func validate() throws {
        if acl.isEmpty == (url == nil) { throw ValidationError("give exactly one of --acl and --url") }
        if ttl <= 0 { throw ValidationError("--ttl must be positive") }
        if EdgeAuthKey(hex: keyHex) == nil { throw ValidationError("--key-hex must be non-empty hex with an even number of digits") }
    }

    func run() throws {
        let key = EdgeAuthKey(hex: keyHex)!
        let now = Int(Date().timeIntervalSince1970)
        let token = EdgeAuthToken.sign(key: key, acl: acl.isEmpty ? nil : acl.flatMap { $0.split(separator: "!").map(String.init) },
                                       url: url, startTime: startTime, expiry: (startTime ?? now) + ttl, ip: ip, sessionID: id, data: data)
        if let path { print("\(path)?\(name)=\(token)") } else { print(token) }
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Validate an edge configuration file.")
    @Argument(help: "The configuration file.")
    var file: String

    func run() throws {
        let text: String
        do { text = try String(contentsOfFile: file, encoding: .utf8) } catch {
            FileHandle.standardError.write("edgectl: cannot read \(file): \(error.localizedDescription)\n".data(using: .utf8)!)
            throw ExitCode(2)
        }
        do { _ = try EdgeConfig.parse(text) } catch let e as ConfigError {
            FileHandle.standardError.write("edgectl: \(file): \(e)\n".data(using: .utf8)!)
            throw ExitCode(2)
        }
        print("\(file): ok")
    }
}
