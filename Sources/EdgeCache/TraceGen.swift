import EdgeEncoding
#if canImport(Glibc)
    import Glibc
#endif

/// A synthetic audio workload: Zipf popularity over tracks, three bitrates, players fetching
/// chunk after chunk (and often skipping), daily churn of the popularity ranking, and release
/// drops (a new album that becomes the most requested content at one instant). Deterministic
/// for a seed.
public struct AudioTraceGenerator {
    public var tracks = 5000
    public var sessions = 20000
    public var zipfExponent = 0.9
    public var days = 3
    public var chunksPerTrack = 24
    public var churnPerDay = 0.05
    public var releases = 2
    public var releaseTracks = 12
    public var seed: UInt64 = 1

    public init() {}

    /// Bitrate (kb/s) → chunk size in bytes (10 s of audio) and share of sessions.
    static let renditions: [(kbps: Int, bytes: Int, share: Double)] = [
        (96, 120_000, 0.2), (160, 200_000, 0.5), (320, 400_000, 0.3),
    ]

    public struct Request { public var time: Int64; public var key: String; public var size: Int }

    public func generate() -> [Request] {
        var rng = SplitMix64(seed: seed)
        // ranking[r] = track id at popularity rank r
        var ranking = Array(0..<tracks)
        let weights = (0..<(tracks + releases * releaseTracks)).map { 1.0 / pow(Double($0 + 1), zipfExponent) }
        var cumulative: [Double] = []
        var acc = 0.0
        for w in weights.prefix(tracks) { acc += w; cumulative.append(acc) }
        let secondsPerDay: Int64 = 86400
        let totalSeconds = Int64(days) * secondsPerDay
        let releaseTimes = (0..<releases).map { Int64($0 + 1) * totalSeconds / Int64(releases + 1) }
        var releasedAlbums = 0
        var nextTrackID = tracks
        var out: [Request] = []
        out.reserveCapacity(sessions * 8)
        var day = 0
        for s in 0..<sessions {
            let start = Int64(s) * totalSeconds / Int64(sessions)
            // Daily churn: some tracks swap rank with a random other.
            while Int64(day + 1) * secondsPerDay <= start {
                day += 1
                for _ in 0..<Int(Double(tracks) * churnPerDay) {
                    let a = Int(rng.next() % UInt64(tracks)), b = Int(rng.next() % UInt64(tracks))
                    ranking.swapAt(a, b)
                }
            }
            // Release drop: a new album takes the top ranks at one instant.
            while releasedAlbums < releases && releaseTimes[releasedAlbums] <= start {
                releasedAlbums += 1
                let album = (0..<releaseTracks).map { nextTrackID + $0 }
                nextTrackID += releaseTracks
                ranking.removeLast(releaseTracks)
                ranking.insert(contentsOf: album, at: 0)
            }
            let u = rng.nextDouble() * acc
            var lo = 0, hi = cumulative.count - 1
            while lo < hi { let mid = (lo + hi) / 2; if cumulative[mid] < u { lo = mid + 1 } else { hi = mid } }
            let track = ranking[lo]
            var pick = rng.nextDouble(), rendition = Self.renditions[0]
            for r in Self.renditions { if pick < r.share { rendition = r; break }; pick -= r.share }
            // Listening length: a third skip within the first chunks, most play on, some to the end.
            let skip = rng.nextDouble()
            let chunks =
                skip < 0.33
                ? 1 + Int(rng.next() % 3)
                : skip < 0.8 ? chunksPerTrack / 2 + Int(rng.next() % UInt64(chunksPerTrack / 2)) : chunksPerTrack
            for c in 0..<min(chunks, chunksPerTrack) {
                let key = "/audio/t\(pad(track))/\(rendition.kbps)/\(pad3(c)).bin"
                out.append(Request(time: start + Int64(c) * 10, key: key, size: rendition.bytes))
            }
        }
        out.sort { $0.time < $1.time }
        return out
    }

    private func pad(_ v: Int) -> String {
        let s = String(v); return String(repeating: "0", count: max(0, 5 - s.count)) + s
    }
    private func pad3(_ v: Int) -> String {
        let s = String(v); return String(repeating: "0", count: max(0, 3 - s.count)) + s
    }
}
