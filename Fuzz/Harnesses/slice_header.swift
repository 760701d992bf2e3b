// libFuzzer harness: slice-file headers as start-up reads them from a disk it does not trust.
// What decodes is within the limits and encodes back to the same header.
import EdgeCache

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSliceHeader(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var bytes = Array(UnsafeBufferPointer(start: data, count: size))
    // Start from a valid header most of the time so the fuzzer reaches the field checks.
    if bytes.count < SliceFileHeader.bytes {
        var h = SliceFileHeader(path: "/audio/a/160.opus", index: 1, dataLength: 65536, objectSize: 200_000, storedAtSeconds: 0,
                                digest: [UInt8](repeating: 0, count: 32), etag: "\"e\"", lastModified: "", contentType: "audio/ogg").encoded()
        for (i, b) in bytes.enumerated() { h[(i * 7919) % h.count] ^= b }
        bytes = h
    }
    let limits = SliceFileHeader.Limits(sliceBytes: 65536, objectBytesMax: 1 << 32)
    let fileBytes = size % 3 == 0 ? 4096 + 65536 : size * 64
    let decoded = bytes.withUnsafeBytes { SliceFileHeader.decode($0, fileBytes: fileBytes, limits: limits) }
    if case .ok(let h) = decoded {
        precondition(h.dataLength > 0 && h.dataLength <= limits.sliceBytes)
        precondition(h.objectSize > 0 && h.objectSize <= limits.objectBytesMax)
        precondition(h.index >= 0 && h.index * limits.sliceBytes < h.objectSize)
        precondition(4096 + h.dataLength == fileBytes)
        let again = h.encoded().withUnsafeBytes { SliceFileHeader.decode($0, fileBytes: fileBytes, limits: limits) }
        precondition(again == .ok(h), "re-encoding changed the header")
    }
    return 0
}
