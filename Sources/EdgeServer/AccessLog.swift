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
        // dozen allocations per request.
        let b = pending
        b.append(ascii: "{\"time\":\"")
        b.append(raw: timePrefix)
        b.append(ascii: ".")
        let ms = Int(wallMilliseconds % 1000)
        if ms < 100 { b.append(ascii: ms < 10 ? "00" : "0") }
        b.append(decimal: ms)
        b.append(ascii: "Z\",\"client\":\"")
        b.append(raw: r.client)
        b.append(ascii: "\",\"protocol\":\"")
        b.append(raw: r.protocolName)
        b.append(ascii: "\",\"method\":")
        b.append(jsonQuoted: r.method)
        b.append(ascii: ",\"path\":")
        b.append(jsonQuoted: r.path)
        b.append(ascii: ",\"status\":")
        b.append(decimal: r.status)
        b.append(ascii: ",\"bytes\":")
        b.append(decimal: r.bytesSent)
        b.append(ascii: ",\"range\":")
        b.append(jsonQuoted: r.range)
        b.append(ascii: ",\"ttfb_us\":")
        b.append(decimal: Int(r.ttfbMicroseconds))
        b.append(ascii: ",\"total_us\":")
        b.append(decimal: Int(r.totalMicroseconds))
        b.append(ascii: ",\"token\":\"")
        b.append(raw: r.token)
        b.append(ascii: "\"")
        if let cache = r.cache {
            b.append(ascii: ",\"cache\":")
            b.append(jsonQuoted: cache)
        }
        b.append(ascii: "}\n")
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

extension ByteBuffer {
    /// A literal the caller knows is ASCII.
    func append(ascii s: StaticString) {
        append(UnsafeRawBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    /// A `String`'s bytes as they are (fields the edge produced itself: addresses, names).
    func append(raw s: String) {
        var s = s
        s.withUTF8 { append(UnsafeRawBufferPointer($0)) }
    }

    /// A decimal integer (negative ones with a sign).
    func append(decimal value: Int) {
        commit(DecimalText.write(value, into: reserve(DecimalText.bytesMax)))
    }

    /// `s` as a JSON string literal (`JSONText`'s escaping, written in place).
    func append(jsonQuoted s: String) {
        var s = s
        s.withUTF8 { bytes in
            // Room for the worst case (every byte a \u00XX escape) when the buffer has it: one
            // pass over the bytes instead of two (the log's cost, loadtest/instructions.py).
            let worst = bytes.count * 6 + 2
            let w = reserve(worst <= writableCount ? worst : JSONText.quotedCount(bytes))
            commit(JSONText.writeQuoted(bytes, into: w))
        }
    }
}
