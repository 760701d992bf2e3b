import CEdgeRing
import CEdgeTLS
import Foundation
import Glibc
import EdgeConfig
import EdgeAuthToken

public struct StartupError: Error, CustomStringConvertible {
    public let description: String
    public init(description: String) { self.description = description }
}

/// Start-up and shutdown: listeners per worker (SO_REUSEPORT), the TLS context, the access log,
/// one thread per worker; the main thread waits for SIGTERM/SIGINT and wakes every worker's ring
/// through its eventfd so each drains and exits on its own.
public final class EdgeServer {
    let config: EdgeConfig
    let configPath: String?
    /// `configPath`: the file a reload (SIGHUP, the admin API) re-reads.
    public init(config: EdgeConfig, configPath: String? = nil) { self.config = config; self.configPath = configPath }

    /// What `--check` verifies beyond the file itself: the certificate and key load and match, the
    /// origin directory exists, the cache directory exists or can be created, the geo database opens
    /// and checks, the upstreams' host names resolve. Each problem names its key.
    public static func preflight(_ config: EdgeConfig) -> [String] {
        var problems: [String] = []
        if !config.server.listenTLS.isEmpty,
            case .failure(let e) = TLSServerContext.load(
                certificate: config.server.tlsCertificate, privateKey: config.server.tlsPrivateKey,
                http2: config.server.http2)
        {
            problems.append("server.tls_certificate / server.tls_private_key: " + e.reason)
        }
        var isDir: ObjCBool = false
        if let dir = config.origin.directory,
            !(FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) && isDir.boolValue)
        {
            problems.append("origin.urls: \(dir) is not a directory")
        }
        if !config.origin.upstreams.isEmpty {
            let dir = config.cache.directory
            let parent = (dir as NSString).deletingLastPathComponent
            if !FileManager.default.fileExists(atPath: dir)
                && !FileManager.default.isWritableFile(atPath: parent.isEmpty ? "." : parent)
            {
                problems.append("cache.dir: \(dir) does not exist and cannot be created")
            }
        }
        if !config.server.accessLog.isEmpty && config.server.accessLog != "-" {
            let parent = (config.server.accessLog as NSString).deletingLastPathComponent
            if !FileManager.default.isWritableFile(atPath: parent.isEmpty ? "." : parent) {
                problems.append("server.access_log: cannot write in \(parent)")
            }
        }
        do { _ = try GeoGate.open(config.geo) } catch { problems.append(error.description) }
        if let p = OriginTLS.problem(config.origin) { problems.append(p.description) }
        for u in config.origin.upstreams where !u.isIPLiteral {
            if case .failure(let why) = OriginResolver.resolve(u.host, port: u.port) {
                problems.append("origin.urls: \(u.url): \(u.host) does not resolve (\(why))")
            }
        }
        return problems
    }

    public var workerCount: Int { config.server.workers > 0 ? config.server.workers : Int(edge_online_cpus()) }

    /// Runs until a signal asks it to stop; returns when every worker has drained. `control` is
    /// called once the cache index is loaded and before the workers start (the admin API starts
    /// there, on its own threads).
    public func run(
        control startControl: (EdgeControl) throws -> Void = { _ in }, ready: (String) -> Void = { _ in }
    )
        throws
    {
        edge_block_signals()   // inherited by the worker threads: only the main thread takes signals
        let geo: GeoGate?
        do { geo = try GeoGate.open(config.geo) } catch { throw StartupError(description: error.description) }
        if let geo { printError("edge: geo: \(geo.database.summary)") }
        let router = Router(config.token, geo: geo)
        var tlsContext: TLSServerContext? = nil
        if !config.server.listenTLS.isEmpty {
            switch TLSServerContext.load(
                certificate: config.server.tlsCertificate, privateKey: config.server.tlsPrivateKey,
                http2: config.server.http2)
            {
            case .success(let ctx): tlsContext = ctx
            case .failure(let e): throw StartupError(description: "tls: " + e.reason)
            }
        }
        var logFD: Int32 = -1
        switch config.server.accessLog {
        case "": logFD = -1
        case "-": logFD = 1
        default:
            logFD = edge_open_append(config.server.accessLog)
            if logFD < 0 {
                throw StartupError(
                    description: "server.access_log: cannot open \(config.server.accessLog): errno \(-logFD)")
            }
        }
        var store: SliceStore? = nil
        if !config.origin.upstreams.isEmpty {
            let s = SliceStore(
                config: (
                    config.cache.directory, config.cache.sliceBytes, config.cache.fillsMax,
                    config.cache.ramBytesLimit, config.cache.diskBytesLimit
                ), objectBytesMax: config.cache.objectBytesMax, pinnedBytesMax: config.cache.pinnedBytesMax)
            let (adopted, dropped) = try SliceFile.rebuild(s, report: { printError("edge: \($0)") })
            printError(
                "edge: cache \(config.cache.directory): \(adopted) slices adopted, \(dropped) dropped (torn, unverifiable or over the limit)"
            )
            store = s
        }
        if let p = OriginTLS.problem(config.origin) { throw StartupError(description: p.description) }
        if config.origin.insecureSkipVerify && config.origin.upstreams.contains(where: \.tls) {
            printError("edge: origin.insecure_skip_verify: the origins' TLS certificates are NOT checked")
        }
        let directory = WorkerDirectory(workers: workerCount, signal: { _ = edge_eventfd_signal($0) })
        var resolver: OriginResolver? = nil
        if !config.origin.upstreams.isEmpty {
            // Names resolve before the first worker starts; later answers reach the workers by mail.
            let r = OriginResolver(
                log: { printError($0) },
                publish: { [count = workerCount] book in
                    for w in 0..<count { directory.post(.addresses(book), to: w, bounded: false) }
                })
            r.update(config.origin)
            r.start()
            resolver = r
        }
        let settings = WorkerSettings(
            config: config, router: router, tlsContext: tlsContext, accessLogFD: logFD,
            store: store, directory: directory, resolver: resolver)
        let control = EdgeControl(settings: settings, configPath: configPath)

        for a in config.server.listen + config.server.listenTLS {
            let rc = edge_address_free(a.host, Int32(a.port))
            if rc < 0 { throw StartupError(description: "cannot listen on \(a): \(String(cString: strerror(-rc)))") }
        }
        var plans: [WorkerPlan] = []

        for i in 0..<workerCount {
            var listeners: [Listener] = []
            for (addresses, tls) in [(config.server.listen, false), (config.server.listenTLS, true)] {
                for a in addresses {
                    let fd = edge_listen(a.host, Int32(a.port), Int32(config.limits.listenBacklog))
                    if fd < 0 {
                        throw StartupError(description: "cannot listen on \(a): \(String(cString: strerror(-fd)))")
                    }
                    listeners.append(Listener(fd: fd, isTLS: tls, armed: false))
                }
            }
            let wake = edge_eventfd_create()
            if wake < 0 { throw StartupError(description: "eventfd: errno \(-wake)") }

            plans.append(WorkerPlan(index: i, settings: settings, listeners: listeners, wakeFD: wake))
        }
        try startControl(control)
        var handles: [UInt64] = []
        for plan in plans {
            var h: UInt64 = 0
            let box = Unmanaged.passRetained(plan).toOpaque()
            // The ring is created on its own thread: with IORING_SETUP_SINGLE_ISSUER only the
            // creating task may submit to it.
            let rc = edge_thread_start(
                { arg in
                    let plan = Unmanaged<WorkerPlan>.fromOpaque(arg!).takeRetainedValue()
                    do {
                        try Worker(
                            index: plan.index, settings: plan.settings, listeners: plan.listeners, wakeFD: plan.wakeFD
                        ).run()
                    } catch {
                        printError("edge: worker \(plan.index): \(error) (is io_uring allowed here?)")
                        exit(1)
                    }
                    return nil
                }, box, &h)
            if rc != 0 { throw StartupError(description: "pthread_create: \(rc)") }
            handles.append(h)
        }
        let listenText = (config.server.listen.map { "http://\($0)" } + config.server.listenTLS.map { "https://\($0)" })
            .joined(separator: " ")
        ready("edge: \(workerCount) workers, listening on \(listenText)")
        var sig = edge_wait_signal()
        while sig == SIGHUP {
            // Log rotation: reopen the access log under its name.
            if logFD > 2 {
                let name = control.config.server.accessLog   // a reload may have renamed it
                let rc = edge_reopen_append(logFD, name)
                printError(
                    rc == 0 ? "edge: SIGHUP: reopened \(name)" : "edge: SIGHUP: cannot reopen \(name): errno \(-rc)")
            }
            Self.reload(control, trigger: "SIGHUP")
            sig = edge_wait_signal()
        }
        printError("edge: signal \(sig), draining (up to \(control.config.limits.drainTimeoutMilliseconds) ms)")
        control.draining.store(true, ordering: .releasing)
        settings.directory.requestStop()
        for h in handles { _ = edge_thread_join(h) }
        printError("edge: stopped")
    }
}

extension EdgeServer {
    /// A reload, logged: what applied, what needs a restart, or why the file was refused (then the
    /// running configuration keeps serving).
    @discardableResult
    public static func reload(_ control: EdgeControl, trigger: String) -> Result<EdgeControl.ReloadResult, Error> {
        do {
            let r = try control.reload()
            printError(
                "edge: \(trigger): configuration reloaded; applied: "
                    + (r.applied.isEmpty ? "nothing changed" : r.applied.joined(separator: ", "))
                    + (r.needsRestart.isEmpty
                        ? "" : "; changed but needs a restart (not applied): " + r.needsRestart.joined(separator: ", "))
            )
            return .success(r)
        } catch {
            printError("edge: \(trigger): configuration refused, the running one keeps serving: \(error)")
            return .failure(error)
        }
    }
}

final class WorkerPlan {
    let index: Int
    let settings: WorkerSettings
    let listeners: [Listener]
    let wakeFD: Int32
    init(index: Int, settings: WorkerSettings, listeners: [Listener], wakeFD: Int32) {
        self.index = index; self.settings = settings; self.listeners = listeners; self.wakeFD = wakeFD
    }
}
