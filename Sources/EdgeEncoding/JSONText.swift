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
    /// Runs of bytes that need no escape are copied whole: a byte-by-byte copy cost about 27
    /// instructions a byte of the access log's quoted fields (`loadtest/instructions.py`).
    @discardableResult
    public static func writeQuoted(_ bytes: UnsafeBufferPointer<UInt8>, into out: UnsafeMutableRawPointer) -> Int {
        let hex: StaticString = "0123456789abcdef"
        out.storeBytes(of: 0x22, as: UInt8.self)
        var n = 1
        guard let base = bytes.baseAddress else {
            out.storeBytes(of: 0x22, toByteOffset: 1, as: UInt8.self)
            return 2
        }
        let count = bytes.count
        var runStart = 0
        var i = 0
        while i < count {
            let b = base[i]
            if b >= 0x20 && b != 0x22 && b != 0x5C && b != 0x7F {
                i += 1
                continue
            }
            if i > runStart {
                (out + n).copyMemory(from: base + runStart, byteCount: i - runStart)
                n += i - runStart
            }
            out.storeBytes(of: 0x5C, toByteOffset: n, as: UInt8.self)
            if b == 0x22 || b == 0x5C {
                out.storeBytes(of: b, toByteOffset: n + 1, as: UInt8.self)
                n += 2
            } else {
                out.storeBytes(of: 0x75, toByteOffset: n + 1, as: UInt8.self)
                out.storeBytes(of: 0x30, toByteOffset: n + 2, as: UInt8.self)
                out.storeBytes(of: 0x30, toByteOffset: n + 3, as: UInt8.self)
                out.storeBytes(of: hex.utf8Start[Int(b >> 4)], toByteOffset: n + 4, as: UInt8.self)
                out.storeBytes(of: hex.utf8Start[Int(b & 15)], toByteOffset: n + 5, as: UInt8.self)
                n += 6
            }
            i += 1
            runStart = i
        }
        if count > runStart {
            (out + n).copyMemory(from: base + runStart, byteCount: count - runStart)
            n += count - runStart
        }
        out.storeBytes(of: 0x22, toByteOffset: n, as: UInt8.self)
        return n + 1
    }
}
