import Hummingbird
import Prometheus

/// `/healthz`, `/readyz` and `/metrics`. They read what the worker published; none of them touches the database,
/// so a probe never adds a query.
enum HTTPEndpoints {
    static func router(state: DaemonState, registry: PrometheusCollectorRegistry) -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/healthz") { _, _ in
            text("ok\n", status: state.phase == .stopping ? .serviceUnavailable : .ok)
        }
        router.get("/readyz") { _, _ in
            let (ready, reason) = state.readiness
            let notice = state.notice.map { "note: \($0)\n" } ?? ""
            return text(ready ? "ready\n" + notice : "not ready: \(reason)\n", status: ready ? .ok : .serviceUnavailable)
        }
        router.get("/metrics") { _, _ in
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
        }
        return router
    }

    private static func text(_ body: String, status: HTTPResponse.Status) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; charset=utf-8"
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }
}
