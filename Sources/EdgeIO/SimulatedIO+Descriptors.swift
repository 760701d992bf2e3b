import CEdgeRing

/// What the simulated kernel holds: connections (`Pipe`, driven from the far end through `Peer`),
/// listeners, files, sinks, eventfds, and the operations a ring submits.
extension SimulatedIO {
    // MARK: descriptors

    /// A TCP connection: bytes each way and who closed what.
    final class Pipe {
        var toServer: [UInt8] = []
        var toClient: [UInt8] = []
        var clientClosed = false
        var serverClosed = false
        var reset = false
        /// The client's receive window: sends wait while this many bytes are unread.
        var windowBytes = Int.max
        weak var behaviour: (any PeerBehaviour)?
        /// The test (or origin behaviour) owns the peer; the peer owns the pipe.
        weak var peer: Peer?
        let address: String
        init(address: String) { self.address = address }
    }

    /// The far end of a simulated connection: a client of the server, or an origin's side of
    /// the server's origin connection.
    public final class Peer {
        public var address: String { pipe.address }
        let pipe: Pipe
        init(pipe: Pipe) { self.pipe = pipe }

        public func write(_ bytes: [UInt8]) {
            precondition(!pipe.clientClosed, "a peer wrote after closing")
            pipe.toServer += bytes
        }
        public func write(_ text: String) { write(Array(text.utf8)) }
        /// Everything the server sent and this peer has not taken yet.
        public func take() -> [UInt8] {
            defer { pipe.toClient.removeAll(keepingCapacity: true) }
            return pipe.toClient
        }
        public var unread: Int { pipe.toClient.count }
        /// FIN: the server reads end-of-stream once it has read what came before.
        public func close() { pipe.clientClosed = true }
        /// RST: the server's next operation on the socket fails.
        public func reset() { pipe.reset = true; pipe.clientClosed = true }
        public var closedByServer: Bool { pipe.serverClosed }
        public var wasReset: Bool { pipe.reset }
        /// Bytes the peer lets the server send before it reads (a slow or stalled reader).
        public var windowBytes: Int {
            get { pipe.windowBytes }
            set { pipe.windowBytes = newValue }
        }
    }

    /// An origin (or any server) the simulated server connects to: told when bytes arrive.
    public protocol PeerBehaviour: AnyObject {
        func accepted(_ peer: Peer)
        func received(_ peer: Peer)
    }

    final class Listener { var pending: [Pipe] = [] }
    final class OpenFile { let path: String; init(path: String) { self.path = path } }
    final class Sink { var bytes: [UInt8] = [] }
    final class EventFD { var count: UInt64 = 0 }

    public struct File {
        public var bytes: [UInt8]
        public var mtimeSeconds: Int64
        public init(bytes: [UInt8], mtimeSeconds: Int64 = 1_700_000_000) {
            self.bytes = bytes; self.mtimeSeconds = mtimeSeconds
        }
    }

    enum Operation {
        case accept(fd: Int32)
        case recv(fd: Int32, buffer: UnsafeMutableRawPointer, length: Int)
        /// A send, or a gathered one (sendmsg): its pieces in order.
        case send(fd: Int32, pieces: [UnsafeRawBufferPointer])
        case read(fd: Int32, buffer: UnsafeMutableRawPointer, length: Int, offset: Int)
        case write(fd: Int32, buffer: UnsafeRawPointer, length: Int, offset: UInt64)
        case openRead(path: String)
        case openCreate(path: String)
        case statx(fd: Int32, buffer: UnsafeMutableRawPointer)
        case socket
        case connect(fd: Int32, port: Int)
        case message(ringFD: Int32, data: UInt64, result: Int32)
        case close(fd: Int32)
        case shutdownClose(fd: Int32)
        case cancel(fd: Int32)
        case timeout(deadlineMicroseconds: Int64)
        case eventfdRead(fd: Int32, value: UnsafeMutablePointer<UInt64>)
        case fsync(fd: Int32)
        case rename(from: String, to: String)
        case unlink(path: String)

        var fd: Int32? {
            switch self {
            case .accept(let fd), .recv(let fd, _, _), .send(let fd, _), .read(let fd, _, _, _),
                .write(let fd, _, _, _),
                .statx(let fd, _), .connect(let fd, _), .close(let fd), .shutdownClose(let fd), .cancel(let fd),
                .eventfdRead(let fd, _), .fsync(let fd):
                return fd
            default:
                return nil
            }
        }
    }
}
