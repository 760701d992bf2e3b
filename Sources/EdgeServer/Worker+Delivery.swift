import EdgeHTTP

/// The worker is how content sources reach the front ends (see `ContentDelivery`).
extension Worker: ContentDelivery {
    func waitingExchange(_ waiter: BodyOwner) -> (Connection, Exchange)? {
        let c = connections[Int(waiter.connectionSlot)]
        guard c.isCurrent(waiter.generation) else { return nil }
        let ex: Exchange?
        switch c.frontEnd {
        case .http1(let h1): ex = h1.exchange(streamID: waiter.streamID)
        case .http2(let h2): ex = h2.exchange(streamID: waiter.streamID)
        case .undecided: ex = nil
        }
        guard let ex, !ex.responded else { return nil }
        return (c, ex)
    }

    /// A later answer runs outside any nghttp2 callback, so it is sent at once.
    func deliver(_ c: Connection, _ ex: Exchange, _ answer: ContentAnswer) {
        if case .waiting = answer { return }
        apply(answer, c, ex)
        pump(c)
    }

    func resume(_ body: BodyStream) { resumeBody(body) }

    func finish(_ body: BodyStream) { finishBody(body) }

    func logError(_ text: String) {
        errorLog.line(text, wallMilliseconds: ring.wallMilliseconds())
    }
}
