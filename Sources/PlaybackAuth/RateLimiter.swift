import Synchronization

/// Per-user token buckets: `limit` requests a minute, refilled continuously. Bounded: beyond
/// `usersMax` tracked users the oldest idle buckets are dropped (they were full anyway).
public final class RateLimiter: Sendable {
    struct Bucket { var tokens: Double; var updated: Double }
    let limit: Double
    let usersMax: Int
    let buckets: Mutex<[String: Bucket]>

    public init(perMinute: Int, usersMax: Int = 100_000) {
        limit = Double(perMinute); self.usersMax = usersMax
        buckets = Mutex([:])
    }

    /// nil when allowed; else the seconds until one request is allowed again.
    public func take(_ user: String, now: Double) -> Int? {
        let rate = limit / 60
        return buckets.withLock { b in
            var bucket = b[user] ?? Bucket(tokens: limit, updated: now)
            bucket.tokens = min(limit, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                b[user] = bucket
                if b.count > usersMax {
                    let full = b.filter { $0.value.tokens + (now - $0.value.updated) * rate >= limit }.map(\.key)
                    for k in full.prefix(b.count - usersMax) { b[k] = nil }
                }
                return nil
            }
            b[user] = bucket
            return max(1, Int(((1 - bucket.tokens) / rate).rounded(.up)))
        }
    }
}
