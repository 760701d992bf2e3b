import Foundation
import CEdgeShims
import EdgeCache

/// The on-disk form of a slice: a 4 KiB header, then the data (so data reads are page aligned).
///
///     "EDGESLC1" | u32 header bytes | u64 data length | u64 object size | u64 slice index
///     | i64 stored-at | 32-byte SHA-256 of the data | u16+key | u16+etag | u16+last-modified
///     | u16+content-type | zero padding to 4096 | data
///
/// Files are written to `tmp/` and renamed into place after fsync, so a crash leaves either no
/// file or a whole one; start-up still verifies every checksum and deletes what fails, so a slice
/// torn by a power loss is never served. The name hashes the key *and* the ETag: a new version
/// of an object never reuses an old version's file name.
enum SliceFile {
    static let headerBytes = 4096
    static let magic = Array("EDGESLC1".utf8)

    static func relativePath(_ key: SliceKey, etag: String) -> String {
        let digest = sha256(Array("\(key.path)#\(key.index)#\(etag)".utf8))
        let hex = digest.prefix(16).map { String($0, radix: 16).leftPad(2) }.joined()
        return "\(hex.prefix(2))/\(hex).slice"
    }

    static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        bytes.withUnsafeBytes { b in out.withUnsafeMutableBufferPointer { o in _ = edge_sha256(b.baseAddress, b.count, o.baseAddress) } }
        return out
    }

    static func sha256(_ p: UnsafeRawPointer, _ n: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        out.withUnsafeMutableBufferPointer { o in _ = edge_sha256(p, n, o.baseAddress) }
        return out
    }

    static func header(key: SliceKey, meta: ObjectMeta, length: Int, digest: [UInt8]) -> [UInt8] {
        var h = magic
        func u32(_ v: Int) { withUnsafeBytes(of: UInt32(v).littleEndian) { h += $0 } }
        func u64(_ v: Int) { withUnsafeBytes(of: UInt64(bitPattern: Int64(v)).littleEndian) { h += $0 } }
        func str(_ s: String) { let b = Array(s.utf8.prefix(1000)); withUnsafeBytes(of: UInt16(b.count).littleEndian) { h += $0 }; h += b }
        u32(headerBytes); u64(length); u64(meta.size); u64(key.index); u64(Int(meta.storedAtSeconds))
        h += digest
        str(key.path); str(meta.etag); str(meta.lastModified); str(meta.contentType)
        h += [UInt8](repeating: 0, count: headerBytes - h.count)
        return h
    }

    /// Parses and verifies a whole slice file; nil when anything is off.
    static func verify(_ data: Data) -> (key: SliceKey, meta: ObjectMeta, slice: (offset: Int, length: Int))? {
        guard data.count >= headerBytes else { return nil }
        return data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> (SliceKey, ObjectMeta, (Int, Int))? in
            guard raw.prefix(8).elementsEqual(magic) else { return nil }
            var at = 8
            func u32() -> Int { defer { at += 4 }; return Int(raw.loadUnaligned(fromByteOffset: at, as: UInt32.self).littleEndian) }
            func u64() -> Int { defer { at += 8 }; return Int(Int64(bitPattern: raw.loadUnaligned(fromByteOffset: at, as: UInt64.self).littleEndian)) }
            func str() -> String? {
                guard at + 2 <= headerBytes else { return nil }
                let n = Int(raw.loadUnaligned(fromByteOffset: at, as: UInt16.self).littleEndian); at += 2
                guard at + n <= headerBytes else { return nil }
                defer { at += n }
                return String(decoding: raw[at..<(at + n)], as: UTF8.self)
            }
            guard u32() == headerBytes else { return nil }
            let length = u64(), size = u64(), index = u64(), storedAt = u64()
            let digest = Array(raw[at..<(at + 32)]); at += 32
            guard let path = str(), let etag = str(), let lm = str(), let ct = str() else { return nil }
            guard length > 0, data.count == headerBytes + length, index >= 0, size > 0 else { return nil }
            guard sha256(raw.baseAddress! + headerBytes, length) == digest else { return nil }
            return (SliceKey(path: path, index: index), ObjectMeta(size: size, etag: etag, lastModified: lm, contentType: ct, storedAtSeconds: Int64(storedAt)),
                    (headerBytes, length))
        }
    }

    /// Start-up (before any worker runs): creates the directory layout, empties `tmp/`, and
    /// adopts every slice whose checksum verifies, within the disk limit. Returns counts.
    static func rebuild(_ store: SliceStore) throws -> (adopted: Int, dropped: Int) {
        let fm = FileManager.default
        let dir = store.directory
        do {
            try fm.createDirectory(atPath: dir + "/tmp", withIntermediateDirectories: true)
            for i in 0..<256 { try fm.createDirectory(atPath: dir + "/" + String(i, radix: 16).leftPad(2), withIntermediateDirectories: true) }
        } catch {
            throw StartupError(description: "cache.dir: cannot create \(dir): \(error.localizedDescription)")
        }
        for f in (try? fm.contentsOfDirectory(atPath: dir + "/tmp")) ?? [] { try? fm.removeItem(atPath: dir + "/tmp/" + f) }
        var adopted = 0, dropped = 0
        for i in 0..<256 {
            let sub = String(i, radix: 16).leftPad(2)
            for name in (try? fm.contentsOfDirectory(atPath: dir + "/" + sub)) ?? [] where name.hasSuffix(".slice") {
                let rel = sub + "/" + name
                guard let data = fm.contents(atPath: dir + "/" + rel), let (key, meta, slice) = verify(data),
                      relativePath(key, etag: meta.etag) == rel else {
                    try? fm.removeItem(atPath: dir + "/" + rel)
                    dropped += 1
                    continue
                }
                for d in store.adopt(key, meta: meta, disk: DiskSlice(relativePath: rel, dataOffset: slice.offset, length: slice.length)) {
                    try? fm.removeItem(atPath: dir + "/" + d.relativePath)
                    dropped += 1
                }
                adopted += 1
            }
        }
        return (adopted, dropped)
    }
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}
