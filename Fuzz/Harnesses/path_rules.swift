// libFuzzer harness: request-target checks, query and cookie lookups. An accepted path never
// carries a dot segment, an empty segment, a path parameter or a backslash.
import EdgeHTTP

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPathRules(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if case let .ok(path, query) = PathRules.check(text) {
        precondition(path.hasPrefix("/"))
        precondition(!path.contains("/../") && !path.hasSuffix("/..") && !path.contains("/./") && !path.hasSuffix("/."), path)
        precondition(!path.contains("//") && !path.contains(";") && !path.contains("\\"), path)
        precondition(path.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }, path)
        _ = PathRules.queryValue(query, name: "hdnts")
    }
    _ = PathRules.cookieValue(text, name: "hdnts")
    _ = PathRules.percentDecode(Substring(text))
    return 0
}
