import Synchronization

/// Bearer JWTs that verified (signature, `exp`, `nbf`, tier, country, issuer, audience), by their
/// text: a player sends one token for an hour of grants, and each grant verified it again,
/// decoding its JSON with Foundation's `JSONDecoder` and checking the HMAC, about a sixth of a
/// grant's CPU (`perf record` under `loadtest/auth_bench.py`). Time is still checked on every
/// request: a remembered token is refused once it expires (and forgotten), and before its `nbf`.
/// Bounded: when `entriesMax` are held it starts afresh.
public final class VerifiedBearers: Sendable {
    struct Entry: Sendable {
        let identity: Identity
        /// Unix seconds: `exp`, and `nbf` when the token has one.
        let expiresAt: Double
        let notBefore: Double?
    }

    let entriesMax: Int
    private let entries: Mutex<[String: Entry]>

    public init(entriesMax: Int = 65_536) {
        self.entriesMax = max(1, entriesMax)
        entries = Mutex([:])
    }

    /// The identity of a remembered token valid at `now`; nil when it is not remembered or not
    /// valid now (the caller verifies it in full, and refuses it).
    func identity(_ token: String, now: Double) -> Identity? {
        entries.withLock { e in
            guard let entry = e[token] else { return nil }
            // jwt-kit's checks: expired at `exp` itself, valid from `nbf` itself.
            guard now < entry.expiresAt else {
                e[token] = nil
                return nil
            }
            if let nbf = entry.notBefore, now < nbf { return nil }
            return entry.identity
        }
    }

    func remember(_ token: String, _ entry: Entry) {
        entries.withLock { e in
            if e.count >= entriesMax && e[token] == nil { e.removeAll(keepingCapacity: true) }
            e[token] = entry
        }
    }

    var count: Int { entries.withLock { $0.count } }
}
