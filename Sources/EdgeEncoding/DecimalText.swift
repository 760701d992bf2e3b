/// Integers written as decimal ASCII straight into memory, on paths where `String(Int)` or
/// interpolation would allocate per call (the access log's numbers, `Content-Range`).
public enum DecimalText {
    /// Digits of the longest value, `Int.min`, and its sign.
    public static let bytesMax = 20

    /// Writes `value` (with a `-` when negative) at `out`, which has room for `bytesMax` bytes;
    /// returns the bytes written. Two digits per division: a division per digit, and a second
    /// pass to count them, were about 550 instructions per response (`loadtest/instructions.py`).
    @discardableResult
    public static func write(_ value: Int, into out: UnsafeMutableRawPointer) -> Int {
        let sign = value < 0 ? 1 : 0
        if sign == 1 { out.storeBytes(of: UInt8(ascii: "-"), as: UInt8.self) }
        var v = value.magnitude
        let count = sign + digits(v)
        var i = count
        while v >= 100 {
            let pair = v % 100
            v /= 100
            i -= 2
            storePair(pair, at: out + i)
        }
        if v >= 10 {
            storePair(v, at: out + i - 2)
        } else {
            out.storeBytes(of: UInt8(truncatingIfNeeded: 0x30 + v), toByteOffset: i - 1, as: UInt8.self)
        }
        return count
    }

    /// Decimal digits of `v` (1 for 0).
    @inline(__always) static func digits(_ v: UInt) -> Int {
        var n = 1
        var x = v
        while x >= 10_000 { x /= 10_000; n += 4 }
        if x >= 100 { x /= 100; n += 2 }
        if x >= 10 { n += 1 }
        return n
    }

    /// The two digits of `pair` (below 100) at `at`.
    @inline(__always) private static func storePair(_ pair: UInt, at: UnsafeMutableRawPointer) {
        let tens = pair / 10
        at.storeBytes(of: UInt8(truncatingIfNeeded: 0x30 + tens), as: UInt8.self)
        at.storeBytes(of: UInt8(truncatingIfNeeded: 0x30 + pair - 10 * tens), toByteOffset: 1, as: UInt8.self)
    }
}
