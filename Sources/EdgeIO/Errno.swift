/// An error number from a completion (the kernel reports `-errno` in the result). Named, so no
/// caller compares against a bare `-104`.
public struct Errno: Equatable, Hashable, CustomStringConvertible, Sendable {
    public let code: Int32
    public init(_ code: Int32) { self.code = code }

    public static let noEntry = Errno(2)   // ENOENT
    public static let interrupted = Errno(4)   // EINTR
    public static let io = Errno(5)   // EIO
    public static let badDescriptor = Errno(9)   // EBADF
    public static let again = Errno(11)   // EAGAIN
    public static let noMemory = Errno(12)   // ENOMEM
    public static let badAddress = Errno(14)   // EFAULT
    public static let busy = Errno(16)   // EBUSY
    public static let invalid = Errno(22)   // EINVAL
    public static let noSpace = Errno(28)   // ENOSPC
    public static let brokenPipe = Errno(32)   // EPIPE
    public static let timerExpired = Errno(62)   // ETIME
    public static let connectionReset = Errno(104)   // ECONNRESET
    public static let noBuffers = Errno(105)   // ENOBUFS
    public static let connectionRefused = Errno(111)   // ECONNREFUSED
    public static let cancelled = Errno(125)   // ECANCELED

    /// The value a completion carries for this error.
    public var result: Int32 { -code }

    /// Worth the same operation again: nothing about the connection changed.
    public var isRetryable: Bool { self == .interrupted || self == .again || self == .noBuffers }

    /// Errors only a bug in this server can cause (a descriptor it closed or never had, a buffer
    /// pointer the kernel cannot use): never a peer's doing, so never handled like one.
    public var isServerBug: Bool { self == .badDescriptor || self == .badAddress }

    public var description: String {
        switch self {
        case .noEntry: return "ENOENT"
        case .interrupted: return "EINTR"
        case .io: return "EIO"
        case .badDescriptor: return "EBADF"
        case .again: return "EAGAIN"
        case .noMemory: return "ENOMEM"
        case .badAddress: return "EFAULT"
        case .busy: return "EBUSY"
        case .invalid: return "EINVAL"
        case .noSpace: return "ENOSPC"
        case .brokenPipe: return "EPIPE"
        case .timerExpired: return "ETIME"
        case .connectionReset: return "ECONNRESET"
        case .noBuffers: return "ENOBUFS"
        case .connectionRefused: return "ECONNREFUSED"
        case .cancelled: return "ECANCELED"
        default: return "errno \(code)"
        }
    }
}

/// What a socket receive or send completion means, one case per way the caller must react.
public enum TransferOutcome: Equatable {
    /// `n` bytes moved (a send may move fewer than asked; a receive never reports 0 here).
    case bytes(Int)
    /// The peer closed its side (a receive read end-of-stream).
    case peerClosed
    /// Nothing happened; submit the same operation again.
    case retry
    /// The connection is gone (ECONNRESET, EPIPE, ...).
    case failed(Errno)

    /// Reads a receive's completion result. Traps on errors that mean a bug in the server.
    public init(receiveResult result: Int32) {
        if result > 0 { self = .bytes(Int(result)); return }
        if result == 0 { self = .peerClosed; return }
        self.init(error: Errno(-result), operation: "recv")
    }

    /// Reads a send's completion result. Traps on errors that mean a bug in the server.
    public init(sendResult result: Int32) {
        if result >= 0 { self = .bytes(Int(result)); return }
        self.init(error: Errno(-result), operation: "send")
    }

    private init(error: Errno, operation: String) {
        precondition(
            !error.isServerBug,
            "\(operation) failed with \(error): the server used a descriptor or buffer it does not own")
        self = error.isRetryable ? .retry : .failed(error)
    }
}
