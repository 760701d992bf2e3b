/// A small, fast, seedable generator (Steele, Lea, Flood 2014): the same seed, the same sequence.
/// For reproducible traces and simulations, never for keys or nonces (see `SecureRandom`).
public struct SplitMix64 {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in 0..<bound (bound > 0).
    public mutating func next(below bound: Int) -> Int {
        precondition(bound > 0, "an empty range")
        return Int(next() % UInt64(bound))
    }

    /// Uniform in [0, 1).
    public mutating func nextDouble() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
