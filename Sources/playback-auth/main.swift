import ArgumentParser
import EdgeConfig
import Foundation
import Hummingbird
import NIOCore
import NIOPosix
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

    /// The NIO event loops become Swift Concurrency's global executor before anything runs: each
    /// grant's handler then runs on the loop threads instead of hopping to the concurrency pool's
    /// threads and back (two thread switches per request; `perf record` under
    /// `loadtest/auth_bench.py` showed a third of the process in the hops and the pool's queues).
    /// Nothing here blocks a loop thread on a future (`.wait()`), which this would deadlock.
    static func main() async {
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }

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
