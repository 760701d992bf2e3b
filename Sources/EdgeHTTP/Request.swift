/// The protocol a request arrived on. HTTP/1.x and HTTP/2 front ends both produce `EdgeRequest`;
/// handlers never see frames or parser state.
public enum HTTPVersion: Sendable, Equatable {
    case http1_0, http1_1, http2

    public var text: String {
        switch self {
        case .http1_0: return "HTTP/1.0"
        case .http1_1: return "HTTP/1.1"
        case .http2: return "HTTP/2"
        }
    }
}

/// One header field. Names are lower-case (HTTP/2 requires it; the HTTP/1.1 parser folds them).
public struct HeaderField: Sendable, Equatable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) { self.name = name; self.value = value }
}

/// A request as both front ends hand it to the router.
public struct EdgeRequest: Sendable {
    public var method: String
    /// The request target as received (origin-form: path and optional query).
    public var target: String
    public var version: HTTPVersion
    /// The header fields as received, names lower-case (see `HeaderBlock` for why bytes).
    public var fields: HeaderBlock

    public init(method: String, target: String, version: HTTPVersion, fields: HeaderBlock) {
        self.method = method; self.target = target; self.version = version; self.fields = fields
    }

    public init(method: String, target: String, version: HTTPVersion, headers: [HeaderField]) {
        self.init(method: method, target: target, version: version, fields: HeaderBlock(headers))
    }

    /// First value of a header, by its lower-case name.
    public func header(_ name: StaticString) -> String? { fields.value(name) }

    /// First value of a header whose lower-case name is known only at run time.
    public func header(named name: String) -> String? { fields.value(named: name) }

    /// Whether the client asked to keep the connection open (HTTP/1.x semantics).
    public var wantsKeepAlive: Bool {
        let connection = header("connection")?.lowercased() ?? ""
        let tokens = connection.split(separator: ",").map { $0.trimmingOWS() }
        switch version {
        case .http1_0: return tokens.contains("keep-alive")
        case .http1_1: return !tokens.contains("close")
        case .http2: return true
        }
    }
}

/// A response head; both front ends serialise it their own way.
public struct EdgeResponseHead: Sendable {
    public var status: Int
    public var headers: [HeaderField]
    public init(status: Int, headers: [HeaderField] = []) { self.status = status; self.headers = headers }
}

extension Substring {
    public func trimmingOWS() -> Substring {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return s
    }
}

extension String {
    public func trimmingOWS() -> String { String(Substring(self).trimmingOWS()) }
}

public enum HTTPStatus {
    public static func reason(_ status: Int) -> String {
        switch status {
        case 200: return "OK"
        case 204: return "No Content"
        case 206: return "Partial Content"
        case 304: return "Not Modified"
        case 400: return "Bad Request"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 408: return "Request Timeout"
        case 411: return "Length Required"
        case 413: return "Content Too Large"
        case 414: return "URI Too Long"
        case 416: return "Range Not Satisfiable"
        case 421: return "Misdirected Request"
        case 429: return "Too Many Requests"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 501: return "Not Implemented"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        case 505: return "HTTP Version Not Supported"
        default: return "Status"
        }
    }
}
