import ArgumentParser
import EdgeConfig
import Foundation
import Hummingbird
import PlaybackAuth

@main
struct PlaybackAuthCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "playback-auth",
        abstract: "Control plane: decides who may play what, at which quality, and issues signed edge grants.")

    @Option(name: .long, help: "Configuration (TOML: [auth], [token], [catalog]).")
    var config: String = "edge.conf"
    @Flag(name: .long, help: "Validate the configuration and exit.")
    var check = false

    func run() async throws {
        let c: PlaybackAuthConfig
        do { c = try loadConfigFile(config, PlaybackAuthConfig.parse) } catch let e as ConfigError {
            FileHandle.standardError.write("playback-auth: \(config): \(e)\n".data(using: .utf8)!)
            throw ExitCode(2)
        }
        do {
            let app = try await buildApplication(config: c)
            if check { print("playback-auth: \(config): ok"); return }
            try await app.runService()
        } catch let e as ExitCode { throw e } catch {
            FileHandle.standardError.write("playback-auth: \(error)\n".data(using: .utf8)!)
            throw ExitCode(1)
        }
    }
}
