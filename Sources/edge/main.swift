import ArgumentParser
import EdgeConfig
import EdgeAdmin
import EdgeServer
import Foundation

@main
struct Edge: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edge",
        abstract: "Audio CDN edge: io_uring, HTTP/1.1 + HTTP/2, TLS, signed byte-range requests.")

    @Option(name: .long, help: "Configuration file (TOML).")
    var config: String = "edge.conf"

    @Flag(name: .long, help: "Validate the configuration and exit (non-zero on error).")
    var check = false

    func run() throws {
        let parsed: EdgeConfig
        do { parsed = try loadConfigFile(config, EdgeConfig.parse) } catch let e as ConfigError {
            FileHandle.standardError.write("edge: \(config): \(e)\n".data(using: .utf8)!)
            throw ExitCode(2)
        }
        if check {
            let problems = EdgeServer.preflight(parsed)
            for p in problems { FileHandle.standardError.write("edge: \(config): \(p)\n".data(using: .utf8)!) }
            if !problems.isEmpty { throw ExitCode(2) }
            print("edge: \(config): ok")
            return
        }
        do {
            try EdgeServer(config: parsed, configPath: config).run(
                control: { control in
                    try EdgeAdmin.start(control: control) { line in
                        FileHandle.standardError.write((line + "\n").data(using: .utf8)!)
                    }
                },
                ready: { line in FileHandle.standardError.write((line + "\n").data(using: .utf8)!) })
        } catch {
            FileHandle.standardError.write("edge: \(error)\n".data(using: .utf8)!)
            throw ExitCode(1)
        }
    }
}
