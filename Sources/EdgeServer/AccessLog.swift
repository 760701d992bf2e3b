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
        let ms = Int(wallMilliseconds % 1000)
        let msText = ms < 10 ? "00\(ms)" : ms < 100 ? "0\(ms)" : "\(ms)"
        var line =
            "{\"time\":\"\(timePrefix).\(msText)Z\",\"client\":\"\(r.client)\",\"protocol\":\"\(r.protocolName)\","
        line += "\"method\":\(JSONText.quoted(r.method)),\"path\":\(JSONText.quoted(r.path)),\"status\":\(r.status),"
        line += "\"bytes\":\(r.bytesSent),\"range\":\(JSONText.quoted(r.range)),\"ttfb_us\":\(r.ttfbMicroseconds),"
        line += "\"total_us\":\(r.totalMicroseconds),\"token\":\"\(r.token)\""
        if let cache = r.cache { line += ",\"cache\":\(JSONText.quoted(cache))" }
        line += "}\n"
        pending.append(line)
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
