// swift-tools-version:6.0
import PackageDescription

// Layering (see docs/ARCHITECTURE.md):
//   CLibUring / CNGHTTP2             system libraries (pkg-config, apt hints)
//   CEdgeRing                        C wrappers: liburing inlines, sockets, signals, threads, clocks
//   CEdgeTLS                         C wrappers: TLS over memory BIOs (libssl)
//   CEdgeCrypto                      C wrappers: HMAC, SHA-256, random, AES (libcrypto only)
//   CEdgeGeo                         C wrappers: country lookups in a MaxMind DB (libmaxminddb), checked at open
//   EdgeEncoding                     pure: hex, JSON string quoting, FNV-1a, SplitMix64 (one helper each)
//   EdgeCrypto                       SHA-256 and secure random over CEdgeCrypto
//   EdgeHTTP                         pure HTTP: request type, HTTP/1.1 parser, ranges, paths (no I/O)
//   EdgeAuthToken                    pure EdgeAuth 2.0 token signing and checking (HMAC via OpenSSL)
//   EdgeConfig                       TOML configuration with validation
//   EdgeCatalog                      the SQLite track catalog (GRDB) and content-key wrapping
//   EdgePackager                     ffmpeg pipeline, ADTS chunk tables, AES-128-CTR, atomic publish
//   PlaybackAuth                     the control plane (Hummingbird 2): who may play what, signed grants
//   EdgeCache                        pure cache policy (LRU/LFU hybrid), baselines, simulator, trace generator,
//                                    the slice-file header (decoded without trusting the disk)
//   EdgeIO                           io_uring ring wrapper; knows nothing of HTTP
//   EdgeServer                       workers, connections, TLS, HTTP/1.1 + HTTP/2 front ends, file origin
//   EdgeClient                       HTTP/2 client session (nghttp2) and TLS client, no I/O of their own
//   EdgeLoad                         the load generator: io_uring loop, schedules, HDR histograms, reports
let package = Package(
    name: "edge",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "edge", targets: ["edge"]),
        .executable(name: "edgectl", targets: ["edgectl"]),
        .executable(name: "packager", targets: ["packager"]),
        .executable(name: "playback-auth", targets: ["playback-auth"]),
        .executable(name: "loadtest", targets: ["loadtest"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        // Named for playback-auth's NIOPosix import (Hummingbird brings the package in already).
        .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
        .package(url: "https://github.com/vapor/jwt-kit", from: "5.7.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        .systemLibrary(name: "CLibUring", pkgConfig: "liburing", providers: [.apt(["liburing-dev"])]),
        .systemLibrary(name: "CNGHTTP2", pkgConfig: "libnghttp2", providers: [.apt(["libnghttp2-dev"])]),
        // A tool that only signs tokens (edgectl, playback-auth) links libcrypto, not the ring or TLS.
        .target(name: "CEdgeRing", dependencies: ["CLibUring"]),
        .target(name: "CEdgeTLS", linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]),
        .target(name: "CEdgeCrypto", linkerSettings: [.linkedLibrary("crypto")]),
        // Country lookups in a MaxMind DB (Debian: libmaxminddb-dev).
        .target(name: "CEdgeGeo", linkerSettings: [.linkedLibrary("maxminddb")]),
        .target(name: "EdgeEncoding"),
        .target(name: "EdgeCrypto", dependencies: ["CEdgeCrypto", "EdgeEncoding"]),
        .target(name: "EdgeHTTP", dependencies: ["EdgeEncoding"]),
        .target(name: "EdgeAuthToken", dependencies: ["CEdgeCrypto", "EdgeEncoding"]),
        .target(name: "EdgeCache", dependencies: ["EdgeEncoding"]),
        .target(
            name: "EdgeCatalog",
            dependencies: ["CEdgeCrypto", "EdgeCrypto", "EdgeEncoding", .product(name: "GRDB", package: "GRDB.swift")]),
        .target(
            name: "EdgePackager",
            dependencies: [
                "EdgeCatalog", "EdgeConfig", "CEdgeCrypto", "EdgeCrypto", "EdgeEncoding",
                .product(name: "Subprocess", package: "swift-subprocess"),
            ]),
        .target(name: "EdgeConfig", dependencies: ["EdgeHTTP", .product(name: "TOMLKit", package: "TOMLKit")]),
        .target(name: "EdgeIO", dependencies: ["CEdgeRing", "EdgeEncoding"]),
        .target(
            name: "EdgeServer",
            dependencies: [
                "EdgeIO", "EdgeHTTP", "EdgeAuthToken", "EdgeConfig", "EdgeCache", "EdgeCrypto", "EdgeEncoding",
                "CEdgeRing", "CEdgeTLS", "CNGHTTP2", "CEdgeGeo", "EdgeClient",
            ]),
        // HTTP/2 client session (libnghttp2) and TLS client over memory BIOs: the load generator's
        // transport, and the edge's to HTTPS origins.
        .target(name: "EdgeClient", dependencies: ["CNGHTTP2", "CEdgeTLS", "EdgeHTTP"]),
        // The load generator's engine: io_uring loop, arrival schedules, HDR histograms.
        .target(
            name: "EdgeLoad",
            dependencies: [
                "EdgeClient", "EdgeIO", "EdgeHTTP", "CEdgeRing", "CEdgeCrypto", "EdgeAuthToken", "EdgeConfig",
                "EdgeEncoding", .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]),
        // The operators' API (control plane, Hummingbird 2): pre-warm jobs (GRDB), purge, metrics, reload.
        .target(
            name: "EdgeAdmin",
            dependencies: [
                "EdgeServer", "EdgeConfig", "EdgeHTTP", "EdgeCatalog", "EdgeEncoding", "EdgeAuthToken",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ]),
        // mimalloc in place of glibc's malloc for the whole process (the Swift runtime's objects and
        // nghttp2's among them): about 1,700 fewer instructions per 4 KiB range (docs/ARCHITECTURE.md).
        .executableTarget(
            name: "edge",
            dependencies: [
                "EdgeServer", "EdgeConfig", "EdgeAdmin",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ], linkerSettings: [.linkedLibrary("mimalloc")]),
        .executableTarget(
            name: "edgectl",
            dependencies: [
                "EdgeAuthToken", "EdgeConfig", "EdgeCache", "EdgeCatalog",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .target(
            name: "PlaybackAuth",
            dependencies: [
                "EdgeAuthToken", "EdgeCatalog", "EdgeConfig", "EdgeEncoding",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]),
        .executableTarget(
            name: "playback-auth",
            dependencies: [
                "PlaybackAuth", "EdgeConfig",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]),
        .testTarget(
            name: "PlaybackAuthTests",
            dependencies: [
                "PlaybackAuth", "EdgeAuthToken", "EdgeCatalog", "EdgeEncoding",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "JWTKit", package: "jwt-kit"),
            ], swiftSettings: [.swiftLanguageMode(.v5)]),   // XCTest fixtures are non-Sendable classes
        .executableTarget(
            name: "packager",
            dependencies: [
                "EdgePackager", "EdgeCatalog", "EdgeConfig", "EdgeEncoding",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .executableTarget(
            name: "loadtest",
            dependencies: [
                "EdgeLoad", "EdgeConfig", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .testTarget(name: "EdgeLoadTests", dependencies: ["EdgeLoad", "EdgeClient", "EdgeConfig", "CEdgeTLS"]),
        .testTarget(name: "EdgePackagerTests", dependencies: ["EdgePackager", "CEdgeCrypto"]),
        .testTarget(name: "EdgeHTTPTests", dependencies: ["EdgeHTTP", "EdgeEncoding"]),
        .testTarget(name: "EdgeEncodingTests", dependencies: ["EdgeEncoding", "EdgeCrypto"]),
        .testTarget(name: "EdgeAuthTokenTests", dependencies: ["EdgeAuthToken"]),
        .testTarget(name: "EdgeConfigTests", dependencies: ["EdgeConfig"]),
        .testTarget(name: "EdgeCacheTests", dependencies: ["EdgeCache", "EdgeEncoding"]),
        // The server's state, and whole workers on SimulatedIO, driven without sockets (@testable).
        // Fixtures: a test-only certificate and key (CN edge.test), read by path.
        .testTarget(
            name: "EdgeServerTests",
            dependencies: [
                "EdgeServer", "EdgeIO", "EdgeEncoding", "EdgeConfig", "EdgeAuthToken", "CNGHTTP2", "CEdgeTLS",
            ],
            exclude: ["Fixtures"]),
    ]
)
