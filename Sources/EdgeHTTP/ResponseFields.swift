import EdgeEncoding

/// A response field's value that is not text the plan already holds: bytes fixed at build time, or
/// numbers the writers put down as digits straight into their output. Formatting `Content-Range`
/// as a `String` cost an allocation and about 700 instructions per range response
/// (`loadtest/instructions.py`). Holds no reference, so copying one costs nothing.
public enum FieldValue: Sendable, Equatable {
    /// Static bytes, alive for the whole process: HTTP/2 hands nghttp2 the pointer, no copy.
    case fixed(StaticString)
    /// A non-negative integer.
    case decimal(Int)
    /// `bytes first-last/size`.
    case byteRange(first: Int, last: Int, size: Int)
    /// `bytes */size` (416).
    case unsatisfiedRange(size: Int)

    /// The most bytes `write` puts down for this value.
    @inlinable
    public var byteCountMax: Int {
        switch self {
        case .fixed(let s): return s.utf8CodeUnitCount
        case .decimal: return DecimalText.bytesMax
        case .byteRange: return 6 + 3 * DecimalText.bytesMax + 2
        case .unsatisfiedRange: return 8 + DecimalText.bytesMax
        }
    }

    /// Writes the value at `out`, which has room for `byteCountMax` bytes; returns the bytes written.
    public func write(into out: UnsafeMutableRawPointer) -> Int {
        var n = 0
        @inline(__always) func put(_ s: StaticString) {
            (out + n).copyMemory(from: s.utf8Start, byteCount: s.utf8CodeUnitCount)
            n += s.utf8CodeUnitCount
        }
        @inline(__always) func put(_ byte: UInt8) {
            out.storeBytes(of: byte, toByteOffset: n, as: UInt8.self)
            n += 1
        }
        switch self {
        case .fixed(let s):
            put(s)
        case .decimal(let v):
            n = DecimalText.write(v, into: out)
        case .byteRange(let first, let last, let size):
            put("bytes ")
            n += DecimalText.write(first, into: out + n)
            put(UInt8(ascii: "-"))
            n += DecimalText.write(last, into: out + n)
            put(UInt8(ascii: "/"))
            n += DecimalText.write(size, into: out + n)
        case .unsatisfiedRange(let size):
            put("bytes */")
            n += DecimalText.write(size, into: out + n)
        }
        return n
    }

    /// The value as text (tests, diagnostics): the bytes `write` puts down.
    public var rendered: String {
        String(unsafeUninitializedCapacity: byteCountMax) { write(into: UnsafeMutableRawPointer($0.baseAddress!)) }
    }

    public static func == (a: FieldValue, b: FieldValue) -> Bool { a.rendered == b.rendered }
}

/// What a front end writes a response's fields into (`ResponseFields.write(to:)`). The walk is
/// generic over the sink and inlined into each front end, so every field reaches its writer as a
/// direct call with a static name: no `[HeaderField]`, no per-field enum, no closure.
public protocol ResponseFieldSink {
    mutating func field(_ name: StaticString, _ value: String)
    mutating func field(_ name: StaticString, _ value: FieldValue)
    /// A field whose name is not fixed at build time.
    mutating func field(name: String, value: String)
}

/// The fields of a response head, besides those each front end writes itself (status, Server,
/// Date, Content-Length, Connection): typed slots in the order they are sent, then whatever else
/// an answer carries. A `[HeaderField]` of `String`s cost an array and a string per range
/// response, and a copy of every name into nghttp2. (A struct of six strings: each copy retains
/// them all. The plan now travels whole to the writer, which borrows it; one copy is left, inside
/// `ResponsePlan`'s initializer; see docs/ARCHITECTURE.md.)
public struct ResponseFields: Sendable, Equatable {
    public var contentType: String?
    public var contentRange: FieldValue?
    public var etag: String?
    public var lastModified: String?
    public var acceptRanges = false
    public var cacheControl: String?
    /// RFC 9211 Cache-Status and RFC 9111 Age: a cached answer's.
    public var cacheStatus: String?
    public var age: Int?
    /// Fields without a slot of their own (Allow, Retry-After, …), sent after the others.
    public var extra: [HeaderField] = []

    public init(contentType: String? = nil, extra: [HeaderField] = []) {
        self.contentType = contentType
        self.extra = extra
    }

    /// A representation's fields (`ResponsePlan`), each given once: built in one call, the value
    /// moves into the plan where a local changed field by field was copied into it.
    public init(
        contentType: consuming String?, contentRange: FieldValue?, etag: consuming String,
        lastModified: consuming String, cacheControl: consuming String
    ) {
        self.contentType = contentType
        self.contentRange = contentRange
        self.etag = etag
        self.lastModified = lastModified
        acceptRanges = true
        self.cacheControl = cacheControl
    }

    /// Every field, in the order it is sent: the one walk all writers and `Measure` share.
    @inlinable
    public func write<Sink: ResponseFieldSink>(to sink: inout Sink) {
        if let contentType { sink.field("content-type", contentType) }
        if let contentRange { sink.field("content-range", contentRange) }
        if let etag { sink.field("etag", etag) }
        if let lastModified { sink.field("last-modified", lastModified) }
        if acceptRanges { sink.field("accept-ranges", .fixed("bytes")) }
        if let cacheControl { sink.field("cache-control", cacheControl) }
        if let cacheStatus { sink.field("cache-status", cacheStatus) }
        if let age { sink.field("age", .decimal(age)) }
        for e in extra { sink.field(name: e.name, value: e.value) }
    }

    /// How many fields `write` gives a sink, and the most bytes of names and values: what a writer
    /// sizes its scratch space by.
    public struct Measure: ResponseFieldSink {
        public var count = 0
        public var bytes = 0
        public init() {}
        @inlinable public mutating func field(_ name: StaticString, _ value: String) {
            count += 1
            bytes += name.utf8CodeUnitCount + value.utf8.count
        }
        @inlinable public mutating func field(_ name: StaticString, _ value: FieldValue) {
            count += 1
            bytes += name.utf8CodeUnitCount + value.byteCountMax
        }
        @inlinable public mutating func field(name: String, value: String) {
            count += 1
            bytes += name.utf8.count + value.utf8.count
        }
    }

    @inlinable
    public var measure: Measure {
        var m = Measure()
        write(to: &m)
        return m
    }

    struct Listing: ResponseFieldSink {
        var fields: [HeaderField] = []
        mutating func field(_ name: StaticString, _ value: String) { fields.append(HeaderField("\(name)", value)) }
        mutating func field(_ name: StaticString, _ value: FieldValue) {
            fields.append(HeaderField("\(name)", value.rendered))
        }
        mutating func field(name: String, value: String) { fields.append(HeaderField(name, value)) }
    }

    /// The fields as name/value text, in order (tests, diagnostics).
    public var list: [HeaderField] {
        var listing = Listing()
        write(to: &listing)
        return listing.fields
    }

    /// The value of the first field named `name` (lower-case), as text.
    public func value(_ name: String) -> String? { list.first { $0.name == name }?.value }
}
