/// JSON text written by hand on paths where an encoder would allocate per field (the access log,
/// grants). The one string-quoting helper of the package.
public enum JSONText {
    /// `s` as a JSON string literal: quotes and backslashes escaped, control characters (and DEL)
    /// as \u00XX, everything else as is (RFC 8259 §7).
    public static func quoted(_ s: String) -> String {
        var s = s
        return s.withUTF8 { bytes in
            let count = quotedCount(bytes)
            return String(unsafeUninitializedCapacity: count) { out in
                let o = UnsafeMutableRawPointer(out.baseAddress!)
                // Nothing to escape (tokens, URLs, ids): the bytes between the quotes as they are.
                guard count == bytes.count + 2 else { return writeQuoted(bytes, into: o) }
                o.storeBytes(of: 0x22, as: UInt8.self)
                if let b = bytes.baseAddress { (o + 1).copyMemory(from: b, byteCount: bytes.count) }
                o.storeBytes(of: 0x22, toByteOffset: count - 1, as: UInt8.self)
                return count
            }
        }
    }

    /// The length of `bytes` as a JSON string literal (quotes included).
    public static func quotedCount(_ bytes: UnsafeBufferPointer<UInt8>) -> Int {
        var n = 2
        for b in bytes {
            switch b {
            case 0x22, 0x5C: n += 2
            case 0..<0x20, 0x7F: n += 6
            default: n += 1
            }
        }
        return n
    }

    /// Writes `bytes` as a JSON string literal into `out`, which has room for `quotedCount(bytes)`;
    /// returns the bytes written. Over UTF-8: a multi-byte character never contains a byte below
    /// 0x80, so only ASCII bytes are escaped. (Appending scalar by scalar to a String took a
    /// quarter of playback-auth's CPU per grant.) The access log writes its lines with it too.
    @discardableResult
    public static func writeQuoted(_ bytes: UnsafeBufferPointer<UInt8>, into out: UnsafeMutableRawPointer) -> Int {
        let hex: StaticString = "0123456789abcdef"
        var n = 0
        func put(_ b: UInt8) { out.storeBytes(of: b, toByteOffset: n, as: UInt8.self); n += 1 }
        put(0x22)
        for b in bytes {
            switch b {
            case 0x22, 0x5C: put(0x5C); put(b)
            case 0..<0x20, 0x7F:
                put(0x5C); put(0x75); put(0x30); put(0x30)
                put(hex.utf8Start[Int(b >> 4)]); put(hex.utf8Start[Int(b & 15)])
            default: put(b)
            }
        }
        put(0x22)
        return n
    }
}
