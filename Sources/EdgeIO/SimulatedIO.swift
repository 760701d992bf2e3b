import CEdgeRing
import EdgeEncoding

/// The kernel side of a `Ring`, in memory, on a virtual clock: sockets whose far end a test
/// drives (`Peer`), listeners, files, timeouts, eventfds and cross-ring messages. The server's
/// own code runs unchanged on it; only what the kernel would do is simulated. Faults come from a
/// seed, so a failing run is reproduced by its seed alone.
///
/// Time moves only when the server would block: `submitAndWait` jumps to the next scheduled
/// completion or timeout. A test moves it further with `advance`.
public final class SimulatedIO {
    /// What can go wrong, in percent per operation (0 = never).
    public struct Faults: Sendable {
        /// recv and send move fewer bytes than they could.
        public var shortTransferPercent = 0
        /// recv and send fail with a retryable error (EAGAIN, ENOBUFS, EINTR).
        public var retryPercent = 0
        /// A recv sees ECONNRESET, a send EPIPE: the connection is gone.
        public var resetPercent = 0
        /// Every completion is delivered 0...this many microseconds late (reorders completions).
        public var delayMicrosecondsMax = 0
        /// open-for-create, write, fsync and rename fail (ENOSPC, EIO).
        public var diskFailurePercent = 0
        /// A file read fails with EIO.
        public var readFailurePercent = 0
        /// Mapping a file fails (ENOMEM): the server reads the file instead.
        public var mapFailurePercent = 0
        /// A residency check finds a page out of the page cache: the server reads that range.
        public var pageCacheMissPercent = 0
        public init() {}
    }

    public private(set) var nowMicroseconds: Int64 = 1_000_000
    /// The wall clock at virtual time zero (Unix milliseconds).
    public let wallEpochMilliseconds: Int64
    public var faults: Faults
    private var random: SplitMix64
    /// How many faults were injected, by kind (for a run's report).
    public private(set) var injected: [String: Int] = [:]

    public init(seed: UInt64, faults: Faults = Faults(), wallEpochMilliseconds: Int64 = 1_800_000_000_000) {
        random = SplitMix64(seed: seed)
        self.faults = faults
        self.wallEpochMilliseconds = wallEpochMilliseconds
        nodes[2] = .sink(Sink())
    }

    public var wallMilliseconds: Int64 { wallEpochMilliseconds + nowMicroseconds / 1000 }

    enum Node {
        case listener(Listener)
        case socket(Pipe?)
        case file(OpenFile)
        case sink(Sink)
        case eventfd(EventFD)
    }

    private var nodes: [Int32: Node] = [:]
    private var nextFD: Int32 = 100
    /// Files by absolute path (the directory origin, slice files).
    public var files: [String: File] = [:]
    private var behaviours: [Int: any PeerBehaviour] = [:]

    private func allocate(_ node: Node) -> Int32 {
        let fd = nextFD
        nextFD += 1
        nodes[fd] = node
        return fd
    }

    public func listen() -> Int32 { allocate(.listener(Listener())) }
    public func eventFD() -> Int32 { allocate(.eventfd(EventFD())) }
    /// A descriptor that keeps what is written to it (an access log).
    public func sink() -> Int32 { allocate(.sink(Sink())) }
    public func sinkText(_ fd: Int32) -> String {
        guard case .sink(let s)? = nodes[fd] else { return "" }
        return String(decoding: s.bytes, as: UTF8.self)
    }
    /// The ring's own descriptor, for messages a worker posts to itself.
    public let ringFD: Int32 = 3

    /// A client connects to `listener`; the server sees it on its next accept.
    public func connect(to listener: Int32, from address: String = "192.0.2.10") -> Peer {
        guard case .listener(let l)? = nodes[listener] else { preconditionFailure("fd \(listener) is not a listener") }
        let pipe = Pipe(address: address)
        let peer = Peer(pipe: pipe)
        pipe.peer = peer
        l.pending.append(pipe)
        return peer
    }

    /// Connections the server makes to `port` reach `behaviour`.
    public func serve(port: Int, _ behaviour: any PeerBehaviour) { behaviours[port] = behaviour }

    /// Adds one to an eventfd (a wake-up from another thread).
    public func signal(_ fd: Int32) {
        guard case .eventfd(let e)? = nodes[fd] else { preconditionFailure("fd \(fd) is not an eventfd") }
        e.count += 1
    }

    public func peerAddress(_ fd: Int32) -> String {
        if case .socket(let p?)? = nodes[fd] { return p.address }
        return "-"
    }

    // MARK: file mappings

    /// File reads performed (each one a read the server submitted).
    public private(set) var fileReads = 0
    /// Mappings made and not yet unmapped (a leak check: zero once every file is closed and
    /// every response sent).
    public var liveMappings: Int { mappings.count }

    /// A mapping of an open file: a copy of its first `length` bytes, so bytes written to the file
    /// later are not seen through it; a file that shrinks is (see `mappedBytesReadable`). Nil when
    /// the file is shorter, or on an injected failure.
    func mapFile(fd: Int32, length: Int) -> UnsafeRawPointer? {
        guard case .file(let f)? = nodes[fd], let file = files[f.path], file.bytes.count >= length else { return nil }
        if chance(faults.mapFailurePercent, "map ENOMEM") { return nil }
        let p = UnsafeMutableRawPointer.allocate(byteCount: length, alignment: 4096)
        file.bytes.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: length) }
        mappings[UnsafeRawPointer(p)] = (length, f.path)
        return UnsafeRawPointer(p)
    }

    func unmapped(_ base: UnsafeRawPointer) {
        mappings[base] = nil
        UnsafeMutableRawPointer(mutating: base).deallocate()
    }

    /// Live mappings: their length and the file they map.
    private var mappings: [UnsafeRawPointer: (length: Int, path: String)] = [:]
    private static let pageBytes = 4096

    /// How many of `piece`'s first bytes a send can copy: all of them, unless they lie in a
    /// mapping whose file has since shrunk. As the kernel does, the pages up to the file's new end
    /// stay readable and a page past it faults (the send fails with EFAULT if it copied nothing).
    private func mappedBytesReadable(_ piece: UnsafeRawBufferPointer) -> Int {
        guard let start = piece.baseAddress, !mappings.isEmpty else { return piece.count }
        for (base, m) in mappings where start >= base && start < base + m.length {
            let size = files[m.path]?.bytes.count ?? 0
            let readableEnd = (size + Self.pageBytes - 1) / Self.pageBytes * Self.pageBytes
            return max(0, min(piece.count, readableEnd - (start - base)))
        }
        return piece.count
    }

    /// Residency checks asked (each one a `mincore` on the kernel).
    public private(set) var residencyChecks = 0

    func pagesResident() -> Bool {
        residencyChecks += 1
        return !chance(faults.pageCacheMissPercent, "pages not resident")
    }

    // MARK: operations


    struct Completion { var at: Int64; var sequence: Int; var data: UInt64; var result: Int32; var more: Bool }

    /// Operations that wait for something outside (bytes, a connection, time).
    private var waiting: [(operation: Operation, data: UInt64)] = []
    private var scheduled: [Completion] = []
    private var sequence = 0

    /// Operations submitted and not yet completed (multishot accepts count while armed).
    public var operationsInFlight: Int { waiting.count + scheduled.count }
    /// The in-flight operations, described (for a failing run's report).
    public var inFlightDescription: String { waiting.map { "\($0.operation) data=\($0.data)" }.joined(separator: "; ") }

    func submit(_ operation: Operation, _ data: UInt64) {
        switch operation {
        case .accept, .recv, .send, .timeout, .eventfdRead:
            waiting.append((operation, data))
        default:
            perform(operation, data)
        }
    }

    private func complete(_ data: UInt64, _ result: Int32, more: Bool = false) {
        let delay = faults.delayMicrosecondsMax > 0 ? Int64(random.next(below: faults.delayMicrosecondsMax + 1)) : 0
        sequence += 1
        scheduled.append(
            Completion(at: nowMicroseconds + delay, sequence: sequence, data: data, result: result, more: more))
    }

    private func chance(_ percent: Int, _ kind: String) -> Bool {
        guard percent > 0, random.next(below: 100) < percent else { return false }
        injected[kind, default: 0] += 1
        return true
    }

    private func perform(_ operation: Operation, _ data: UInt64) {
        switch operation {
        case .read(let fd, let buffer, let length, let offset):
            guard case .file(let f)? = nodes[fd], let file = files[f.path] else {
                return complete(data, Errno.badDescriptor.result)
            }
            fileReads += 1
            if chance(faults.readFailurePercent, "read EIO") { return complete(data, Errno.io.result) }
            let n = max(0, min(length, file.bytes.count - offset))
            if n > 0 { file.bytes.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress! + offset, byteCount: n) } }
            complete(data, Int32(n))
        case .write(let fd, let buffer, let length, let offset):
            switch nodes[fd] {
            case .sink(let s)?:
                s.bytes += UnsafeRawBufferPointer(start: buffer, count: length)
                complete(data, Int32(length))
            case .file(let f)?:
                if chance(faults.diskFailurePercent, "write ENOSPC") { return complete(data, Errno.noSpace.result) }
                var file = files[f.path] ?? File(bytes: [])
                let at = Int(offset)
                if file.bytes.count < at + length {
                    file.bytes += [UInt8](repeating: 0, count: at + length - file.bytes.count)
                }
                file.bytes.withUnsafeMutableBytes { ($0.baseAddress! + at).copyMemory(from: buffer, byteCount: length) }
                files[f.path] = file
                complete(data, Int32(length))
            default:
                complete(data, Errno.badDescriptor.result)
            }
        case .openRead(let path):
            guard files[path] != nil else { return complete(data, Errno.noEntry.result) }
            complete(data, allocate(.file(OpenFile(path: path))))
        case .openCreate(let path):
            if chance(faults.diskFailurePercent, "open ENOSPC") { return complete(data, Errno.noSpace.result) }
            files[path] = File(bytes: [], mtimeSeconds: wallMilliseconds / 1000)
            complete(data, allocate(.file(OpenFile(path: path))))
        case .statx(let fd, let buffer):
            guard case .file(let f)? = nodes[fd], let file = files[f.path] else {
                return complete(data, Errno.badDescriptor.result)
            }
            let st = buffer.assumingMemoryBound(to: statx.self)
            st.pointee = statx()
            st.pointee.stx_mode = UInt16(0o100644)   // S_IFREG
            st.pointee.stx_size = UInt64(file.bytes.count)
            st.pointee.stx_mtime.tv_sec = file.mtimeSeconds
            complete(data, 0)
        case .fsync(let fd):
            guard case .file? = nodes[fd] else { return complete(data, Errno.badDescriptor.result) }
            complete(data, chance(faults.diskFailurePercent, "fsync EIO") ? Errno.io.result : 0)
        case .rename(let from, let to):
            guard let file = files[from] else { return complete(data, Errno.noEntry.result) }
            if chance(faults.diskFailurePercent, "rename EIO") { return complete(data, Errno.io.result) }
            files[to] = file
            files[from] = nil
            complete(data, 0)
        case .unlink(let path):
            complete(data, files.removeValue(forKey: path) == nil ? Errno.noEntry.result : 0)
        case .socket:
            complete(data, allocate(.socket(nil)))
        case .connect(let fd, let port):
            guard case .socket(nil)? = nodes[fd] else { return complete(data, Errno.badDescriptor.result) }
            guard let behaviour = behaviours[port] else { return complete(data, Errno.connectionRefused.result) }
            let pipe = Pipe(address: "origin:\(port)")
            let peer = Peer(pipe: pipe)
            pipe.peer = peer
            pipe.behaviour = behaviour
            nodes[fd] = .socket(pipe)
            behaviour.accepted(peer)   // the behaviour keeps the peer for as long as it serves it
            complete(data, 0)
        case .message(let ringFD, let messageData, let result):
            precondition(ringFD == self.ringFD, "a simulated ring can message only itself")
            complete(messageData, result)
        case .close(let fd):
            guard let node = nodes.removeValue(forKey: fd) else { return complete(data, Errno.badDescriptor.result) }
            if case .socket(let p?) = node { p.serverClosed = true }
            complete(data, 0)
        case .shutdownClose(let fd):
            guard let node = nodes[fd] else { return complete(data, Errno.badDescriptor.result) }
            if case .socket(let p?) = node { p.serverClosed = true }
            // The shutdown wakes what is parked on the socket: a recv reads end-of-stream, a send fails.
            finishWaiting(on: fd) { op in
                if case .recv = op { return 0 }
                if case .send = op { return Errno.brokenPipe.result }
                return nil
            }
            nodes[fd] = nil
            complete(data, 0)
        case .cancel(let fd):
            let count = finishWaiting(on: fd) { _ in Errno.cancelled.result }
            complete(data, count > 0 ? Int32(count) : Errno.noEntry.result)
        case .accept, .recv, .send, .timeout, .eventfdRead:
            preconditionFailure("waiting operations are not performed at once")
        }
    }

    /// Completes the waiting operations on `fd` for which `result` gives a value.
    @discardableResult
    private func finishWaiting(on fd: Int32, _ result: (Operation) -> Int32?) -> Int {
        var count = 0
        waiting.removeAll { entry in
            guard entry.operation.fd == fd, let r = result(entry.operation) else { return false }
            complete(entry.data, r)
            count += 1
            return true
        }
        return count
    }

    /// Completes every waiting operation that can complete now; true when one did.
    @discardableResult
    private func progressWaiting() -> Bool {
        var progressed = false
        var still: [(operation: Operation, data: UInt64)] = []
        let list = waiting
        waiting = []
        for entry in list {
            if progress(entry.operation, entry.data) { progressed = true } else { still.append(entry) }
        }
        waiting = still + waiting   // operations submitted meanwhile (by a behaviour) keep their order
        return progressed
    }

    private func progress(_ operation: Operation, _ data: UInt64) -> Bool {
        switch operation {
        case .timeout(let deadline):
            guard nowMicroseconds >= deadline else { return false }
            complete(data, Errno.timerExpired.result)
            return true
        case .eventfdRead(let fd, let value):
            guard case .eventfd(let e)? = nodes[fd], e.count > 0 else { return false }
            value.pointee = e.count
            e.count = 0
            complete(data, 8)
            return true
        case .accept(let fd):
            guard case .listener(let l)? = nodes[fd], !l.pending.isEmpty else { return false }
            for pipe in l.pending { complete(data, allocate(.socket(pipe)), more: true) }
            l.pending.removeAll()
            waiting.append((operation, data))   // multishot: stays armed
            return true
        case .recv(let fd, let buffer, let length):
            guard case .socket(let p?)? = nodes[fd] else { complete(data, Errno.badDescriptor.result); return true }
            if p.reset { complete(data, Errno.connectionReset.result); return true }
            if p.toServer.isEmpty {
                guard p.clientClosed else { return false }
                complete(data, 0)
                return true
            }
            if chance(faults.retryPercent, "recv retry") {
                complete(
                    data, [Errno.again.result, Errno.noBuffers.result, Errno.interrupted.result][random.next(below: 3)]);
                return true
            }
            if chance(faults.resetPercent, "recv reset") {
                p.reset = true; complete(data, Errno.connectionReset.result); return true
            }
            var n = min(length, p.toServer.count)
            if n > 1 && chance(faults.shortTransferPercent, "short recv") { n = 1 + random.next(below: n - 1) }
            p.toServer.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: n) }
            p.toServer.removeFirst(n)
            complete(data, Int32(n))
            return true
        case .send(let fd, let pieces):
            let length = pieces.reduce(0) { $0 + $1.count }
            guard case .socket(let p?)? = nodes[fd] else { complete(data, Errno.badDescriptor.result); return true }
            if p.reset { complete(data, Errno.connectionReset.result); return true }
            if p.clientClosed { complete(data, Errno.brokenPipe.result); return true }
            let room = p.windowBytes == Int.max ? length : p.windowBytes - p.toClient.count
            guard room > 0 else { return false }   // a zero window: the send waits for the reader
            if chance(faults.retryPercent, "send retry") {
                complete(
                    data, [Errno.again.result, Errno.noBuffers.result, Errno.interrupted.result][random.next(below: 3)]);
                return true
            }
            if chance(faults.resetPercent, "send reset") {
                p.reset = true; complete(data, Errno.brokenPipe.result); return true
            }
            var n = min(length, room)
            if n > 1 && chance(faults.shortTransferPercent, "short send") { n = 1 + random.next(below: n - 1) }
            var copyable = 0
            for piece in pieces {
                let readable = mappedBytesReadable(piece)
                copyable += readable
                if readable < piece.count { break }
            }
            if copyable == 0 && n > 0 { complete(data, Errno.badAddress.result); return true }
            n = min(n, copyable)
            var left = n
            for piece in pieces where left > 0 {
                let k = min(piece.count, left)
                p.toClient += UnsafeRawBufferPointer(rebasing: piece[0..<k])
                left -= k
            }
            complete(data, Int32(n))
            if let peer = p.peer { p.behaviour?.received(peer) }
            return true
        default:
            preconditionFailure("only waiting operations progress")
        }
    }

    /// Whether anything can complete without time passing beyond the next scheduled completion.
    public var hasWork: Bool {
        progressWaiting()
        return !scheduled.isEmpty
    }

    /// Moves the virtual clock forward (timeouts that fall due complete on the next wait).
    public func advance(microseconds: Int64) {
        precondition(microseconds >= 0, "time does not go back")
        nowMicroseconds += microseconds
    }

    /// The kernel's io_uring_submit_and_wait: completions ready now, or (when none are) the
    /// clock moved to the next thing that will complete. 0 only when nothing ever will.
    func submitAndWait(
        datas: UnsafeMutablePointer<UInt64>, results: UnsafeMutablePointer<Int32>,
        flags: UnsafeMutablePointer<UInt32>, max: Int
    ) -> Int {
        progressWaiting()
        if !scheduled.contains(where: { $0.at <= nowMicroseconds }) {
            let nextCompletion = scheduled.map(\.at).min()
            let nextTimeout = waiting.compactMap { entry -> Int64? in
                if case .timeout(let deadline) = entry.operation { return deadline }
                return nil
            }.min()
            guard let next = [nextCompletion, nextTimeout].compactMap({ $0 }).min() else { return 0 }
            nowMicroseconds = Swift.max(nowMicroseconds, next)
            progressWaiting()
        }
        let ready = scheduled.filter { $0.at <= nowMicroseconds }.sorted { ($0.at, $0.sequence) < ($1.at, $1.sequence) }
            .prefix(max)
        let taken = Set(ready.map(\.sequence))
        scheduled.removeAll { taken.contains($0.sequence) }
        for (i, c) in ready.enumerated() {
            datas[i] = c.data
            results[i] = c.result
            flags[i] = c.more ? 2 : 0   // IORING_CQE_F_MORE
        }
        return ready.count
    }
}
