// libFuzzer harness: EdgeAuth 2.0 token parsing and verification (both the one-shot verifier and
// the per-worker caching one). A token the fuzzer makes up never verifies.
import EdgeAuthToken

let key = EdgeAuthKey(hex: "00112233445566778899aabbccddeeff")!
let policy = EdgeAuthPolicy(keys: [key], leewaySeconds: 10, lifetimeSecondsMax: 86400)
let verifier = EdgeAuthVerifier(policy: policy, entriesMax: 64)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzEdgeAuthToken(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let token = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    _ = EdgeAuthToken.parse(token)
    let a = EdgeAuthToken.verify(token, path: "/audio/t1/160.opus", clientIP: "127.0.0.1", now: 1_800_000_000, policy: policy)
    let b = verifier.check(token, path: "/audio/t1/160.opus", clientIP: "127.0.0.1", now: 1_800_000_000)
    precondition(a == b.verdict, "\(a) vs \(b.verdict)")
    precondition(a != .ok, "a made-up token verified")
    _ = EdgeAuthToken.aclMatches(pattern: token, path: "/audio/t1/160.opus")
    return 0
}
