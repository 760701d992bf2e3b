/// Lower-case hexadecimal, both ways. The one hex helper of the package (keys, digests, IVs).
public enum Hex {
    public static func decode(_ s: String) -> [UInt8]? { decode(Array(s.utf8)[...]) }

    /// nil for odd length or any byte that is not a hex digit.
    public static func decode(_ u: ArraySlice<UInt8>) -> [UInt8]? {
        guard u.count % 2 == 0 else { return nil }
        var out = [UInt8](); out.reserveCapacity(u.count / 2)
        var i = u.startIndex
        while i < u.endIndex {
            guard let high = value(u[i]), let low = value(u[i + 1]) else { return nil }
            out.append(high << 4 | low); i += 2
        }
        return out
    }

    /// The value of one hex digit (either case), or nil.
    @inline(__always) public static func value(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x41 + 10
        case 0x61...0x66: return c - 0x61 + 10
        default: return nil
        }
    }

    public static func encode<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        var out = [UInt8](); out.reserveCapacity(bytes.underestimatedCount * 2)
        for x in bytes { out.append(digits[Int(x >> 4)]); out.append(digits[Int(x & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }

    /// `value` as exactly `width` lower-case digits (zero-padded; higher digits dropped).
    public static func encode(_ value: UInt64, width: Int) -> String {
        var out = [UInt8](repeating: 0x30, count: width)
        var v = value
        for i in stride(from: width - 1, through: 0, by: -1) { out[i] = digits[Int(v & 15)]; v >>= 4 }
        return String(decoding: out, as: UTF8.self)
    }

    private static let digits = Array("0123456789abcdef".utf8)
}
