// libFuzzer harness: the three configuration parsers (edge, packager, playback-auth) over
// arbitrary TOML text. Any input must give a value or a ConfigError, never a trap.
import EdgeConfig

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if let c = try? EdgeConfig.parse(text) {
        // What the server derives from a valid configuration must hold.
        precondition(c.limits.readChunkBytes <= c.limits.outputBufferBytesMax)
        precondition(c.cache.sliceBytes % 4096 == 0)
        precondition(!c.origin.urls.isEmpty)
    }
    _ = try? PackagerConfig.parse(text)
    _ = try? PlaybackAuthConfig.parse(text)
    return 0
}
