import Foundation
import GRDB
import CEdgeCrypto
import EdgeEncoding
import EdgeCrypto

/// One rendition of a track: where it is, how it is encrypted, and its chunk table.
public struct Rendition: Codable, Sendable, Equatable {
    public struct Chunk: Codable, Sendable, Equatable {
        public var offset: Int
        public var length: Int
        public var duration_ms: Int
        public init(offset: Int, length: Int, duration_ms: Int) {
            self.offset = offset; self.length = length; self.duration_ms = duration_ms
        }
    }
    public struct Encryption: Codable, Sendable, Equatable {
        public var scheme: String
        public var iv_hex: String
        public init(scheme: String, iv_hex: String) { self.scheme = scheme; self.iv_hex = iv_hex }
    }
    public var bitrate_kbps: Int
    public var codec: String
    public var path: String
    public var bytes: Int
    public var encryption: Encryption
    /// The container headers a chunk needs in front of it to decode alone (Ogg: OpusHead, OpusTags).
    public struct Segment: Codable, Sendable, Equatable {
        public var offset: Int
        public var length: Int
        public init(offset: Int, length: Int) { self.offset = offset; self.length = length }
    }
    public var initSegment: Segment?
    public var chunks: [Chunk]
    public var sample_rate: Int
    public var container: String
    enum CodingKeys: String, CodingKey {
        case bitrate_kbps, codec, path, bytes, encryption, chunks, sample_rate, container
        case initSegment = "init"
    }
    public init(
        bitrate_kbps: Int, codec: String, path: String, bytes: Int, encryption: Encryption, initSegment: Segment?,
        chunks: [Chunk],
        sample_rate: Int, container: String = "ogg"
    ) {
        self.bitrate_kbps = bitrate_kbps; self.codec = codec; self.path = path; self.bytes = bytes
        self.encryption = encryption; self.initSegment = initSegment; self.chunks = chunks;
        self.sample_rate = sample_rate; self.container = container
    }
}

/// The per-track manifest (`audio/<track>/manifest.json`): the contract with players,
/// playback-auth and the tests.
public struct Manifest: Codable, Sendable, Equatable {
    public var track_id: String
    public var duration_ms: Int
    public var loudness_lufs: Double
    public var target_lufs: Double
    public var renditions: [Rendition]
    public init(track_id: String, duration_ms: Int, loudness_lufs: Double, target_lufs: Double, renditions: [Rendition])
    {
        self.track_id = track_id; self.duration_ms = duration_ms; self.loudness_lufs = loudness_lufs
        self.target_lufs = target_lufs; self.renditions = renditions
    }

    public func json() -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .prettyPrinted]
        return try! e.encode(self)
    }
}

public struct Track: Sendable, Equatable {
    public var id: String
    public var title: String
    public var artist: String
    public var album: String
    public var durationMs: Int
    public var loudnessLUFS: Double
    public var manifest: Manifest
    /// The content key wrapped under the catalog master key (AES-256-GCM: nonce | ciphertext | tag, hex).
    public var wrappedKeyHex: String
    /// ISO 3166 alpha-2 codes, or ["*"] for everywhere.
    public var regions: [String]
    /// Unix seconds before which nobody may play it.
    public var releaseAt: Int64
    public var sourceSHA256: String
    public init(
        id: String, title: String, artist: String, album: String, durationMs: Int, loudnessLUFS: Double,
        manifest: Manifest,
        wrappedKeyHex: String, regions: [String], releaseAt: Int64, sourceSHA256: String
    ) {
        self.id = id; self.title = title; self.artist = artist; self.album = album; self.durationMs = durationMs
        self.loudnessLUFS = loudnessLUFS; self.manifest = manifest; self.wrappedKeyHex = wrappedKeyHex;
        self.regions = regions
        self.releaseAt = releaseAt; self.sourceSHA256 = sourceSHA256
    }
    public var bitratesKbps: [Int] { manifest.renditions.map(\.bitrate_kbps) }
}

public struct CatalogError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// The SQLite catalog `packager` writes and `playback-auth` reads: the source of truth for tracks.
public final class Catalog: @unchecked Sendable {
    let db: DatabaseQueue

    public init(path: String, readOnly: Bool = false) throws {
        var config = Configuration()
        config.readonly = readOnly
        config.busyMode = .timeout(5)
        do { db = try DatabaseQueue(path: path, configuration: config) } catch {
            throw CatalogError("cannot open catalog \(path): \(error)")
        }
        if !readOnly { try migrate() }
    }

    private func migrate() throws {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE tracks (
                        id TEXT PRIMARY KEY NOT NULL,
                        title TEXT NOT NULL, artist TEXT NOT NULL, album TEXT NOT NULL,
                        duration_ms INTEGER NOT NULL,
                        loudness_lufs REAL NOT NULL,
                        target_lufs REAL NOT NULL,
                        wrapped_key_hex TEXT NOT NULL,
                        regions TEXT NOT NULL,
                        release_at INTEGER NOT NULL,
                        source_sha256 TEXT NOT NULL UNIQUE,
                        created_at INTEGER NOT NULL
                    );
                    CREATE TABLE renditions (
                        track_id TEXT NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
                        bitrate_kbps INTEGER NOT NULL,
                        codec TEXT NOT NULL,
                        path TEXT NOT NULL,
                        bytes INTEGER NOT NULL,
                        sample_rate INTEGER NOT NULL,
                        encryption_scheme TEXT NOT NULL,
                        iv_hex TEXT NOT NULL,
                        chunks_json TEXT NOT NULL,
                        init_offset INTEGER,
                        init_length INTEGER,
                        container TEXT NOT NULL,
                        PRIMARY KEY (track_id, bitrate_kbps)
                    );
                    """)
        }
        try m.migrate(db)
    }

    public func insert(_ t: Track) throws {
        try db.write { db in
            try db.execute(
                sql: """
                    INSERT INTO tracks (id, title, artist, album, duration_ms, loudness_lufs, target_lufs, wrapped_key_hex, regions, release_at, source_sha256, created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    t.id, t.title, t.artist, t.album, t.durationMs, t.loudnessLUFS, t.manifest.target_lufs,
                    t.wrappedKeyHex,
                    t.regions.joined(separator: ","), t.releaseAt, t.sourceSHA256, Int64(Date().timeIntervalSince1970),
                ])
            for r in t.manifest.renditions {
                let chunks = String(decoding: try JSONEncoder().encode(r.chunks), as: UTF8.self)
                try db.execute(
                    sql: """
                        INSERT INTO renditions (track_id, bitrate_kbps, codec, path, bytes, sample_rate, encryption_scheme, iv_hex, chunks_json,
                                                init_offset, init_length, container)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [
                        t.id, r.bitrate_kbps, r.codec, r.path, r.bytes, r.sample_rate, r.encryption.scheme,
                        r.encryption.iv_hex, chunks,
                        r.initSegment?.offset, r.initSegment?.length, r.container,
                    ])
            }
        }
    }

    public func track(id: String) throws -> Track? {
        try db.read { db in try Self.load(db, "SELECT * FROM tracks WHERE id = ?", [id]).first }
    }

    public func track(sourceSHA256: String) throws -> Track? {
        try db.read { db in try Self.load(db, "SELECT * FROM tracks WHERE source_sha256 = ?", [sourceSHA256]).first }
    }

    public func allTracks() throws -> [Track] {
        try db.read { db in try Self.load(db, "SELECT * FROM tracks ORDER BY id", []) }
    }

    public func delete(id: String) throws {
        try db.write { db in
            try db.execute(sql: "DELETE FROM renditions WHERE track_id = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM tracks WHERE id = ?", arguments: [id])
        }
    }

    private static func load(_ db: Database, _ sql: String, _ args: StatementArguments) throws -> [Track] {
        try Row.fetchAll(db, sql: sql, arguments: args).map { row in
            let id: String = row["id"]
            let rs = try Row.fetchAll(
                db, sql: "SELECT * FROM renditions WHERE track_id = ? ORDER BY bitrate_kbps", arguments: [id]
            ).map { r in
                let chunksJSON: String = r["chunks_json"]
                let initOffset: Int? = r["init_offset"], initLength: Int? = r["init_length"]
                return Rendition(
                    bitrate_kbps: r["bitrate_kbps"], codec: r["codec"], path: r["path"], bytes: r["bytes"],
                    encryption: .init(scheme: r["encryption_scheme"], iv_hex: r["iv_hex"]),
                    initSegment: initOffset.flatMap { o in initLength.map { Rendition.Segment(offset: o, length: $0) }
                    },
                    chunks: try JSONDecoder().decode([Rendition.Chunk].self, from: Data(chunksJSON.utf8)),
                    sample_rate: r["sample_rate"],
                    container: r["container"])
            }
            let regions: String = row["regions"]
            return Track(
                id: id, title: row["title"], artist: row["artist"], album: row["album"], durationMs: row["duration_ms"],
                loudnessLUFS: row["loudness_lufs"],
                manifest: Manifest(
                    track_id: id, duration_ms: row["duration_ms"], loudness_lufs: row["loudness_lufs"],
                    target_lufs: row["target_lufs"], renditions: rs),
                wrappedKeyHex: row["wrapped_key_hex"], regions: regions.split(separator: ",").map(String.init),
                releaseAt: row["release_at"], sourceSHA256: row["source_sha256"])
        }
    }
}

/// Content keys wrapped under the catalog master key with AES-256-GCM.
public enum KeyWrap {
    public static func wrap(_ key: [UInt8], master: [UInt8]) -> String {
        let nonce = SecureRandom.bytes(12)
        var out = [UInt8](repeating: 0, count: key.count)
        var tag = [UInt8](repeating: 0, count: 16)
        _ = edge_aes256_gcm_seal(master, nonce, key, key.count, &out, &tag)
        return Hex.encode(nonce + out + tag)
    }

    public static func unwrap(_ wrappedHex: String, master: [UInt8]) throws -> [UInt8] {
        guard let b = Hex.decode(wrappedHex), b.count > 28 else { throw CatalogError("wrapped key is malformed") }
        let nonce = Array(b[0..<12]), body = Array(b[12..<(b.count - 16)]), tag = Array(b[(b.count - 16)...])
        var out = [UInt8](repeating: 0, count: body.count)
        guard edge_aes256_gcm_open(master, nonce, body, body.count, tag, &out) == 0 else {
            throw CatalogError("content key does not verify under this master key")
        }
        return out
    }

}
