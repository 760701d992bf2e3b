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

    /// Inlinable, so each caller gets it specialized for its collection: called across modules as
    /// a generic, each byte went through the witness tables, a few microseconds per digest and a
    /// twentieth of a playback grant's CPU (`perf record` under `loadtest/auth_bench.py`).
    @inlinable
    public static func encode<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        let count = bytes.underestimatedCount
        if let direct = bytes.withContiguousStorageIfAvailable({ b in
            String(unsafeUninitializedCapacity: 2 * b.count) { out in
                for (i, x) in b.enumerated() {
                    out[2 * i] = digit(x >> 4)
                    out[2 * i + 1] = digit(x & 15)
                }
                return 2 * b.count
            }
        }) {
            return direct
        }
        var out = [UInt8]()
        out.reserveCapacity(count * 2)
        for x in bytes { out.append(digit(x >> 4)); out.append(digit(x & 15)) }
        return String(decoding: out, as: UTF8.self)
    }

    /// The lower-case digit of a nibble (0...15).
    @inlinable @inline(__always)
    static func digit(_ nibble: UInt8) -> UInt8 { nibble < 10 ? 0x30 + nibble : 0x61 - 10 + nibble }

    /// `value` as exactly `width` lower-case digits (zero-padded; higher digits dropped).
    public static func encode(_ value: UInt64, width: Int) -> String {
        var out = [UInt8](repeating: 0x30, count: width)
        var v = value
        for i in stride(from: width - 1, through: 0, by: -1) { out[i] = digit(UInt8(v & 15)); v >>= 4 }
        return String(decoding: out, as: UTF8.self)
    }
}
