/// What a completion belongs to: the 8-bit kind in `UserData`. The worker's loop routes each
/// completion by its kind to the owner of the operation (see `Worker.dispatch`).
enum OpKind {
    static let ignore: UInt8 = 0
    static let accept: UInt8 = 1
    static let recv: UInt8 = 2
    static let send: UInt8 = 3
    static let close: UInt8 = 4
    static let fileOpen: UInt8 = 5
    static let fileStat: UInt8 = 6
    static let fileRead: UInt8 = 7
    static let tick: UInt8 = 8
    static let wake: UInt8 = 9
    static let logWrite: UInt8 = 10
    static let originSocket: UInt8 = 12
    static let originConnect: UInt8 = 13
    static let originSend: UInt8 = 14
    static let originRecv: UInt8 = 15
    static let originClose: UInt8 = 16
    static let fillWake: UInt8 = 17
    static let diskWrite: UInt8 = 18
    static let cacheFileOpen: UInt8 = 19
    static let cacheFileStat: UInt8 = 20
    static let errorLogWrite: UInt8 = 21
    static let sliceUnlink: UInt8 = 22
    static let slicePromote: UInt8 = 23
}
