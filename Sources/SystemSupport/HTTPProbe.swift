#if canImport(Glibc)
import Glibc
#endif

/// A minimal HTTP/1.0 GET over a plain socket: enough for a container healthcheck (`migrator probe`) and for tests,
/// without an HTTP client library or curl in the runtime image.
public enum HTTPProbe {
    public struct Answer: Sendable {
        public var status: Int
        public var headers: [String: String]
        public var body: String
    }

    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// GETs `path` from host:port, waiting at most `timeout` seconds for each of connect, send and receive.
    public static func get(host: String, port: Int, path: String, timeout: Double = 5) throws(Failure) -> Answer {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else {
            throw Failure(description: "cannot resolve \(host): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(list) }
        var lastError = "no address"
        var candidate: UnsafeMutablePointer<addrinfo>? = first
        while let info = candidate {
            candidate = info.pointee.ai_next
            let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
            guard fd >= 0 else { lastError = String(cString: strerror(errno)); continue }
            defer { close(fd) }
            var limit = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            guard connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
                lastError = String(cString: strerror(errno))
                continue
            }
            let hostHeader = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            let request = Array("GET \(path) HTTP/1.0\r\nHost: \(hostHeader)\r\nUser-Agent: migrator-probe\r\nConnection: close\r\n\r\n".utf8)
            var sent = 0
            while sent < request.count {
                let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                guard n > 0 else { throw Failure(description: "sending to \(hostHeader) failed: \(String(cString: strerror(errno)))") }
                sent += n
            }
            var response: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 16 * 1024)
            while true {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n == 0 { break }
                guard n > 0 else { throw Failure(description: "reading from \(hostHeader) failed: \(String(cString: strerror(errno)))") }
                response += buffer[0..<n]
                if response.count > 64 * 1024 * 1024 { throw Failure(description: "the answer from \(hostHeader) is too large") }
            }
            return try parse(response, from: hostHeader)
        }
        throw Failure(description: "cannot connect to \(host):\(port): \(lastError)")
    }

    static func parse(_ bytes: [UInt8], from origin: String) throws(Failure) -> Answer {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let split = text.firstRange(of: "\r\n\r\n") else { throw Failure(description: "\(origin) sent no complete HTTP answer") }
        let head = text[..<split.lowerBound].split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusLine = head.first?.split(separator: " ") ?? []
        guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/"), let status = Int(statusLine[1]) else {
            throw Failure(description: "\(origin) sent no HTTP status line")
        }
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = String(line[line.index(after: colon)...]).trimmingWhitespace()
        }
        return Answer(status: status, headers: headers, body: String(text[split.upperBound...]))
    }
}
