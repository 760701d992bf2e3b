// libFuzzer harness: Range headers against representation lengths; every answer must be inside
// the representation, coalesced when overlapping, and the multipart length exact.
import EdgeHTTP

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRanges(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 8 else { return 0 }
    var raw: UInt64 = 0
    for i in 0..<8 { raw = raw << 8 | UInt64(data[i]) }
    let length = Int(raw % (1 << 42))   // up to object_bytes_max's ceiling
    let header = String(decoding: UnsafeBufferPointer(start: data + 8, count: size - 8), as: UTF8.self)
    _ = RangeEvaluator.firstByteBeforeLength(header, maxRanges: 16)
    switch RangeEvaluator.evaluate(header, length: length, maxRanges: 16) {
    case .whole, .unsatisfiable: break
    case .partial(let ranges):
        precondition(!ranges.isEmpty && ranges.count <= 16)
        var sum = 0
        for r in ranges {
            precondition(r.first >= 0 && r.first <= r.last && r.last < length, "\(r) outside \(length)")
            sum += r.length
        }
        let sorted = ranges.sorted { $0.first < $1.first }
        if sorted.count > 1 && sorted != ranges {
            for k in 1..<sorted.count { precondition(sorted[k].first > sorted[k - 1].last, "overlap kept") }
        }
        let layout = MultipartLayout(ranges: ranges, totalLength: length, contentType: "audio/ogg", boundary: "b")
        var total = 0
        for s in layout.segments {
            switch s {
            case .bytes(let b): total += b.count
            case .content(_, let l): total += l
            }
        }
        precondition(total == layout.contentLength && total >= sum)
    }
    return 0
}
