import CEdgeTLS
import EdgeConfig
import EdgeCrypto
import Glibc

/// The players' TLS settings (certificate chain, key, ALPN) as one OpenSSL context. A reload that
/// finds new certificate or key files builds a new one and hands it to every worker: connections
/// accepted afterwards use it, established ones keep the context they started with (OpenSSL
/// counts each connection's reference, so the old one lives until its last connection ends).
final class TLSServerContext: @unchecked Sendable {
    let pointer: OpaquePointer
    /// SHA-256 of the certificate file's bytes and the key file's bytes, as loaded.
    let filesDigest: [UInt8]

    private init(pointer: OpaquePointer, filesDigest: [UInt8]) {
        self.pointer = pointer; self.filesDigest = filesDigest
    }
    deinit { edge_tls_ctx_free(pointer) }

    /// Loads and checks the files (the key must match the certificate); the reason otherwise.
    static func load(certificate: String, privateKey: String, http2: Bool) -> Result<TLSServerContext, ConfigError> {
        // OpenSSL first: its errors say what is wrong with which file.
        var err = [CChar](repeating: 0, count: 512)
        guard let ctx = edge_tls_ctx_new(certificate, privateKey, http2 ? 1 : 0, &err, 512) else {
            return .failure(ConfigError(key: "server.tls_certificate", reason: nulTerminatedString(err)))
        }
        guard let digest = filesDigest(certificate: certificate, privateKey: privateKey) else {
            edge_tls_ctx_free(ctx)
            return .failure(
                ConfigError(key: "server.tls_certificate", reason: "cannot read \(certificate) or \(privateKey)"))
        }
        return .success(TLSServerContext(pointer: ctx, filesDigest: digest))
    }

    /// The digest of both files' bytes (nil when either cannot be read): a renewal that rewrites
    /// the files under the same names is still a change.
    static func filesDigest(certificate: String, privateKey: String) -> [UInt8]? {
        guard let c = SliceFile.read(certificate, bytesMax: 1 << 20),
            let k = SliceFile.read(privateKey, bytesMax: 1 << 20)
        else { return nil }
        return SHA256.digest(SHA256.digest(c) + SHA256.digest(k))
    }
}

private func nulTerminatedString(_ chars: [CChar]) -> String {
    String(decoding: chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
