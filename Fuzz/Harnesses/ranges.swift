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
    case .single(let r):
        precondition(r.first >= 0 && r.first <= r.last && r.last < length, "\(r) outside \(length)")
    case .multiple(let ranges):
        precondition(ranges.count >= 2 && ranges.count <= 16)
        var sum = 0
        for r in ranges {
            precondition(r.first >= 0 && r.first <= r.last && r.last < length, "\(r) outside \(length)")
            sum += r.length
        }
        // Several ranges only when none overlaps or touches another (else they were merged).
        let sorted = ranges.sorted { $0.first < $1.first }
        for k in 1..<sorted.count { precondition(sorted[k].first > sorted[k - 1].last &+ 1, "overlap kept") }
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
