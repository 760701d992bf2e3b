import Glibc

/// A request's header fields, kept as the bytes they arrived as: one array of records
/// `[name count: UInt32][value count: UInt32][name][value]`, names lower-case.
///
/// Why bytes: a request carries fields the edge never reads (user-agent, accept, accept-encoding,
/// …). As `[HeaderField]` each became two `String`s, validated and most of them allocated, then
/// released with the exchange: about 3,000 instructions of a 4 KiB range request
/// (loadtest/instructions.py). Here a field costs a copy into one array, and a `String` is made
/// only for a field something asks for (`value(_:)`).
public struct HeaderBlock: @unchecked Sendable, Equatable {
    // `@unchecked Sendable`: the storage is copied before any write unless uniquely referenced
    // (copy on write, as an Array's), so a shared block is never mutated.
    // No `didSet` here: an observed property passed `inout` to `isKnownUniquelyReferenced` goes
    // through a temporary copy, which is never unique.
    private var storage: HeaderStorage?
    /// The storage's header and bytes, valid while `storage` holds it (a ManagedBuffer never
    /// moves), set wherever `storage` is. Reads go through these, so they never touch, and so
    /// never retain, the reference.
    private var head: UnsafeMutablePointer<HeaderStorage.Head>?
    private var bytes: UnsafeMutablePointer<UInt8>?
    /// The number of fields.
    public var count: Int { head?.pointee.fields ?? 0 }

    private static let prefixBytes = 8

    public init() {}

    public init(_ fields: [HeaderField]) {
        reserveCapacity(bytes: fields.reduce(0) { $0 + Self.prefixBytes + $1.name.utf8.count + $1.value.utf8.count })
        for f in fields { append(f.name, f.value) }
    }

    public mutating func reserveCapacity(bytes: Int) { _ = room(forMore: 0, atLeast: bytes) }

    /// Drops every field and the memory that held them.
    public mutating func removeAll() {
        storage = nil
        head = nil
        bytes = nil
    }

    /// Appends a field whose name is already lower-case (HTTP/2 requires it; nghttp2 checks it).
    public mutating func append(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        let p = appendPrefix(name.count, value.count)
        if name.count > 0 { memcpy(p, name.baseAddress!, name.count) }
        if value.count > 0 { memcpy(p + name.count, value.baseAddress!, value.count) }
        noteName(p, name.count)
    }

    /// Appends a field, folding the name's ASCII upper-case letters to lower-case (HTTP/1.1 field
    /// names are case-insensitive, RFC 9110 §5.1; header names are tokens, all ASCII).
    public mutating func append(lowercasingName name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        let p = appendPrefix(name.count, value.count)
        for k in 0..<name.count {
            let c = name[k]
            p[k] = c >= 0x41 && c <= 0x5A ? c | 0x20 : c
        }
        if value.count > 0 { memcpy(p + name.count, value.baseAddress!, value.count) }
        noteName(p, name.count)
    }

    /// A filter of the names present: most lookups are for a field the request does not carry
    /// (if-none-match, if-modified-since, cookie, …), and the filter answers those without a walk.
    @inline(__always) private static func nameBit(_ name: UnsafePointer<UInt8>, _ count: Int) -> UInt64 {
        guard count > 0 else { return 1 }
        return 1 << ((UInt64(truncatingIfNeeded: count) &* 7 &+ UInt64(name[0]) &+ UInt64(name[count - 1]) &* 3) & 63)
    }

    private mutating func noteName(_ name: UnsafeMutablePointer<UInt8>, _ count: Int) {
        head.unsafelyUnwrapped.pointee.names |= Self.nameBit(name, count)
    }

    public mutating func append(_ name: String, _ value: String) {
        Self.withBytes(name) { n in Self.withBytes(value) { v in append(name: n, value: v) } }
    }

    /// Writes a record's counts and returns where its name goes (room for name and value made).
    /// Counts above `UInt32.max` cannot arrive: every caller's header section is bounded far
    /// below it (HTTP/1.1 `header_bytes_max`, HTTP/2 `h2_header_list_bytes_max`).
    private mutating func appendPrefix(_ nameCount: Int, _ valueCount: Int) -> UnsafeMutablePointer<UInt8> {
        precondition(nameCount <= Int(UInt32.max) && valueCount <= Int(UInt32.max), "a header field beyond 4 GiB")
        let record = Self.prefixBytes + nameCount + valueCount
        let p = room(forMore: record, atLeast: 0)
        let raw = UnsafeMutableRawPointer(p)
        raw.storeBytes(of: UInt32(nameCount).littleEndian, toByteOffset: 0, as: UInt32.self)
        raw.storeBytes(of: UInt32(valueCount).littleEndian, toByteOffset: 4, as: UInt32.self)
        let h = head.unsafelyUnwrapped
        h.pointee.used += record
        h.pointee.fields += 1
        return p + Self.prefixBytes
    }

    /// Uniquely held storage with room for `more` bytes past those used (and at least `atLeast`
    /// in all); returns where the next byte goes.
    private mutating func room(forMore more: Int, atLeast: Int) -> UnsafeMutablePointer<UInt8> {
        let used = head?.pointee.used ?? 0
        let need = max(used + more, atLeast)
        if storage == nil || !isKnownUniquelyReferenced(&storage) || head.unsafelyUnwrapped.pointee.capacity < need {
            let grown = HeaderStorage.make(capacity: max(need, 2 * (head?.pointee.capacity ?? 0), 64))
            if let oldHead = head, let oldBytes = bytes {
                grown.head.pointee.used = used
                grown.head.pointee.fields = oldHead.pointee.fields
                grown.head.pointee.names = oldHead.pointee.names
                memcpy(grown.bytes, oldBytes, used)
            }
            storage = grown
            head = grown.head
            bytes = grown.bytes
        }
        return bytes.unsafelyUnwrapped + used
    }

    /// The used bytes (empty when there is no storage).
    private func withRecords<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        guard let head, let bytes else { return body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        return body(UnsafeRawBufferPointer(start: bytes, count: head.pointee.used))
    }

    /// The record at offset `i`: its name, its value, and where the next record starts. The one
    /// place that reads the layout `appendPrefix` writes.
    @inline(__always) private static func record(
        _ base: UnsafeRawPointer, at i: Int
    ) -> (name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, next: Int) {
        let nameCount = Int(UInt32(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt32.self)))
        let valueCount = Int(UInt32(littleEndian: base.loadUnaligned(fromByteOffset: i + 4, as: UInt32.self)))
        let nameAt = i + prefixBytes
        return (
            UnsafeRawBufferPointer(start: base + nameAt, count: nameCount),
            UnsafeRawBufferPointer(start: base + nameAt + nameCount, count: valueCount),
            nameAt + nameCount + valueCount
        )
    }

    /// Calls `body` with each field's name and value bytes, in order, until it returns false.
    /// The pointers are valid only inside the call.
    public func forEach(_ body: (_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> Bool) {
        guard let head, let bytes else { return }
        let used = head.pointee.used
        var i = 0
        while i < used {
            let r = Self.record(bytes, at: i)
            if !body(r.name, r.value) { return }
            i = r.next
        }
    }

    /// The first value of the field named `name` (lower-case), as text; nil without one. The name
    /// is a `StaticString` on the hot path: its bytes are at hand, where a `String`'s are reached
    /// through `withContiguousStorageIfAvailable` (about 90 instructions a lookup).
    public func value(_ name: StaticString) -> String? {
        find(UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
    }

    /// `value(_:)` for a name known only at run time (a configured header name).
    public func value(named name: String) -> String? { Self.withBytes(name) { find($0) } }

    private func find(_ wanted: UnsafeRawBufferPointer) -> String? {
        guard let head, let bytes else { return nil }
        if wanted.count > 0 {
            let bit = Self.nameBit(wanted.baseAddress!.assumingMemoryBound(to: UInt8.self), wanted.count)
            guard head.pointee.names & bit != 0 else { return nil }
        }
        let used = head.pointee.used
        var i = 0
        while i < used {
            let r = Self.record(bytes, at: i)
            if Self.equal(r.name, wanted) { return String(decoding: r.value, as: UTF8.self) }
            i = r.next
        }
        return nil
    }

    /// How many fields are named `name` (lower-case).
    public func count(named name: String) -> Int {
        var n = 0
        Self.withBytes(name) { wanted in
            forEach { f, _ in
                if Self.equal(f, wanted) { n += 1 }
                return true
            }
        }
        return n
    }

    /// Every field named `name` replaced by one at the end, its values joined by `separator`
    /// (RFC 9113 §8.2.3: cookie crumbs sent as separate fields become one field again).
    public mutating func join(named name: String, separator: String) {
        var rest = HeaderBlock()
        var joined: [UInt8] = []
        var joinedAny = false
        Self.withBytes(name) { wanted in
            forEach { n, v in
                if Self.equal(n, wanted) {
                    if joinedAny { joined.append(contentsOf: separator.utf8) }
                    joined.append(contentsOf: v)
                    joinedAny = true
                } else {
                    rest.append(name: n, value: v)
                }
                return true
            }
        }
        guard joinedAny else { return }
        joined.withUnsafeBytes { v in Self.withBytes(name) { rest.append(name: $0, value: v) } }
        self = rest
    }

    /// The fields as `HeaderField`s: for tests and rare paths, not for each request.
    public var fields: [HeaderField] {
        var out: [HeaderField] = []
        out.reserveCapacity(count)
        forEach { n, v in
            out.append(HeaderField(String(decoding: n, as: UTF8.self), String(decoding: v, as: UTF8.self)))
            return true
        }
        return out
    }

    public static func == (a: HeaderBlock, b: HeaderBlock) -> Bool {
        a.count == b.count && a.withRecords { x in b.withRecords { y in equal(x, y) } }
    }

    @inline(__always) static func equal(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        a.count == b.count && (a.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0)
    }

    /// A string's UTF-8 bytes without a copy when it is stored contiguously (literals and native
    /// strings are).
    @inline(__always) static func withBytes<R>(_ s: String, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        if let r = s.utf8.withContiguousStorageIfAvailable({ body(UnsafeRawBufferPointer($0)) }) { return r }
        return Array(s.utf8).withUnsafeBytes { body($0) }
    }
}

/// A header block's bytes, in the same allocation as their counts (one allocation per block).
/// Reached through pointers, not `header`: each access to a class's stored property paid a
/// dynamic exclusivity check (about 1,100 instructions per request, loadtest/instructions.py).
private final class HeaderStorage: ManagedBuffer<HeaderStorage.Head, UInt8> {
    struct Head {
        var used: Int
        var fields: Int
        var capacity: Int
        /// `HeaderBlock.nameBit` of every name appended.
        var names: UInt64
    }

    static func make(capacity: Int) -> HeaderStorage {
        let b = create(minimumCapacity: capacity) { _ in Head(used: 0, fields: 0, capacity: capacity, names: 0) }
        return unsafeDowncast(b, to: HeaderStorage.self)
    }

    /// Valid while the object lives: a ManagedBuffer's header and elements never move.
    @inline(__always) var head: UnsafeMutablePointer<Head> { withUnsafeMutablePointerToHeader { $0 } }
    @inline(__always) var bytes: UnsafeMutablePointer<UInt8> { withUnsafeMutablePointerToElements { $0 } }
}
