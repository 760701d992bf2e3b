// libFuzzer harness: origin response heads (interim responses, framing, content coding,
// Content-Range) and the chunked decoder on what follows, fed in two pieces split where the
// first input byte says.
import EdgeHTTP

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOriginResponse(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let bytes = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    var rest = bytes
    var interim = 0
    while interim < 8 {
        guard case let .head(h, consumed) = HTTP1ResponseParser.parse(rest, headerBytesMax: 4096, headerCountMax: 32) else { return 0 }
        precondition(consumed > 0 && consumed <= rest.count)
        precondition((100...599).contains(h.status))
        rest = UnsafeRawBufferPointer(rebasing: rest[consumed...])
        if h.isInterim { interim += 1; continue }
        _ = h.contentEncodingError
        if let cr = h.header("content-range").flatMap(ContentRange.parse) {
            precondition(cr.first <= cr.last && cr.last < cr.complete)
        }
        let capacity = Int(data[0]) * 64
        if case .length(let n) = h.framing { precondition(n >= 0) }
        if h.framing == .chunked {
            var decoder = ChunkedDecoder(lineBytesMax: 64, trailerBytesMax: 256)
            var out = 0
            let cut = min(rest.count, Int(data[0]) % 17)
            for piece in [UnsafeRawBufferPointer(rebasing: rest[0..<cut]), UnsafeRawBufferPointer(rebasing: rest[cut...])] {
                let r = decoder.feed(piece) { d in
                    guard out + d.count <= capacity else { return false }
                    out += d.count
                    return true
                }
                if case .consumed(let n) = r { precondition(n >= 0 && n <= piece.count) } else { break }
                precondition(out <= capacity, "wrote past the slice")
            }
        }
        break
    }
    return 0
}
