import XCTest
@testable import EdgeConfig
import Foundation

final class EdgeConfigTests: XCTestCase {
    let base = """
        [server]
        listen = ["127.0.0.1:8080"]
        [token]
        key_hex = "00112233445566778899aabbccddeeff"
        [origin]
        urls = ["file:///srv/audio"]
        """

    func error(_ text: String) -> ConfigError? {
        do { _ = try EdgeConfig.parse(text); return nil } catch let e as ConfigError { return e } catch { return nil }
    }

    func testAdminSection() throws {
        let ok = try EdgeConfig.parse(base + "\n[admin]\nlisten = [\"127.0.0.1:9090\"]\ntoken = \"0123456789abcdef\"\n")
        XCTAssertEqual(ok.admin.listen, ListenAddress(host: "127.0.0.1", port: 9090))
        XCTAssertEqual(ok.admin.token, "0123456789abcdef")
        XCTAssertNil(try EdgeConfig.parse(base).admin.listen, "no [admin]: no admin API")
        let cases: [(String, String)] = [
            ("token = \"0123456789abcdef\"", "admin.listen"),
            ("listen = [\"127.0.0.1:9090\"]", "admin.token"),
            ("listen = [\"127.0.0.1:9090\"]\ntoken = \"short\"", "admin.token"),
            ("listen = [\"127.0.0.1:8080\"]\ntoken = \"0123456789abcdef\"", "admin.listen"),   // a player port
            ("listen = [\"0.0.0.0:8080\"]\ntoken = \"0123456789abcdef\"", "admin.listen"),
            ("listen = [\"127.0.0.1:9090\"]\ntoken_file = \"/nonexistent/token\"", "admin.token_file"),
            ("listen = [\"127.0.0.1:9090\"]\ntoken = \"0123456789abcdef\"\ntoken_file = \"/x\"", "admin.token_file"),
            (
                "listen = [\"127.0.0.1:9090\"]\ntoken = \"0123456789abcdef\"\nprewarm_jobs_max = 0",
                "admin.prewarm_jobs_max"
            ),
            ("listen = [\"127.0.0.1:9090\"]\ntoken = \"0123456789abcdef\"\nbogus = 1", "admin.bogus"),
        ]
        for (section, key) in cases {
            XCTAssertEqual(error(base + "\n[admin]\n" + section + "\n")?.key, key, section)
        }
        let file = NSTemporaryDirectory() + "edge-admin-token-\(getpid())"
        try "  from-a-file-0123456789\n".write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let fromFile = try EdgeConfig.parse(
            base + "\n[admin]\nlisten = [\"127.0.0.1:9090\"]\ntoken_file = \"\(file)\"\n")
        XCTAssertEqual(fromFile.admin.token, "from-a-file-0123456789")
        XCTAssertEqual(
            error(base + "\n[cache]\ndisk_bytes_limit = 1000\npinned_bytes_max = 600\n")?.key, "cache.pinned_bytes_max")
        XCTAssertEqual(error(base + "\n[cache]\ndisk_write_queue_max = -1\n")?.key, "cache.disk_write_queue_max")
        XCTAssertEqual(
            error(base + "\n[cache]\ndisk_write_queue_max = 1000001\n")?.key, "cache.disk_write_queue_max")
        XCTAssertEqual(try EdgeConfig.parse(base + "\n[cache]\ndisk_write_queue_max = 0\n").cache.diskWriteQueueMax, 0)
    }

    func testGeoSection() throws {
        XCTAssertFalse(try EdgeConfig.parse(base).geo.enabled, "no [geo]: off")
        let g = try EdgeConfig.parse(
            base
                + "\n[geo]\ndatabase = \"/var/lib/edge/country.mmdb\"\nunknown = \"deny\"\nrequire_claim = true\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\nforwarded_hops_max = 3\n"
        ).geo
        XCTAssertTrue(g.enabled)
        XCTAssertEqual(g.database, "/var/lib/edge/country.mmdb")
        XCTAssertFalse(g.allowUnknown)
        XCTAssertTrue(g.requireClaim)
        XCTAssertEqual(g.trustedProxies.map(\.description), ["10.0.0.0/8", "::1"])
        XCTAssertEqual(g.forwardedHopsMax, 3)
        let cases: [(String, String)] = [
            ("unknown = \"allow\"", "geo.database"),
            ("database = \"\"", "geo.database"),
            ("database = \"x.mmdb\"\nunknown = \"maybe\"", "geo.unknown"),
            ("database = \"x.mmdb\"\ntrusted_proxies = [\"10.0.0.1/8\"]", "geo.trusted_proxies"),
            ("database = \"x.mmdb\"\ntrusted_proxies = [\"proxy.internal\"]", "geo.trusted_proxies"),
            ("database = \"x.mmdb\"\nforwarded_hops_max = 0", "geo.forwarded_hops_max"),
            ("database = \"x.mmdb\"\ndatabase_bytes_max = 1", "geo.database_bytes_max"),
            ("database = \"x.mmdb\"\ncountry_field = \"x\"", "geo.country_field"),
        ]
        for (body, key) in cases {
            XCTAssertEqual(error(base + "\n[geo]\n" + body + "\n")?.key, key, body)
        }
        let proxies = (0...1024).map { "\"10.0.\($0 / 256).\($0 % 256)\"" }.joined(separator: ",")
        XCTAssertEqual(
            error(base + "\n[geo]\ndatabase = \"x.mmdb\"\ntrusted_proxies = [\(proxies)]\n")?.key,
            "geo.trusted_proxies",
            "at most 1024")
        // Regions are claims in tokens: without tokens there is nothing to check.
        let open = base.replacingOccurrences(
            of: "key_hex = \"00112233445566778899aabbccddeeff\"", with: "required = false")
        XCTAssertEqual(error(open + "\n[geo]\ndatabase = \"x.mmdb\"\n")?.key, "geo.database")
    }

    func testMinimalAndDefaults() throws {
        let c = try EdgeConfig.parse(base)
        XCTAssertEqual(c.server.listen, [ListenAddress(host: "127.0.0.1", port: 8080)])
        XCTAssertEqual(c.token.name, "hdnts")
        XCTAssertEqual(c.token.leewaySeconds, 10)
        XCTAssertEqual(c.origin.directory, "/srv/audio")
        XCTAssertEqual(c.limits.rangesMax, 16)
    }

    func testRepoEdgeConfParses() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("edge.conf")
        let c = try EdgeConfig.parse(try String(contentsOf: url, encoding: .utf8))
        XCTAssertEqual(c.server.listenTLS.first?.port, 8443)
    }

    func testErrorsNameTheKey() {
        XCTAssertEqual(error(base + "\n[limits]\nranges_max = 0")?.key, "limits.ranges_max")
        XCTAssertEqual(error(base + "\n[limits]\nranges_maxx = 3")?.key, "limits.ranges_maxx")
        XCTAssertEqual(error(base + "\n[limits]\nranges_max = \"3\"")?.key, "limits.ranges_max")
        XCTAssertEqual(error(base.replacingOccurrences(of: "127.0.0.1:8080", with: "127.0.0.1"))?.key, "server.listen")
        XCTAssertEqual(
            error(base.replacingOccurrences(of: "00112233445566778899aabbccddeeff", with: "xyz"))?.key, "token.key_hex")
        XCTAssertEqual(
            error(base.replacingOccurrences(of: "00112233445566778899aabbccddeeff", with: "0011"))?.key, "token.key_hex"
        )
        XCTAssertEqual(
            error(base.replacingOccurrences(of: "file:///srv/audio", with: "gopher://x"))?.key, "origin.urls")
        XCTAssertEqual(
            error(base.replacingOccurrences(of: "file:///srv/audio", with: "http://origin..example:80"))?.key,
            "origin.urls")
        XCTAssertEqual(
            error(base.replacingOccurrences(of: "file:///srv/audio", with: "http://127.0.0.1:9000"))?.key, "cache.dir")
        XCTAssertEqual(
            error(
                base.replacingOccurrences(of: "\"file:///srv/audio\"", with: "\"http://127.0.0.1:9000\", \"file:///x\"")
            )?.key, "origin.urls")
        XCTAssertEqual(error(base + "\n[cache]\ndir = \"/c\"\nslice_bytes = 5000")?.key, "cache.slice_bytes")
        XCTAssertEqual(
            error(base.replacingOccurrences(of: "file:///srv/audio", with: "file://relative"))?.key, "origin.urls")
        XCTAssertEqual(error(base + "\nlisten_tls = [\"127.0.0.1:8443\"]")?.key, "origin.listen_tls")
        XCTAssertEqual(
            error(base.replacingOccurrences(of: "[server]", with: "[server]\nlisten_tls = [\"127.0.0.1:8443\"]"))?.key,
            "server.tls_certificate")
        XCTAssertEqual(error(base + "\n[bogus]\nx = 1")?.key, "bogus")
        XCTAssertNotNil(error("[server"))
        XCTAssertTrue(error("[server")!.reason.contains("line 1"))
    }

    /// The file-mapping limits: their defaults, their bounds (0 is allowed: it turns mapping, or
    /// the trusted period, off), and a value out of range or of the wrong type names the key.
    func testFileMappingLimits() throws {
        let defaults = try EdgeConfig.parse(base)
        XCTAssertEqual(defaults.limits.mappedFileBytesMax, 268_435_456)
        XCTAssertEqual(defaults.limits.pageCacheCheckMilliseconds, 100)
        let off = try EdgeConfig.parse(
            base + "\n[limits]\nmapped_file_bytes_max = 0\npage_cache_check_milliseconds = 0")
        XCTAssertEqual(off.limits.mappedFileBytesMax, 0)
        XCTAssertEqual(off.limits.pageCacheCheckMilliseconds, 0)
        XCTAssertEqual(error(base + "\n[limits]\nmapped_file_bytes_max = -1")?.key, "limits.mapped_file_bytes_max")
        XCTAssertEqual(
            error(base + "\n[limits]\nmapped_file_bytes_max = 1099511627777")?.key, "limits.mapped_file_bytes_max")
        XCTAssertEqual(
            error(base + "\n[limits]\npage_cache_check_milliseconds = 10001")?.key,
            "limits.page_cache_check_milliseconds")
        XCTAssertEqual(
            error(base + "\n[limits]\npage_cache_check_milliseconds = \"100\"")?.key,
            "limits.page_cache_check_milliseconds")
    }

    func testOverlappingListenersRefused() throws {
        let tls = "\ntls_certificate = \"/c.pem\"\ntls_private_key = \"/k.pem\""
        func listeners(_ plain: String, _ tlsList: String) -> String {
            base.replacingOccurrences(
                of: "listen = [\"127.0.0.1:8080\"]", with: "listen = [\(plain)]\nlisten_tls = [\(tlsList)]" + tls)
        }
        let same = error(listeners("\"127.0.0.1:8080\"", "\"127.0.0.1:8080\""))
        XCTAssertEqual(same?.key, "server.listen_tls")
        XCTAssertEqual(same?.reason, "127.0.0.1:8080 overlaps 127.0.0.1:8080 in server.listen")
        XCTAssertEqual(error(listeners("\"0.0.0.0:8080\"", "\"127.0.0.1:8080\""))?.key, "server.listen_tls")
        XCTAssertEqual(
            error(listeners("\"127.0.0.1:8080\", \"127.0.0.1:8080\"", "\"127.0.0.1:8443\""))?.key, "server.listen")
        XCTAssertEqual(error(listeners("\"127.0.0.1:8080\"", "\"[::]:8080\""))?.key, "server.listen_tls")
        // Same port on two different specific hosts does not overlap.
        XCTAssertNil(error(listeners("\"127.0.0.1:8080\"", "\"127.0.0.2:8080\"")))
    }

    func testHTTPOrigins() throws {
        let c = try EdgeConfig.parse(
            base.replacingOccurrences(
                of: "\"file:///srv/audio\"", with: "\"http://127.0.0.1:9000/store/\", \"http://[::1]:9001\"")
                + "\n[cache]\ndir = \"/var/cache/edge\"")
        XCTAssertEqual(
            c.origin.upstreams,
            [
                Upstream(host: "127.0.0.1", port: 9000, prefix: "/store", url: "http://127.0.0.1:9000/store/"),
                Upstream(host: "::1", port: 9001, prefix: "", url: "http://[::1]:9001"),
            ])
        XCTAssertNil(c.origin.directory)
        XCTAssertEqual(c.cache.sliceBytes, 262_144)
    }

    func testOriginURLForms() {
        let ok: [(String, Upstream)] = [
            (
                "https://bucket.s3.eu-west-1.amazonaws.com/audio/",
                Upstream(
                    host: "bucket.s3.eu-west-1.amazonaws.com", port: 443, prefix: "/audio",
                    url: "https://bucket.s3.eu-west-1.amazonaws.com/audio/", tls: true)
            ),
            (
                "http://Origin.Internal:8080",
                Upstream(host: "origin.internal", port: 8080, prefix: "", url: "http://Origin.Internal:8080")
            ),
            ("http://localhost", Upstream(host: "localhost", port: 80, prefix: "", url: "http://localhost")),
            (
                "https://[2001:db8::1]",
                Upstream(host: "2001:db8::1", port: 443, prefix: "", url: "https://[2001:db8::1]", tls: true)
            ),
            (
                "https://[::1]:8443/b",
                Upstream(host: "::1", port: 8443, prefix: "/b", url: "https://[::1]:8443/b", tls: true)
            ),
        ]
        for (u, want) in ok { XCTAssertEqual(Upstream.parse(u), want, u) }
        XCTAssertEqual(Upstream.parse("https://h.example")?.authority, "h.example")
        XCTAssertEqual(Upstream.parse("https://h.example:8443")?.authority, "h.example:8443")
        XCTAssertEqual(Upstream.parse("http://[::1]:80")?.authority, "[::1]")
        XCTAssertEqual(Upstream.parse("http://[::1]:81")?.authority, "[::1]:81")
        XCTAssertEqual(Upstream.parse("http://localhost")?.isIPLiteral, false)
        XCTAssertEqual(Upstream.parse("http://10.0.0.1")?.isIPLiteral, true)
        for bad in [
            "ftp://h", "http://", "http://:80", "http://h:0", "http://h:65536", "http://h:8x", "http://::1:80",
            "http://[::1", "http://[1.2.3.4]", "http://[::1]x", "http://user:pw@h", "http://-h.example",
            "http://h-.example", "http://h_1.example", "http://999.1.1.1", "http://h.example/a?b", "http://a..b",
            "http://" + String(repeating: "a", count: 64) + ".example",
        ] {
            XCTAssertNil(Upstream.parse(bad), bad)
        }
    }

    func testShieldTier() throws {
        let child =
            base.replacingOccurrences(
                of: "urls = [\"file:///srv/audio\"]",
                with:
                    "urls = [\"https://bucket.example\"]\nparents = [\"http://parent-a.internal:8080\", \"http://10.0.0.2:8080\"]\nparent_key = \"0123456789abcdef0123\""
            ) + "\n[cache]\ndir = \"/c\""
        let c = try EdgeConfig.parse(child)
        XCTAssertEqual(c.origin.parents.map(\.url), ["http://parent-a.internal:8080", "http://10.0.0.2:8080"])
        XCTAssertEqual(c.origin.upstreams.map(\.isParent), [true, true, false], "parents first, then the origin")
        XCTAssertEqual(c.origin.parentKey, "0123456789abcdef0123")
        XCTAssertFalse(c.origin.parentsFallbackToOrigin)
        XCTAssertTrue(
            try EdgeConfig.parse(
                child.replacingOccurrences(of: "[cache]", with: "parents_fallback = \"origin\"\n[cache]")
            )
            .origin.parentsFallbackToOrigin)
        let cases: [(String, String, String)] = [
            ("parent_key = \"0123456789abcdef0123\"", "parent_key = \"short\"", "origin.parent_key"),
            ("parent_key = \"0123456789abcdef0123\"", "", "origin.parent_key"),
            ("\"http://10.0.0.2:8080\"]", "\"https://bucket.example\"]", "origin.parents"),   // also an origin
            ("\"http://10.0.0.2:8080\"]", "\"gopher://x\"]", "origin.parents"),
            (
                "parent_key = \"0123456789abcdef0123\"",
                "parent_key = \"0123456789abcdef0123\"\nparents_fallback = \"nowhere\"", "origin.parents_fallback"
            ),
        ]
        for (from, to, key) in cases {
            XCTAssertEqual(error(child.replacingOccurrences(of: from, with: to))?.key, key, to)
        }
        XCTAssertEqual(
            error(base.replacingOccurrences(of: "[origin]", with: "[origin]\nparent_key = \"0123456789abcdef0123\""))?
                .key, "origin.parent_key")
        // The parent's side, and the cache's name in Cache-Status.
        let parent = try EdgeConfig.parse(
            base.replacingOccurrences(of: "[token]", with: "[token]\nchild_key = \"0123456789abcdef0123\"")
                .replacingOccurrences(of: "[server]", with: "[server]\ncache_name = \"parent-fra1\""))
        XCTAssertEqual(parent.token.childKey, "0123456789abcdef0123")
        XCTAssertEqual(parent.server.cacheName, "parent-fra1")
        XCTAssertEqual(
            error(base.replacingOccurrences(of: "[token]", with: "[token]\nchild_key = \"short\""))?.key,
            "token.child_key")
        XCTAssertEqual(
            error(base.replacingOccurrences(of: "[server]", with: "[server]\ncache_name = \"a b\""))?.key,
            "server.cache_name")
    }

    func testSignedOrigins() throws {
        let http =
            base.replacingOccurrences(of: "file:///srv/audio", with: "http://bucket.example")
            + "\n[cache]\ndir = \"/c\""
        func with(_ lines: String) -> String {
            http.replacingOccurrences(
                of: "urls = [\"http://bucket.example\"]", with: "urls = [\"http://bucket.example\"]\n" + lines)
        }
        let c = try EdgeConfig.parse(
            with(
                "auth = \"s3-sigv4\"\naccess_key_id = \"AKID\"\nsecret_access_key = \"s3cr3t/x+y\"\nregion = \"eu-west-1\""
            ))
        XCTAssertEqual(
            c.origin.sigV4,
            SigV4Credentials(accessKeyID: "AKID", secretAccessKey: "s3cr3t/x+y", region: "eu-west-1", service: "s3"))
        XCTAssertFalse("\(c.origin)".contains("s3cr3t"), "the secret is never printed")
        let cases: [(String, String)] = [
            ("auth = \"basic\"", "origin.auth"),
            ("access_key_id = \"AKID\"", "origin.access_key_id"),   // without auth
            ("auth = \"s3-sigv4\"\nsecret_access_key = \"s\"\nregion = \"r\"", "origin.access_key_id"),
            ("auth = \"s3-sigv4\"\naccess_key_id = \"A\"\nregion = \"r\"", "origin.secret_access_key"),
            ("auth = \"s3-sigv4\"\naccess_key_id = \"A\"\nsecret_access_key = \"s\"", "origin.region"),
            (
                "auth = \"s3-sigv4\"\naccess_key_id = \"A\"\nsecret_access_key = \"s\"\nregion = \"a b\"",
                "origin.region"
            ),
            (
                "auth = \"s3-sigv4\"\naccess_key_id = \"A\"\nsecret_access_key = \"s\"\nsecret_access_key_file = \"/x\"\nregion = \"r\"",
                "origin.secret_access_key_file"
            ),
            (
                "auth = \"s3-sigv4\"\naccess_key_id = \"A\"\nsecret_access_key_file = \"/nonexistent\"\nregion = \"r\"",
                "origin.secret_access_key_file"
            ),
            ("ca_file = \"/nonexistent/ca.pem\"", "origin.ca_file"),
            ("resolve_interval_seconds = 0", "origin.resolve_interval_seconds"),
        ]
        for (lines, key) in cases { XCTAssertEqual(error(with(lines))?.key, key, lines) }
        let bad = error(
            with("auth = \"s3-sigv4\"\naccess_key_id = \"A\"\nsecret_access_key = \"has space\"\nregion = \"r\""))
        XCTAssertEqual(bad?.key, "origin.secret_access_key")
        XCTAssertFalse(bad?.description.contains("has space") ?? true, "the reason never quotes the secret")
    }

    func testListenAddressForms() {
        XCTAssertEqual(ListenAddress.parse("[::1]:443"), ListenAddress(host: "::1", port: 443))
        XCTAssertNil(ListenAddress.parse("::1:443"))
        XCTAssertNil(ListenAddress.parse("127.0.0.1:0"))
        XCTAssertNil(ListenAddress.parse("127.0.0.1:70000"))
        XCTAssertNil(ListenAddress.parse("localhost:80"))
        XCTAssertNil(ListenAddress.parse("256.1.1.1:80"))
        XCTAssertNotNil(ListenAddress.parse("0.0.0.0:80"))
        XCTAssertNotNil(ListenAddress.parse("[::]:80"))
    }

    /// Found by the configuration fuzzer: toml++ aborted the process on these instead of
    /// reporting an error.
    func testTableHeadersThatAbortedTOMLParsing() {
        for text in [
            "[@Q", "[server]\nlisten = [\"127.0.0.1:1\"]\n[@Q", "[ [ @x ] ]", "  [+a]", "[[\t%]]",
            "# a comment with \"\"\" in it\n[@a", "x = \"\"\"\"\"\"\n[@a", "x = '\"\"\"'\n[@a", "\u{FEFF}[\u{FF}\"\n",
        ] {
            XCTAssertThrowsError(try EdgeConfig.parse(text), text.debugDescription) { e in
                XCTAssertTrue("\(e)".contains("table header"), "\(e)")
            }
        }
        for text in [
            "a = [}", "a = [ }", "a = [1, }", "a = [[}]]", "a = [ # c\n}", "a = [\n\n}",
            "[server]\nlisten = [}127.0.0.1\"]",
        ] {
            XCTAssertThrowsError(try EdgeConfig.parse(text), text.debugDescription) { e in
                XCTAssertTrue("\(e)".contains("where an array value or ']' was expected"), "\(e)")
            }
        }
        // Braces in strings and comments, and a closed array before an inline table's brace, are fine.
        XCTAssertNoThrow(try Reader.checkArrayValues("a = [\"}\", '}']\nb = { c = [1] }\n# [ }\nd = \"\"\"[\n}\"\"\""))
        // Not a header: a line of a multi-line string.
        XCTAssertNoThrow(try Reader.checkTableHeaders("a = \"\"\"\n[@not a header\n\"\"\"\n[ok]\n['quoted']\n[\"q\"]"))
    }
}
