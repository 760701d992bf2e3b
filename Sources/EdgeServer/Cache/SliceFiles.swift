import Foundation
import CEdgeRing
import EdgeCache
import EdgeCrypto
import EdgeEncoding

/// The on-disk form of a slice: a 4 KiB header (`SliceFileHeader`, in EdgeCache), then the data
/// (so data reads are page aligned).
///
/// Files are written to `tmp/` and renamed into place after fsync, so a crash leaves either no
/// file or a whole one; start-up still checks every header field and every checksum and deletes
/// what fails, so a slice torn by a power loss, or a header that lies, is never served and never
/// stops the edge from starting. The name hashes the key *and* the ETag: a new version of an
/// object never reuses an old version's file name.
enum SliceFile {
    static let headerBytes = SliceFileHeader.bytes

    static func relativePath(_ key: SliceKey, etag: String) -> String {
        let hex = Hex.encode(SHA256.digest(Array("\(key.path)#\(key.index)#\(etag)".utf8)).prefix(16))
        return "\(hex.prefix(2))/\(hex).slice"
    }

    static func header(key: SliceKey, meta: ObjectMeta, length: Int, digest: [UInt8]) -> [UInt8] {
        SliceFileHeader(
            path: key.path, index: key.index, dataLength: length, objectSize: meta.size,
            storedAtSeconds: meta.storedAtSeconds,
            digest: digest, etag: meta.etag, lastModified: meta.lastModified, contentType: meta.contentType
        ).encoded()
    }

    /// Parses and verifies a whole slice file (header fields, size, checksum); the reason it is
    /// bad otherwise.
    static func verify(
        _ data: [UInt8], limits: SliceFileHeader.Limits
    ) -> Result<(key: SliceKey, meta: ObjectMeta, slice: (offset: Int, length: Int)), SliceFileError> {
        data.withUnsafeBytes { raw in
            switch SliceFileHeader.decode(raw, fileBytes: data.count, limits: limits) {
            case .bad(let why): return .failure(SliceFileError(reason: why))
            case .ok(let h):
                guard SHA256.digest(raw.baseAddress! + headerBytes, h.dataLength) == h.digest else {
                    return .failure(SliceFileError(reason: "checksum mismatch"))
                }
                return .success(
                    (
                        SliceKey(path: h.path, index: h.index),
                        ObjectMeta(
                            size: h.objectSize, etag: h.etag, lastModified: h.lastModified, contentType: h.contentType,
                            storedAtSeconds: h.storedAtSeconds),
                        (headerBytes, h.dataLength)
                    ))
            }
        }
    }

    /// Reads a slice file of at most `bytesMax` bytes; nil when it cannot be read or is larger
    /// (nothing is allocated in proportion to what a file on disk claims).
    static func read(_ path: String, bytesMax: Int) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_size >= 0, Int(st.st_size) <= bytesMax else {
            return nil
        }
        let size = Int(st.st_size)
        var out = [UInt8](repeating: 0, count: size)
        var got = 0
        let ok = out.withUnsafeMutableBytes { b -> Bool in
            while got < size {
                let n = pread(fd, b.baseAddress! + got, size - got, off_t(got))
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return false }
                got += n
            }
            return true
        }
        return ok ? out : nil
    }

    /// Start-up (before any worker runs): creates the directory layout, empties `tmp/`, and
    /// adopts every slice whose checksum verifies, within the disk limit. Returns counts.
    static func rebuild(_ store: SliceStore, report: (String) -> Void = { _ in }) throws -> (adopted: Int, dropped: Int)
    {
        let fm = FileManager.default
        let dir = store.directory
        do {
            try fm.createDirectory(atPath: dir + "/tmp", withIntermediateDirectories: true)
            for i in 0..<256 {
                try fm.createDirectory(
                    atPath: dir + "/" + Hex.encode(UInt64(i), width: 2), withIntermediateDirectories: true)
            }
        } catch {
            throw StartupError(description: "cache.dir: cannot create \(dir): \(error.localizedDescription)")
        }
        for f in (try? fm.contentsOfDirectory(atPath: dir + "/tmp")) ?? [] {
            try? fm.removeItem(atPath: dir + "/tmp/" + f)
        }
        var adopted = 0, dropped = 0
        let limits = SliceFileHeader.Limits(sliceBytes: store.sliceBytes, objectBytesMax: store.objectBytesMax)
        var reasons: [String: Int] = [:]
        defer {
            for (why, n) in reasons.sorted(by: { $0.key < $1.key }) {
                report("cache: \(n) slice files dropped at start-up: \(why)")
            }
        }
        for i in 0..<256 {
            let sub = Hex.encode(UInt64(i), width: 2)
            for name in (try? fm.contentsOfDirectory(atPath: dir + "/" + sub)) ?? [] where name.hasSuffix(".slice") {
                let rel = sub + "/" + name
                let why: String
                if let data = read(dir + "/" + rel, bytesMax: headerBytes + store.sliceBytes) {
                    switch verify(data, limits: limits) {
                    case .failure(let e): why = e.reason
                    case .success(let (key, meta, slice)) where relativePath(key, etag: meta.etag) == rel:
                        for d in store.adopt(
                            key, meta: meta,
                            disk: DiskSlice(relativePath: rel, dataOffset: slice.offset, length: slice.length))
                        {
                            try? fm.removeItem(atPath: dir + "/" + d.relativePath)
                            dropped += 1
                        }
                        adopted += 1
                        continue
                    case .success: why = "name does not match its key"
                    }
                } else {
                    why = "unreadable, not a regular file, or larger than a slice"
                }
                try? fm.removeItem(atPath: dir + "/" + rel)
                reasons[why, default: 0] += 1
                dropped += 1
            }
        }
        return (adopted, dropped)
    }
}

struct SliceFileError: Error { var reason: String }
