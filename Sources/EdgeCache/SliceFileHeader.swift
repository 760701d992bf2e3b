/// The 4 KiB header of a slice file in the edge's disk tier, encoded and decoded as pure code so
/// it can be fuzzed. Start-up reads headers from a disk it must not trust (torn writes, bit rot,
/// another program's files, an older build's): every field is checked against the limits before
/// anything uses it, with overflow-checked arithmetic, and a bad header is a reason, never a trap.
///
///     "EDGESLC1" | u32 header bytes | u64 data length | u64 object size | u64 slice index
///     | i64 stored-at | 32-byte SHA-256 of the data | u16+key | u16+etag | u16+last-modified
///     | u16+content-type | zero padding to 4096 | data
public struct SliceFileHeader: Sendable, Equatable {
    public static let bytes = 4096
    public static let magic = Array("EDGESLC1".utf8)
    /// Longest string field kept (key, ETag, Last-Modified, Content-Type).
    public static let stringBytesMax = 1000

    public var path: String
    public var index: Int
    public var dataLength: Int
    public var objectSize: Int
    public var storedAtSeconds: Int64
    public var digest: [UInt8]
    public var etag: String
    public var lastModified: String
    public var contentType: String

    public init(
        path: String, index: Int, dataLength: Int, objectSize: Int, storedAtSeconds: Int64, digest: [UInt8],
        etag: String, lastModified: String, contentType: String
    ) {
        self.path = path; self.index = index; self.dataLength = dataLength; self.objectSize = objectSize
        self.storedAtSeconds = storedAtSeconds; self.digest = digest; self.etag = etag
        self.lastModified = lastModified; self.contentType = contentType
    }

    /// What a header may claim.
    public struct Limits: Sendable {
        public var sliceBytes: Int
        public var objectBytesMax: Int
        public init(sliceBytes: Int, objectBytesMax: Int) {
            self.sliceBytes = sliceBytes; self.objectBytesMax = objectBytesMax
        }
    }

    public func encoded() -> [UInt8] {
        var h = Self.magic
        func u32(_ v: Int) { withUnsafeBytes(of: UInt32(truncatingIfNeeded: v).littleEndian) { h += $0 } }
        func u64(_ v: Int64) { withUnsafeBytes(of: UInt64(bitPattern: v).littleEndian) { h += $0 } }
        func str(_ s: String) {
            let b = Array(s.utf8.prefix(Self.stringBytesMax))
            withUnsafeBytes(of: UInt16(b.count).littleEndian) { h += $0 }
            h += b
        }
        u32(Self.bytes); u64(Int64(dataLength)); u64(Int64(objectSize)); u64(Int64(index)); u64(storedAtSeconds)
        h += digest.count == 32 ? digest : [UInt8](repeating: 0, count: 32)
        str(path); str(etag); str(lastModified); str(contentType)
        h += [UInt8](repeating: 0, count: Self.bytes - h.count)
        return h
    }

    public enum Decoded: Sendable, Equatable {
        case ok(SliceFileHeader)
        case bad(String)
    }

    /// Decodes and checks a header against the limits and the file's size on disk.
    public static func decode(_ raw: UnsafeRawBufferPointer, fileBytes: Int, limits: Limits) -> Decoded {
        guard raw.count >= bytes else { return .bad("shorter than a header") }
        guard raw.prefix(8).elementsEqual(magic) else { return .bad("bad magic") }
        var at = 8
        func u32() -> Int {
            defer { at += 4 }; return Int(raw.loadUnaligned(fromByteOffset: at, as: UInt32.self).littleEndian)
        }
        func i64() -> Int64 {
            defer { at += 8 };
            return Int64(bitPattern: raw.loadUnaligned(fromByteOffset: at, as: UInt64.self).littleEndian)
        }
        func str() -> String? {
            guard at + 2 <= bytes else { return nil }
            let n = Int(raw.loadUnaligned(fromByteOffset: at, as: UInt16.self).littleEndian)
            at += 2
            guard n <= stringBytesMax, at + n <= bytes else { return nil }
            defer { at += n }
            return String(validating: raw[at..<(at + n)], as: UTF8.self)
        }
        guard u32() == bytes else { return .bad("bad header size") }
        let length = i64(), size = i64(), index = i64(), storedAt = i64()
        let digest = Array(raw[at..<(at + 32)]); at += 32
        guard let path = str(), let etag = str(), let lm = str(), let ct = str() else {
            return .bad("bad string field")
        }
        // Every number is checked before any arithmetic uses it.
        guard size > 0, size <= Int64(limits.objectBytesMax) else { return .bad("object size out of range") }
        guard length > 0, length <= Int64(limits.sliceBytes) else { return .bad("data length out of range") }
        guard index >= 0 else { return .bad("negative slice index") }
        let slices = (size - 1) / Int64(limits.sliceBytes) + 1
        guard index < slices else { return .bad("slice index past the object") }
        let first = index * Int64(limits.sliceBytes)   // < size <= objectBytesMax: cannot overflow
        guard length == min(Int64(limits.sliceBytes), size - first) else {
            return .bad("data length does not match the slice")
        }
        guard Int64(fileBytes) == Int64(bytes) + length else { return .bad("file size does not match the header") }
        guard path.hasPrefix("/"), !path.utf8.contains(0) else { return .bad("bad key") }
        return .ok(
            SliceFileHeader(
                path: path, index: Int(index), dataLength: Int(length), objectSize: Int(size),
                storedAtSeconds: storedAt,
                digest: digest, etag: etag, lastModified: lm, contentType: ct))
    }
}
