#if canImport(Glibc)
    import Glibc
#endif

/// Whether two strings hold the same UTF-8 bytes. `==` compares by canonical equivalence: about
/// 120 instructions for two equal 25-byte paths, where this costs a `memcmp`
/// (`loadtest/instructions.py`). The equality a key hashed over its bytes (FNV-1a) needs: two
/// spellings of one character hash apart, so they must compare apart too.
@inlinable
public func sameBytes(_ a: String, _ b: String) -> Bool {
    let fast = a.utf8.withContiguousStorageIfAvailable { x in
        b.utf8.withContiguousStorageIfAvailable { y in
            x.count == y.count && (x.count == 0 || memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0)
        }
    }
    if let fast, let answer = fast { return answer }
    return a.utf8.elementsEqual(b.utf8)   // a bridged or lazily stored string
}
