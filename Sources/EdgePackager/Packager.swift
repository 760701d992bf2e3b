import Foundation
import Subprocess
import CEdgeCrypto
import EdgeCrypto
import EdgeEncoding
import EdgeCatalog
import EdgeConfig

public struct PackagerError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// Turns source audio into what the origin serves: per track, an Opus-in-Ogg rendition per
/// bitrate (hard CBR, so the delivered bitrate is the nominal one whatever the music),
/// loudness-normalised (EBU R128, two-pass), encrypted with one random AES-128 key (CTR over the
/// whole file: any byte range decrypts alone), a chunk table per rendition, a manifest, and a
/// catalog row. A track appears in the origin and the catalog only whole.
public final class Packager {
    public let config: PackagerConfig
    public let originDirectory: String
    public let catalog: Catalog
    let masterKey: [UInt8]
    let progress: @Sendable (String) -> Void

    public init(
        config: PackagerConfig, originDirectory: String, catalog: Catalog,
        progress: @escaping @Sendable (String) -> Void
    ) {
        self.config = config
        self.originDirectory = originDirectory
        self.catalog = catalog
        masterKey = Hex.decode(config.masterKeyHex) ?? []
        self.progress = progress
    }

    public struct Options: Sendable {
        public var regions: [String] = ["*"]
        public var releaseAt: Int64 = 0
        public var title: String?
        public var artist: String?
        public var album: String?
        public init() {}
    }

    public enum Outcome: Equatable, Sendable { case ingested(String), alreadyPresent(String) }

    /// Ingests one file. On any failure nothing of it is left in the origin or the catalog.
    public func ingest(_ input: String, options: Options = Options()) async throws -> Outcome {
        let name = (input as NSString).lastPathComponent
        guard let source = FileManager.default.contents(atPath: input) else {
            throw PackagerError("\(input): cannot read the file")
        }
        guard !source.isEmpty else { throw PackagerError("\(input): the file is empty") }
        let sourceHash = Hex.encode(SHA256.digest(Array(source)))
        let trackID = "t" + sourceHash.prefix(12)
        // Idempotent: the same source is the same track.
        if try catalog.track(sourceSHA256: sourceHash) != nil {
            progress("\(name): already ingested as \(trackID)"); return .alreadyPresent(trackID)
        }

        let probe = try await probe(input)
        progress("\(name): \(String(format: "%.1f", probe.duration)) s, measuring loudness")
        let loudness = try await measureLoudness(input)
        let staging = originDirectory + "/.staging-\(trackID)-\(UInt64.random(in: 0...UInt64.max))"
        let final = originDirectory + "/audio/\(trackID)"
        let fm = FileManager.default
        do {
            try fm.createDirectory(atPath: staging, withIntermediateDirectories: true)
            let key = SecureRandom.bytes(16)
            var renditions: [Rendition] = []
            var durationMs = 0
            for kbps in config.bitratesKbps {
                progress("\(name): encoding \(kbps) kb/s")
                let plain = try await encode(input, kbps: kbps, loudness: loudness)
                let pages = try Ogg.pages(plain)
                let layout = try Ogg.layout(
                    pages, preSkip: try Ogg.opusPreSkip(plain, pages[0]), seconds: config.chunkSeconds)
                durationMs = layout.durationMs
                var iv = [UInt8](repeating: 0, count: 16)
                iv.replaceSubrange(0..<8, with: SecureRandom.bytes(8))   // the low 8 bytes start at zero: counters never wrap within a file
                var cipher = [UInt8](repeating: 0, count: plain.count)
                guard edge_aes128_ctr(key, iv, 0, plain, &cipher, plain.count) == 0 else {
                    throw PackagerError("encryption failed")
                }
                let file = "\(kbps).opus"
                try Data(cipher).write(to: URL(fileURLWithPath: staging + "/" + file))
                renditions.append(
                    Rendition(
                        bitrate_kbps: kbps, codec: "opus", path: "/audio/\(trackID)/\(file)", bytes: cipher.count,
                        encryption: .init(scheme: "aes-128-ctr", iv_hex: Hex.encode(iv)),
                        initSegment: .init(offset: layout.initOffset, length: layout.initLength),
                        chunks: layout.chunks.map {
                            .init(offset: $0.offset, length: $0.length, duration_ms: $0.durationMs)
                        },
                        sample_rate: 48000))
            }
            let manifest = Manifest(
                track_id: trackID, duration_ms: durationMs, loudness_lufs: loudness.integrated,
                target_lufs: config.targetLUFS, renditions: renditions)
            try manifest.json().write(to: URL(fileURLWithPath: staging + "/manifest.json"))
            let track = Track(
                id: trackID, title: options.title ?? probe.title ?? (name as NSString).deletingPathExtension,
                artist: options.artist ?? probe.artist ?? "", album: options.album ?? probe.album ?? "",
                durationMs: durationMs, loudnessLUFS: loudness.integrated, manifest: manifest,
                wrappedKeyHex: KeyWrap.wrap(key, master: masterKey), regions: options.regions,
                releaseAt: options.releaseAt, sourceSHA256: sourceHash)
            // Publish: the directory appears whole (one rename), then the catalog row. A leftover
            // directory of an earlier failed publish of the same source is replaced.
            try fm.createDirectory(atPath: originDirectory + "/audio", withIntermediateDirectories: true)
            if fm.fileExists(atPath: final) { try fm.removeItem(atPath: final) }
            guard rename(staging, final) == 0 else { throw PackagerError("cannot publish \(final): errno \(errno)") }
            do { try catalog.insert(track) } catch {
                try? fm.removeItem(atPath: final)
                throw PackagerError("\(input): catalog write failed: \(error)")
            }
            progress(
                "\(name): published \(trackID) (\(config.bitratesKbps.map { "\($0)" }.joined(separator: "/")) kb/s, \(durationMs) ms, \(String(format: "%.1f", loudness.integrated)) LUFS measured)"
            )
            return .ingested(trackID)
        } catch {
            try? fm.removeItem(atPath: staging)
            if let e = error as? PackagerError { throw e }
            throw PackagerError("\(input): \(error)")
        }
    }

    // MARK: ffmpeg

    struct Probe { var duration: Double; var title: String?; var artist: String?; var album: String? }

    func probe(_ input: String) async throws -> Probe {
        let r = try await tool(
            "ffprobe",
            [
                "-v", "error", "-select_streams", "a:0", "-show_entries",
                "stream=codec_type:format=duration:format_tags=title,artist,album",
                "-of", "json", input,
            ])
        guard r.ok, let data = r.out.data(using: .utf8),
            let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else {
            throw PackagerError("\(input): not readable audio (\(r.errLine))")
        }
        guard let streams = obj["streams"] as? [[String: Any]], !streams.isEmpty else {
            throw PackagerError("\(input): no audio stream")
        }
        let format = obj["format"] as? [String: Any] ?? [:]
        guard let d = (format["duration"] as? String).flatMap(Double.init), d > 0.5 else {
            throw PackagerError("\(input): no usable duration (empty or broken audio)")
        }
        let tags = format["tags"] as? [String: String] ?? [:]
        // A decode pass catches truncated or corrupt data that the header alone does not show.
        let check = try await tool("ffmpeg", ["-v", "error", "-xerror", "-i", input, "-f", "null", "-"])
        guard check.ok, check.err.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw PackagerError("\(input): corrupt audio (\(check.errLine))")
        }
        return Probe(duration: d, title: tags["title"], artist: tags["artist"], album: tags["album"])
    }

    struct Loudness {
        var integrated: Double; var truePeak: Double; var range: Double; var threshold: Double; var offset: Double
    }

    /// EBU R128 first pass: ffmpeg's loudnorm measures; the second pass (encode) applies it linearly.
    func measureLoudness(_ input: String) async throws -> Loudness {
        let f = "loudnorm=I=\(config.targetLUFS):TP=\(config.truePeakDBTP):LRA=11:print_format=json"
        let r = try await tool("ffmpeg", ["-hide_banner", "-nostats", "-i", input, "-af", f, "-f", "null", "-"])
        guard r.ok, let start = r.err.lastIndex(of: "{"), let end = r.err.lastIndex(of: "}"),
            let obj = try? JSONSerialization.jsonObject(with: Data(r.err[start...end].utf8)) as? [String: String],
            let i = obj["input_i"].flatMap(Double.init), let tp = obj["input_tp"].flatMap(Double.init),
            let lra = obj["input_lra"].flatMap(Double.init), let th = obj["input_thresh"].flatMap(Double.init),
            let off = obj["target_offset"].flatMap(Double.init), i.isFinite
        else {
            throw PackagerError("\(input): loudness measurement failed (silent or unreadable audio?)")
        }
        return Loudness(integrated: i, truePeak: tp, range: lra, threshold: th, offset: off)
    }

    func encode(_ input: String, kbps: Int, loudness: Loudness) async throws -> [UInt8] {
        let l = loudness
        let filter =
            "loudnorm=I=\(config.targetLUFS):TP=\(config.truePeakDBTP):LRA=11:measured_I=\(l.integrated):measured_TP=\(l.truePeak)"
            + ":measured_LRA=\(l.range):measured_thresh=\(l.threshold):offset=\(l.offset):linear=true,aresample=\(config.sampleRate)"
        let out = NSTemporaryDirectory() + "packager-\(UInt64.random(in: 0...UInt64.max)).opus"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let channels = kbps < 48 ? "1" : "2"   // very low bitrates sound better in mono
        // Hard CBR, 20 ms frames, a page per second: chunk boundaries fall on pages.
        let r = try await tool(
            "ffmpeg",
            [
                "-hide_banner", "-nostats", "-v", "error", "-i", input, "-vn", "-map_metadata", "-1", "-af", filter,
                "-c:a", "libopus", "-b:a", "\(kbps)k", "-vbr", "off", "-frame_duration", "20", "-application", "audio",
                "-ac", channels, "-ar", "48000", "-page_duration", "1000000", "-f", "ogg", "-y", out,
            ])
        guard r.ok, let data = FileManager.default.contents(atPath: out), !data.isEmpty else {
            throw PackagerError("\(input): encoding at \(kbps) kb/s failed (\(r.errLine))")
        }
        return Array(data)
    }

    public struct ToolResult {
        public var ok: Bool; public var out: String; public var err: String
        public var errLine: String { err.split(separator: "\n").last.map(String.init) ?? "no message" }
    }

    public func tool(_ name: String, _ args: [String]) async throws -> ToolResult {
        do {
            let r = try await run(
                .name(name), arguments: Arguments(args), output: .string(limit: 8 << 20), error: .string(limit: 8 << 20)
            )
            let ok: Bool
            if case .exited(0) = r.terminationStatus { ok = true } else { ok = false }
            return ToolResult(ok: ok, out: r.standardOutput ?? "", err: r.standardError ?? "")
        } catch {
            throw PackagerError("cannot run \(name) (is ffmpeg installed?): \(error)")
        }
    }
}
