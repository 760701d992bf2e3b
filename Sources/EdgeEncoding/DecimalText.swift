/// Integers written as decimal ASCII straight into memory, on paths where `String(Int)` or
/// interpolation would allocate per call (the access log's numbers, `Content-Range`).
public enum DecimalText {
    /// Digits of the longest value, `Int.min`, and its sign.
    public static let bytesMax = 20

    /// Writes `value` (with a `-` when negative) at `out`, which has room for `bytesMax` bytes;
    /// returns the bytes written.
    @discardableResult
    public static func write(_ value: Int, into out: UnsafeMutableRawPointer) -> Int {
        var digits = 1
        var rest = value.magnitude
        while rest >= 10 { rest /= 10; digits += 1 }
        let sign = value < 0 ? 1 : 0
        if sign == 1 { out.storeBytes(of: UInt8(ascii: "-"), as: UInt8.self) }
        var v = value.magnitude
        var i = sign + digits
        repeat {
            i -= 1
            out.storeBytes(of: UInt8(truncatingIfNeeded: 0x30 + v % 10), toByteOffset: i, as: UInt8.self)
            v /= 10
        } while i > sign
        return sign + digits
    }
}
