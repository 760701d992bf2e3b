import EdgeHTTP

/// The worker is how content sources reach the front ends (see `ContentDelivery`).
extension Worker: ContentDelivery {
    func waitingExchange(_ waiter: BodyOwner) -> (Connection, Exchange)? {
        let c = connections[Int(waiter.connectionSlot)]
        guard c.isCurrent(waiter.generation) else { return nil }
        let ex: Exchange? = waiter.streamID == 0 ? c.exchange : c.h2?.exchanges[waiter.streamID]
        guard let ex, !ex.responded else { return nil }
        return (c, ex)
    }

    func deliver(_ c: Connection, _ ex: Exchange, _ answer: ContentAnswer) {
        switch answer {
        case .respond(let r): respond(c, ex, status: r.status, headers: r.headers, contentLength: r.contentLength, body: r.body)
        case let .text(status, text, headers): respondSimple(c, ex, status: status, body: text, extraHeaders: headers)
        case .waiting: return
        }
        pump(c)
    }

    func resume(_ body: BodyStream) { resumeBody(body) }

    func finish(_ body: BodyStream) { finishBody(body) }

    func logError(_ text: String) {
        errorLog.line(text, wallMilliseconds: ring.wallMilliseconds())
    }
}
