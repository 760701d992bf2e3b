/// Ogg (RFC 3533) paging of an Opus stream (RFC 7845). Every page starts with "OggS", carries its
/// own length and the absolute granule position (48 kHz samples) at its end, so a byte range that
/// starts on a page boundary decodes on its own once the header pages (OpusHead, OpusTags) are put
/// in front: the manifest's `init`. That is what makes chunk tables and one-request seeks work.
public enum Ogg {
    public struct Page: Equatable, Sendable {
        public var offset: Int
        public var length: Int
        public var granule: Int64
    }

    public struct ParseError: Error, CustomStringConvertible, Equatable {
        public let description: String
    }

    public static func pages(_ b: [UInt8]) throws -> [Page] {
        var out: [Page] = []
        var i = 0
        while i < b.count {
            guard i + 27 <= b.count else { throw ParseError(description: "truncated Ogg page header at byte \(i)") }
            guard b[i] == 0x4F, b[i + 1] == 0x67, b[i + 2] == 0x67, b[i + 3] == 0x53, b[i + 4] == 0 else {
                throw ParseError(description: "lost Ogg capture pattern at byte \(i)")
            }
            var granule: Int64 = 0
            for k in 0..<8 { granule |= Int64(b[i + 6 + k]) << (8 * Int64(k)) }
            let segments = Int(b[i + 26])
            guard i + 27 + segments <= b.count else {
                throw ParseError(description: "truncated Ogg segment table at byte \(i)")
            }
            var body = 0
            for k in 0..<segments { body += Int(b[i + 27 + k]) }
            let length = 27 + segments + body
            guard i + length <= b.count else { throw ParseError(description: "truncated Ogg page at byte \(i)") }
            out.append(Page(offset: i, length: length, granule: granule))
            i += length
        }
        guard !out.isEmpty else { throw ParseError(description: "no Ogg pages") }
        return out
    }

    /// The Opus pre-skip (samples to drop at the start) from the OpusHead packet on the first page.
    public static func opusPreSkip(_ b: [UInt8], _ first: Page) throws -> Int {
        let body = first.offset + 27 + Int(b[first.offset + 26])
        guard body + 19 <= b.count, b[body..<(body + 8)].elementsEqual("OpusHead".utf8) else {
            throw ParseError(description: "first page is not OpusHead")
        }
        return Int(b[body + 10]) | Int(b[body + 11]) << 8
    }

    public struct Layout: Equatable, Sendable {
        public var initOffset: Int
        public var initLength: Int
        public var chunks: [(offset: Int, length: Int, durationMs: Int)]
        public var durationMs: Int
        public static func == (a: Layout, b: Layout) -> Bool {
            a.initOffset == b.initOffset && a.initLength == b.initLength && a.durationMs == b.durationMs
                && a.chunks.map { [$0.offset, $0.length, $0.durationMs] }
                    == b.chunks.map { [$0.offset, $0.length, $0.durationMs] }
        }
    }

    /// Header pages (granule 0) form `init`; audio pages are grouped into chunks of about
    /// `seconds` each (whole pages; the last may be shorter). Durations come from granule
    /// positions (48 kHz), less the pre-skip for the first chunk, so they add up exactly.
    public static func layout(_ pages: [Page], preSkip: Int, seconds: Double) throws -> Layout {
        guard let firstAudio = pages.firstIndex(where: { $0.granule > 0 }), firstAudio > 0 else {
            throw ParseError(description: "no audio pages after the headers")
        }
        // Granules come from the file: bounded before any arithmetic (found by the Ogg fuzzer: a
        // granule near Int64.max trapped on `* 1000`). -1 marks a page on which no packet ends.
        let granuleMax = Int64(48000) * 86400 * 7
        for p in pages where p.granule != -1 && !(0...granuleMax).contains(p.granule) {
            throw ParseError(description: "granule position \(p.granule) at byte \(p.offset) out of range")
        }
        guard (0...65535).contains(preSkip) else { throw ParseError(description: "pre-skip \(preSkip) out of range") }
        guard pages.last!.granule >= Int64(preSkip) else {
            throw ParseError(description: "last granule position before the pre-skip")
        }
        let target = Int64(seconds * 48000)
        var chunks: [(Int, Int, Int)] = []
        var startOffset = pages[firstAudio].offset
        var chunkStartGranule = Int64(preSkip)
        for k in firstAudio..<pages.count {
            let p = pages[k]
            let last = k == pages.count - 1
            if p.granule == -1 && !last { continue }
            guard p.granule >= chunkStartGranule || p.granule == -1 else {
                throw ParseError(description: "granule position goes backwards at byte \(p.offset)")
            }
            if p.granule - chunkStartGranule >= target || last {
                let end = p.offset + p.length
                let ms = Int((p.granule * 1000) / 48000 - (chunkStartGranule * 1000) / 48000)
                chunks.append((startOffset, end - startOffset, ms))
                startOffset = end
                chunkStartGranule = p.granule
            }
        }
        let total = Int(((pages.last!.granule - Int64(preSkip)) * 1000) / 48000)
        return Layout(initOffset: 0, initLength: pages[firstAudio].offset, chunks: chunks, durationMs: total)
    }
}
