import CEdgeCrypto

/// SHA-256 (OpenSSL libcrypto). The one digest helper of the package.
public enum SHA256 {
    public static let byteCount = 32

    public static func digest(_ bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBytes { digest($0.baseAddress, $0.count) }
    }

    public static func digest(_ pointer: UnsafeRawPointer?, _ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: byteCount)
        let rc = out.withUnsafeMutableBufferPointer { edge_sha256(pointer, count, $0.baseAddress) }
        precondition(rc == 0, "SHA-256 failed in libcrypto")   // only on allocation failure inside OpenSSL
        return out
    }
}

/// Bytes from OpenSSL's CSPRNG.
public enum SecureRandom {
    public static func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let rc = out.withUnsafeMutableBufferPointer { edge_random_bytes($0.baseAddress, Int32(count)) }
        precondition(rc == 0, "no randomness from libcrypto")   // a key or nonce must never be predictable
        return out
    }

    public static func uint64() -> UInt64 {
        bytes(8).reduce(0) { $0 << 8 | UInt64($1) }
    }
}
