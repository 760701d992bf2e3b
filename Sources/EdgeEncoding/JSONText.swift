/// JSON text written by hand on paths where an encoder would allocate per field (the access log,
/// grants). The one string-quoting helper of the package.
public enum JSONText {
    /// `s` as a JSON string literal: quotes and backslashes escaped, control characters (and DEL)
    /// as \u00XX, everything else as is (RFC 8259 §7).
    public static func quoted(_ s: String) -> String {
        // Over UTF-8 bytes: a multi-byte character never contains a byte below 0x80, so only
        // ASCII bytes are ever escaped. Appending scalar by scalar to a String took a quarter of
        // playback-auth's CPU per grant (long tokens and URLs in every grant).
        var s = s
        return s.withUTF8 { bytes in
            var out: [UInt8] = []
            out.reserveCapacity(bytes.count + 2)
            out.append(0x22)
            for b in bytes {
                switch b {
                case 0x22, 0x5C: out.append(0x5C); out.append(b)
                case 0..<0x20, 0x7F:
                    out.append(contentsOf: [0x5C, 0x75, 0x30, 0x30, hexDigits[Int(b >> 4)], hexDigits[Int(b & 15)]])
                default: out.append(b)
                }
            }
            out.append(0x22)
            return String(decoding: out, as: UTF8.self)
        }
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)
}
