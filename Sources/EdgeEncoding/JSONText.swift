/// JSON text written by hand on paths where an encoder would allocate per field (the access log,
/// grants). The one string-quoting helper of the package.
public enum JSONText {
    /// `s` as a JSON string literal: quotes and backslashes escaped, control characters (and DEL)
    /// as \u00XX, everything else as is (RFC 8259 §7).
    public static func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where u.value < 0x20 || u.value == 0x7F: out += "\\u00" + Hex.encode(UInt64(u.value), width: 2)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}
