import ArgumentParser
import EdgeCatalog
import EdgeConfig
import EdgePackager
import Foundation
import EdgeEncoding

@main
struct PackagerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "packager",
        abstract: "Turn source audio into encrypted multi-bitrate AAC with chunk tables, for the edge's origin.",
        subcommands: [Ingest.self, DemoContent.self, Key.self])
}

struct Common: ParsableArguments {
    @Option(name: .long, help: "Origin directory (tracks go to <out>/audio/<track>/).")
    var out: String
    @Option(name: .long, help: "Catalog (SQLite).")
    var catalog: String
    @Option(name: .long, help: "Configuration (TOML with [catalog] master_key_hex and optional [packager]).")
    var config: String = "edge.conf"
    @Option(name: .long, help: "Licensed regions (ISO 3166 alpha-2, comma-separated), or * for everywhere.")
    var regions: String = "*"
    @Option(name: .long, help: "Release time (Unix seconds); nobody plays the track before it.")
    var releaseAt: Int64 = 0

    func load() throws -> (PackagerConfig, Catalog) {
        let c: PackagerConfig
        do { c = try loadConfigFile(config, PackagerConfig.parse) } catch let e as ConfigError {
            throw ValidationError("\(config): \(e)")
        }
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        return (c, try Catalog(path: catalog))
    }

    var options: Packager.Options {
        var o = Packager.Options()
        o.regions = regions.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).uppercased() }.map {
            $0 == "*" ? "*" : $0
        }
        o.releaseAt = releaseAt
        return o
    }
}

func say(_ s: String) { FileHandle.standardError.write((s + "\n").data(using: .utf8)!) }

struct Ingest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Package audio files (anything ffmpeg reads: WAV, FLAC, MP3, ...).")
    @Argument(help: "Input files.") var inputs: [String]
    @OptionGroup var common: Common

    func run() async throws {
        let (config, catalog) = try common.load()
        let p = Packager(
            config: config, originDirectory: common.out, catalog: catalog, progress: { say("packager: " + $0) })
        var failed = 0
        for (i, input) in inputs.enumerated() {
            say("packager: [\(i + 1)/\(inputs.count)] \(input)")
            do {
                switch try await p.ingest(input, options: common.options) {
                case .ingested(let id), .alreadyPresent(let id): print("\(id)\t\(input)")
                }
            } catch {
                say("packager: error: \(error)")
                failed += 1
            }
        }
        if failed > 0 { say("packager: \(failed) of \(inputs.count) inputs failed"); throw ExitCode(1) }
    }
}

struct DemoContent: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo-content", abstract: "Synthesise N short original tracks (ffmpeg lavfi) and package them.")
    @Option(name: .long, help: "How many tracks.") var tracks: Int = 3
    @Option(name: .long, help: "Seconds per track.") var seconds: Int = 40
    @OptionGroup var common: Common

    func validate() throws {
        guard (1...200).contains(tracks) else { throw ValidationError("--tracks must be 1...200") }
        guard (5...600).contains(seconds) else { throw ValidationError("--seconds must be 5...600") }
    }

    func run() async throws {
        let (config, catalog) = try common.load()
        let p = Packager(
            config: config, originDirectory: common.out, catalog: catalog, progress: { say("packager: " + $0) })
        let tmp = NSTemporaryDirectory() + "edge-demo-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        for k in 0..<tracks {
            // Different keys, timbres and levels (about -35 to -15 LUFS), so normalisation has work to do.
            let f = 110 * (k % 7 + 2), g = 0.05 + 0.1 * Double(k % 5)
            let wav = "\(tmp)/demo-\(k + 1).wav"
            let graph =
                "sine=frequency=\(f):sample_rate=48000:duration=\(seconds)[a];sine=frequency=\(f * 3 / 2):sample_rate=48000:duration=\(seconds)[b];"
                + "anoisesrc=color=pink:amplitude=\(g / 4):sample_rate=48000:duration=\(seconds):seed=\(k + 1)[n];"
                + "[a][b][n]amix=inputs=3,volume=\(g * 3),tremolo=f=\(1 + k % 3):d=0.4,aformat=channel_layouts=stereo"
            let r = try await p.tool(
                "ffmpeg",
                [
                    "-hide_banner", "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=48000", "-filter_complex", graph,
                    "-metadata", "title=Demo Track \(k + 1)", "-metadata", "artist=Edge Demo Ensemble",
                    "-metadata", "album=Demo Album", "-t", "\(seconds)", "-y", wav,
                ])
            guard r.ok else { throw ValidationError("ffmpeg could not synthesise a demo track: \(r.errLine)") }
            switch try await p.ingest(wav, options: common.options) {
            case .ingested(let id), .alreadyPresent(let id): print("\(id)\tDemo Track \(k + 1)")
            }
        }
    }
}

struct Key: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a track's content key (hex), unwrapped with the master key. Operators only.")
    @Argument(help: "Track id.") var track: String
    @Option(name: .long) var catalog: String
    @Option(name: .long) var config: String = "edge.conf"

    func run() async throws {
        let c = try loadConfigFile(config, PackagerConfig.parse)
        guard let t = try Catalog(path: catalog, readOnly: true).track(id: track) else {
            throw ValidationError("no track \(track) in \(catalog)")
        }
        print(Hex.encode(try KeyWrap.unwrap(t.wrappedKeyHex, master: Hex.decode(c.masterKeyHex)!)))
    }
}
