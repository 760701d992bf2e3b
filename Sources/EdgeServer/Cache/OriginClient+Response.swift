import EdgeIO
import EdgeHTTP
import EdgeConfig
import EdgeCache

/// What an origin's response head may be: checked against the slice asked for before anything
/// of it is published (see "Outside input" in docs/ARCHITECTURE.md).
extension OriginClient {
    /// Checks a response head against the slice asked for; on success publishes the object's
    /// metadata and the slice length to everyone waiting.
    func accept(_ h: OriginResponseHead, _ c: OriginConnection, _ job: Job) -> Bool {
        let fill = job.fill
        let first = fill.key.index * sliceBytes
        if let conn = h.header("connection")?.lowercased(), conn.contains("close") { c.keepAlive = false }
        if h.status == 101 { protocolError(c, job, "101 Switching Protocols to a GET"); return false }
        let framing = h.framing
        if case .error(let why) = framing { protocolError(c, job, why); return false }
        let total: Int, length: Int
        switch h.status {
        case 206:
            guard let cr = h.header("content-range").flatMap(ContentRange.parse) else {
                protocolError(c, job, "206 without a valid Content-Range"); return false
            }
            guard cr.complete <= store.objectBytesMax else { return oversized(c, job, cr.complete) }
            guard cr.first == first, cr.last == min(first + sliceBytes, cr.complete) - 1 else {
                protocolError(
                    c, job,
                    "206 for bytes \(cr.first)-\(cr.last)/\(cr.complete), asked for bytes \(first)-\(first + sliceBytes - 1)"
                ); return false
            }
            total = cr.complete; length = cr.last - cr.first + 1
            switch framing {
            case .length(let cl) where cl != length:
                protocolError(c, job, "Content-Length \(cl) disagrees with Content-Range"); return false
            case .chunked: c.chunked = ChunkedDecoder()
            case .untilClose: c.keepAlive = false
            default: break
            }
        case 200:
            // The origin ignored Range. Usable for the first slice only; the rest is not read.
            guard case .length(let cl) = framing, cl > 0 else {
                protocolError(c, job, "200 without a Content-Length"); return false
            }
            guard cl <= store.objectBytesMax else { return oversized(c, job, cl) }
            guard first == 0 else {
                protocolError(c, job, "200 (Range ignored) for a slice past the first"); return false
            }
            total = cl; length = min(cl, sliceBytes)
            c.bodyToDiscard = cl - length
        case 404, 410:
            counters.originError("not_found")
            finishWithoutBody(c, status: h.status, contentRange: nil); return false
        case 416:
            // Passed on only in its valid form (`bytes */N`): it is re-sent to players.
            let cr = h.header("content-range").flatMap { v -> String? in
                guard v.hasPrefix("bytes */"), ContentRange.strictInt(Substring(v.dropFirst(8))) != nil else {
                    return nil
                }
                return v
            }
            finishWithoutBody(c, status: 416, contentRange: cr); return false
        default:
            counters.originError("status")
            if h.status >= 500 {
                logError(
                    "origin \(upstreams[c.upstream].url): \(h.status) for \(fill.key.path) slice \(fill.key.index)")
            }
            failed(c, status: 502, upstreamFault: h.status >= 500); return false
        }
        if let why = h.contentEncodingError { protocolError(c, job, why); return false }
        guard length > 0, length <= fill.buffer.capacity else {
            protocolError(c, job, "slice length \(length) out of range"); return false
        }
        let lm = h.header("last-modified") ?? ""
        let etag =
            h.header("etag") ?? "\"\(String(total, radix: 16))-\(String(cacheKeyHash(lm) % 0xFFFF_FFFF, radix: 16))\""
        let contentType = h.header("content-type") ?? MediaTypes.type(forPath: fill.key.path)
        // Stored in the slice header and sent to players: bounded like the slice file bounds them.
        for (name, v) in [("ETag", etag), ("Last-Modified", lm), ("Content-Type", contentType)]
        where v.utf8.count > SliceFileHeader.stringBytesMax {
            protocolError(c, job, "\(name) longer than \(SliceFileHeader.stringBytesMax) bytes"); return false
        }
        let fresh = ObjectMeta(
            size: total, etag: etag, lastModified: lm, contentType: contentType,
            storedAtSeconds: ring.wallMilliseconds() / 1000)
        guard let meta = store.recordMeta(fill, fresh) else {
            // The object changed at the origin: everything cached of it is dropped; never mixed.
            listener?.purge(fill.key.path)
            failed(c, status: 502, upstreamFault: false, retry: false); return false
        }
        fill.meta = meta
        fill.length = length
        // RFC 9211: the parent's Cache-Status entries come before ours (nearest the origin first).
        if upstreams[c.upstream].isParent, let upstream = h.header("cache-status"), upstream.utf8.count <= 512,
            upstream.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F })
        {
            fill.upstreamCacheStatus = upstream
        }
        c.bodyExpected = length
        fill.phase.store(Fill.Phase.head.rawValue, ordering: .releasing)
        listener?.fillProgressed(fill)
        return true
    }

    /// A size claim over `cache.object_bytes_max`: 502, nothing recorded or stored, a log line.
    func oversized(_ c: OriginConnection, _ job: Job, _ size: Int) -> Bool {
        logError(
            "origin \(upstreams[c.upstream].url): \(job.fill.key.path) claims \(size) bytes, over cache.object_bytes_max (\(store.objectBytesMax)); 502, not cached"
        )
        failed(c, status: 502, upstreamFault: false, retry: false)
        return false
    }

    /// A 404/410/416: answered to the waiting clients, never cached (no CPDoS), connection reused.
    func finishWithoutBody(_ c: OriginConnection, status: Int, contentRange: String?) {
        guard let job = c.job else { return }
        c.job = nil
        health[c.upstream] = Health()
        job.fill.failureContentRange = contentRange
        fail(job.fill, status: status)
        // The body of the error (if any) is not read: close rather than resynchronise.
        retire(c)
        startQueued()
    }

    /// Percent-encodes what a request line must not carry raw.
    static func encodePath(_ p: String) -> String {
        var out = ""
        for b in p.utf8 {
            switch b {
            case 0x30...0x39, 0x41...0x5A, 0x61...0x7A, UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"), UInt8(ascii: "/"),
                UInt8(ascii: "!"), UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "("),
                UInt8(ascii: ")"), UInt8(ascii: "*"),
                UInt8(ascii: "+"), UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "="), UInt8(ascii: ":"),
                UInt8(ascii: "@"):
                out.unicodeScalars.append(Unicode.Scalar(b))
            default:
                let hex = Array("0123456789ABCDEF".unicodeScalars)
                out += "%"; out.unicodeScalars.append(hex[Int(b >> 4)]); out.unicodeScalars.append(hex[Int(b & 15)])
            }
        }
        return out
    }
}
