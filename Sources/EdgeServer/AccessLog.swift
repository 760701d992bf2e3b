import EdgeIO
import EdgeHTTP
import EdgeEncoding

/// One JSON line per response, buffered per worker and written through the ring (O_APPEND), so
/// logging never blocks a worker. Over `bufferBytesMax` of unwritten lines, lines are dropped and
/// counted rather than growing without bound.
final class AccessLog {
    let fd: Int32
    let ring: Ring
    var bufferBytesMax: Int
    private var pending = ByteBuffer(capacity: 65536)
    private var writing = ByteBuffer(capacity: 65536)
    private var inFlight = false
    private(set) var droppedLines = 0
    private var timeSecond: Int64 = -1
    private var timePrefix = ""

    let writeKind: UInt8

    init(fd: Int32, ring: Ring, bufferBytesMax: Int, writeKind: UInt8 = OpKind.logWrite) {
        self.fd = fd; self.ring = ring; self.bufferBytesMax = bufferBytesMax; self.writeKind = writeKind
    }

    /// A free-form line (the error log), written the same way.
    func line(_ text: String, wallMilliseconds: Int64) {
        guard fd >= 0 else { return }
        if pending.count > bufferBytesMax { droppedLines += 1; return }
        pending.append("\(HTTPDate.isoSecond(unixSeconds: Int(wallMilliseconds / 1000)))Z edge: \(text)\n")
    }

    struct Record {
        var client: String
        var protocolName: String
        var method: String
        var path: String
        var status: Int
        var bytesSent: Int
        var range: String
        var ttfbMicroseconds: Int64
        var totalMicroseconds: Int64
        var token: String
        var cache: String?
    }

    func log(_ r: Record, wallMilliseconds: Int64) {
        guard fd >= 0 else { return }
        if pending.count > bufferBytesMax { droppedLines += 1; return }
        let second = wallMilliseconds / 1000
        if second != timeSecond { timeSecond = second; timePrefix = HTTPDate.isoSecond(unixSeconds: Int(second)) }
        // Written straight into the buffer: the line built from interpolated Strings made a
        // dozen allocations per request. Room for the whole line is reserved once (reserving per
        // field was 20 calls per line).
        let room = Self.lineRoom(r, timePrefix: timePrefix, writable: pending.writableCount)
        var w = LineWriter(base: pending.reserve(room))
        Self.write(r, timePrefix: timePrefix, milliseconds: Int(wallMilliseconds % 1000), into: &w)
        precondition(w.count <= room, "an access-log line outgrew its reservation")
        pending.commit(w.count)
        if pending.count >= 32768 { flush() }
    }

    /// Starts a write of what is buffered (called on every tick and when the buffer fills).
    func flush() {
        guard fd >= 0, !inFlight, !pending.isEmpty else { return }
        swap(&pending, &writing)
        inFlight = true
        let r = writing.readable
        ring.write(
            fd: fd, from: r.baseAddress!, length: r.count, offset: UInt64.max, UserData(kind: writeKind, slot: 0))
    }

    func written(_ result: Int32) {
        inFlight = false
        if result > 0 {
            writing.consume(Int(result))
            if !writing.isEmpty {   // short write: finish it before anything newer
                inFlight = true
                let r = writing.readable
                ring.write(
                    fd: fd, from: r.baseAddress!, length: r.count, offset: UInt64.max,
                    UserData(kind: writeKind, slot: 0))
                return
            }
        } else {
            writing.clear()   // the log device failed; keep serving, count the loss
            droppedLines += 1
        }
        flush()
    }

    var idle: Bool { !inFlight && pending.isEmpty }
    var enabled: Bool { fd >= 0 }
}

extension AccessLog {
    /// The most bytes of a line besides its variable fields: the literals (131 bytes), the four
    /// quoted fields' quote marks, and five decimals.
    static let lineFixedBytesMax = 131 + 4 * 2 + 5 * DecimalText.bytesMax

    /// Room for `r`'s line: for the worst case (every quoted byte a six-byte escape) when
    /// `writable` has it, one pass over the bytes; else the exact escaped size, so a long field
    /// does not grow the buffer by six bytes per byte.
    static func lineRoom(_ r: Record, timePrefix: String, writable: Int) -> Int {
        let rawBytes =
            lineFixedBytesMax + timePrefix.utf8.count + r.client.utf8.count + r.protocolName.utf8.count
            + r.token.utf8.count
        let quotedBytes = r.method.utf8.count + r.path.utf8.count + r.range.utf8.count + (r.cache?.utf8.count ?? 0)
        let worst = rawBytes + 6 * quotedBytes
        if worst <= writable { return worst }
        // quotedCount counts each field's quote marks, which lineFixedBytesMax counted too.
        return rawBytes - 4 * 2 + quotedCount(r.method) + quotedCount(r.path) + quotedCount(r.range)
            + (r.cache.map(quotedCount) ?? 0)
    }

    /// `r`'s line, into room `lineRoom` gave.
    static func write(_ r: Record, timePrefix: String, milliseconds ms: Int, into w: inout LineWriter) {
        w.ascii("{\"time\":\"")
        w.raw(timePrefix)
        w.ascii(".")
        if ms < 100 { w.ascii(ms < 10 ? "00" : "0") }
        w.decimal(ms)
        w.ascii("Z\",\"client\":\"")
        w.raw(r.client)
        w.ascii("\",\"protocol\":\"")
        w.raw(r.protocolName)
        w.ascii("\",\"method\":")
        w.quoted(r.method)
        w.ascii(",\"path\":")
        w.quoted(r.path)
        w.ascii(",\"status\":")
        w.decimal(r.status)
        w.ascii(",\"bytes\":")
        w.decimal(r.bytesSent)
        w.ascii(",\"range\":")
        w.quoted(r.range)
        w.ascii(",\"ttfb_us\":")
        w.decimal(Int(r.ttfbMicroseconds))
        w.ascii(",\"total_us\":")
        w.decimal(Int(r.totalMicroseconds))
        w.ascii(",\"token\":\"")
        w.raw(r.token)
        w.ascii("\"")
        if let cache = r.cache {
            w.ascii(",\"cache\":")
            w.quoted(cache)
        }
        w.ascii("}\n")
    }

    static func quotedCount(_ s: String) -> Int {
        var s = s
        return s.withUTF8 { JSONText.quotedCount($0) }
    }

    /// Writes a line into memory reserved for it whole.
    struct LineWriter {
        let base: UnsafeMutableRawPointer
        private(set) var count = 0
        init(base: UnsafeMutableRawPointer) { self.base = base }

        mutating func ascii(_ s: StaticString) {
            (base + count).copyMemory(from: s.utf8Start, byteCount: s.utf8CodeUnitCount)
            count += s.utf8CodeUnitCount
        }
        mutating func raw(_ s: String) {
            var s = s
            s.withUTF8 { bytes in
                if let b = bytes.baseAddress { (base + count).copyMemory(from: b, byteCount: bytes.count) }
                count += bytes.count
            }
        }
        mutating func decimal(_ v: Int) { count += DecimalText.write(v, into: base + count) }
        mutating func quoted(_ s: String) {
            var s = s
            s.withUTF8 { count += JSONText.writeQuoted($0, into: base + count) }
        }
    }
}
