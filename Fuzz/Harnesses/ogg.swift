// libFuzzer harness: Ogg paging and the Opus header/chunk layout the packager builds from
// ffmpeg's output (compiled together with Sources/EdgePackager/Ogg.swift).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOgg(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let pages = try? Ogg.pages(bytes) else { return 0 }
    var end = 0
    for p in pages {
        precondition(p.offset == end && p.length > 0, "pages must tile the file")
        end = p.offset + p.length
    }
    precondition(end == bytes.count)
    if let preSkip = try? Ogg.opusPreSkip(bytes, pages[0]) {
        _ = try? Ogg.layout(pages, preSkip: preSkip, seconds: 10)
    }
    return 0
}
