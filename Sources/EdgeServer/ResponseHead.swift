import CNGHTTP2
import EdgeEncoding
import EdgeHTTP

/// Memory a worker's front ends write response heads into before they are copied on (by nghttp2,
/// or into the connection's output): one per worker, reused, grown when a head needs more. It
/// replaced a stack allocation per response whose closure copied the fields it captured.
final class HeadScratch {
    // `@exclusivity(unchecked)`: see "Exclusivity checks" in docs/ARCHITECTURE.md.
    @exclusivity(unchecked) private(set) var base: UnsafeMutableRawPointer
    @exclusivity(unchecked) private(set) var capacity: Int

    init(bytes: Int = 4096) {
        capacity = bytes
        base = .allocate(byteCount: bytes, alignment: 16)
    }
    deinit { base.deallocate() }

    /// At least `bytes` of room, 16-byte aligned; what was written before is not kept.
    func room(_ bytes: Int) -> UnsafeMutableRawPointer {
        if bytes > capacity {
            base.deallocate()
            capacity = max(bytes, 2 * capacity)
            base = .allocate(byteCount: capacity, alignment: 16)
        }
        return base
    }
}

/// Copies a string's UTF-8 bytes to `out`; returns how many.
@inline(__always)
private func copyText(_ s: String, to out: UnsafeMutableRawPointer) -> Int {
    let copied: Int? = s.utf8.withContiguousStorageIfAvailable { src in
        if src.count > 0 { out.copyMemory(from: src.baseAddress!, byteCount: src.count) }
        return src.count
    }
    if let copied { return copied }
    var n = 0
    for byte in s.utf8 {   // a bridged or lazily stored string: byte by byte
        out.storeBytes(of: byte, toByteOffset: n, as: UInt8.self)
        n += 1
    }
    return n
}

/// A response head as nghttp2 name/value pairs. Fixed names and values (static bytes, alive for
/// the process) go as pointers with nghttp2's no-copy flags: it copied and lower-cased every name
/// of every response (about 900 instructions per response, `loadtest/instructions.py`). Other
/// bytes are written into the block, which nghttp2 copies during `nghttp2_submit_response`.
struct H2HeadWriter: ResponseFieldSink {
    let pairs: UnsafeMutablePointer<nghttp2_nv>
    let pairsMax: Int
    let block: UnsafeMutableRawPointer
    let blockBytes: Int
    private(set) var count = 0
    private var used = 0

    /// Room for `fields` and `fixedPairs` more pairs of at most `fixedBytes` between them, in `scratch`.
    init(scratch: HeadScratch, fields: ResponseFields, fixedPairs: Int, fixedBytes: Int) {
        let m = fields.measure
        pairsMax = m.count + fixedPairs
        blockBytes = m.bytes + fixedBytes
        let pairBytes = pairsMax * MemoryLayout<nghttp2_nv>.stride
        let base = scratch.room(pairBytes + blockBytes)
        pairs = base.bindMemory(to: nghttp2_nv.self, capacity: pairsMax)
        block = base + pairBytes
    }

    private mutating func add(
        _ name: UnsafePointer<UInt8>, _ nameCount: Int, _ value: UnsafePointer<UInt8>, _ valueCount: Int, _ flags: UInt8
    ) {
        precondition(count < pairsMax, "a response head outgrew its measure")
        pairs[count] = nghttp2_nv(
            name: UnsafeMutablePointer(mutating: name), value: UnsafeMutablePointer(mutating: value),
            namelen: nameCount, valuelen: valueCount, flags: flags)
        count += 1
    }

    /// Where the next `n` bytes go, checked against the measure before anything is written.
    private func room(_ n: Int) -> UnsafeMutableRawPointer {
        precondition(n <= blockBytes - used, "a response head outgrew its measure")
        return block + used
    }

    private mutating func written(_ n: Int) -> UnsafePointer<UInt8> {
        let start = UnsafePointer((block + used).assumingMemoryBound(to: UInt8.self))
        used += n
        return start
    }

    private static let noCopyName = UInt8(NGHTTP2_NV_FLAG_NO_COPY_NAME.rawValue)
    private static let noCopyValue = UInt8(NGHTTP2_NV_FLAG_NO_COPY_VALUE.rawValue)

    mutating func field(_ name: StaticString, _ value: String) {
        let n = copyText(value, to: room(value.utf8.count))
        add(name.utf8Start, name.utf8CodeUnitCount, written(n), n, Self.noCopyName)
    }

    mutating func field(_ name: StaticString, _ value: FieldValue) {
        if case .fixed(let s) = value {
            add(
                name.utf8Start, name.utf8CodeUnitCount, s.utf8Start, s.utf8CodeUnitCount,
                Self.noCopyName | Self.noCopyValue)
        } else {
            let n = value.write(into: room(value.byteCountMax))
            add(name.utf8Start, name.utf8CodeUnitCount, written(n), n, Self.noCopyName)
        }
    }

    mutating func field(name: String, value: String) {
        let nameCount = copyText(name, to: room(name.utf8.count))
        let namePointer = written(nameCount)
        let valueCount = copyText(value, to: room(value.utf8.count))
        add(namePointer, nameCount, written(valueCount), valueCount, 0)
    }
}

/// A response head as HTTP/1.1 text (`Name: value` lines) in scratch memory.
struct HTTP1HeadWriter: ResponseFieldSink {
    let block: UnsafeMutableRawPointer
    let blockBytes: Int
    private(set) var used = 0

    /// Room for `fields` (each with `: ` and CRLF) and `fixedBytes` more, in `scratch`.
    init(scratch: HeadScratch, fields: ResponseFields, fixedBytes: Int) {
        let m = fields.measure
        blockBytes = m.bytes + 4 * m.count + fixedBytes
        block = scratch.room(blockBytes)
    }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: block, count: used) }

    /// Where the next `n` bytes go, checked against the measure before anything is written.
    private func room(_ n: Int) -> UnsafeMutableRawPointer {
        precondition(n <= blockBytes - used, "a response head outgrew its measure")
        return block + used
    }

    mutating func put(_ s: StaticString) { used += FieldValue.fixed(s).write(into: room(s.utf8CodeUnitCount)) }
    mutating func put(_ s: String) { used += copyText(s, to: room(s.utf8.count)) }
    mutating func put(_ v: FieldValue) { used += v.write(into: room(v.byteCountMax)) }

    mutating func field(_ name: StaticString, _ value: String) { put(name); put(": "); put(value); put("\r\n") }
    mutating func field(_ name: StaticString, _ value: FieldValue) { put(name); put(": "); put(value); put("\r\n") }
    mutating func field(name: String, value: String) { put(name); put(": "); put(value); put("\r\n") }
}
