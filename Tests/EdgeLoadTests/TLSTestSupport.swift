import CEdgeTLS
import Foundation

/// The simulation's test certificate (`edge.test`) and its key, shared by the TLS tests here.
enum TLSFixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("EdgeServerTests/Fixtures")
    static let certificate = directory.appendingPathComponent("test-cert.pem").path
    static let key = directory.appendingPathComponent("test-key.pem").path

    /// Everything an SSL over memory BIOs has sealed so far.
    static func drain(_ ssl: OpaquePointer) -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while edge_tls_pending_out(ssl) > 0 {
            let n = edge_tls_drain(ssl, &chunk, Int32(chunk.count))
            guard n > 0 else { break }
            out += chunk[..<Int(n)]
        }
        return out
    }
}
