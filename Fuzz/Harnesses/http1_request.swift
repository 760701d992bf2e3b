// libFuzzer harness: the HTTP/1.1 request-head parser, under tight and loose limits.
import EdgeHTTP

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTP1Request(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    for limits in [HTTP1Limits(requestLineBytesMax: 64, headerBytesMax: 256, headerCountMax: 4),
                   HTTP1Limits(requestLineBytesMax: 8192, headerBytesMax: 16384, headerCountMax: 64)] {
        switch HTTP1Parser(limits: limits).parse(bytes) {
        case .request(let r, let consumed, let bodyLength):
            precondition(consumed > 0 && consumed <= size, "consumed \(consumed) of \(size)")
            precondition(consumed <= limits.headerBytesMax + 2 * 16, "head past header_bytes_max")
            precondition(bodyLength >= 0)
            precondition(r.fields.count <= limits.headerCountMax)
            // The block's records walk back out whole: as many fields as appended, names folded.
            let fields = r.fields.fields
            precondition(fields.count == r.fields.count, "\(fields.count) fields walked of \(r.fields.count)")
            precondition(fields.allSatisfy { !$0.name.isEmpty && !$0.name.utf8.contains { $0 >= 0x41 && $0 <= 0x5A } })
            _ = r.wantsKeepAlive
            _ = r.header("range").map { RangeEvaluator.evaluate($0, length: 1000, maxRanges: 16) }
        case .error(let status, _):
            precondition([400, 413, 414, 431, 501, 505].contains(status), "status \(status)")
        case .needMore:
            precondition(size <= limits.headerBytesMax + 2 * 16, "needMore past header_bytes_max")
        }
    }
    return 0
}
