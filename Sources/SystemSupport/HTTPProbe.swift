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

    /// GETs `path` from host:port; `timeout` seconds bound the whole request (resolving, connecting, sending and
    /// reading the answer), so a server that answers one byte at a time cannot keep it waiting.
    public static func get(host: String, port: Int, path: String, timeout: Double = 5) throws(Failure) -> Answer {
        let deadline = Deadline(seconds: timeout)
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else {
            throw Failure(description: "cannot resolve \(host): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(list) }
        let hostHeader = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        let late = Failure(description: "no complete answer from \(hostHeader) within \(Self.seconds(timeout))")
        var lastError = "no address"
        var candidate: UnsafeMutablePointer<addrinfo>? = first
        while let info = candidate {
            candidate = info.pointee.ai_next
            let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
            guard fd >= 0 else { lastError = String(cString: strerror(errno)); continue }
            defer { close(fd) }
            // Non-blocking, each wait bounded by what is left of the deadline.
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            if connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) != 0 {
                guard errno == EINPROGRESS else { lastError = String(cString: strerror(errno)); continue }
                guard try wait(fd, for: Int16(POLLOUT), until: deadline) else { throw late }
                var error: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
                guard error == 0 else { lastError = String(cString: strerror(error)); continue }
            }
            let request = Array("GET \(path) HTTP/1.0\r\nHost: \(hostHeader)\r\nUser-Agent: migrator-probe\r\nConnection: close\r\n\r\n".utf8)
            var sent = 0
            while sent < request.count {
                guard try wait(fd, for: Int16(POLLOUT), until: deadline) else { throw late }
                let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n < 0, errno == EAGAIN || errno == EINTR { continue }
                guard n > 0 else { throw Failure(description: "sending to \(hostHeader) failed: \(String(cString: strerror(errno)))") }
                sent += n
            }
            var response: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 16 * 1024)
            while true {
                guard try wait(fd, for: Int16(POLLIN), until: deadline) else { throw late }
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n == 0 { break }
                if n < 0, errno == EAGAIN || errno == EINTR { continue }
                guard n > 0 else { throw Failure(description: "reading from \(hostHeader) failed: \(String(cString: strerror(errno)))") }
                response += buffer[0..<n]
                if response.count > 64 * 1024 * 1024 { throw Failure(description: "the answer from \(hostHeader) is too large") }
            }
            return try parse(response, from: hostHeader)
        }
        throw Failure(description: "cannot connect to \(host):\(port): \(lastError)")
    }

    /// A point on the monotonic clock.
    struct Deadline {
        let end: Double
        init(seconds: Double) { end = Self.now() + seconds }
        var remainingMilliseconds: Int32 { Int32(clamping: Int(max(0, (end - Self.now()) * 1000).rounded(.up))) }
        static func now() -> Double {
            var time = timespec()
            clock_gettime(CLOCK_MONOTONIC, &time)
            return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
        }
    }

    /// Waits until `fd` is ready for `events` or the deadline passes (false).
    static func wait(_ fd: Int32, for events: Int16, until deadline: Deadline) throws(Failure) -> Bool {
        while true {
            let left = deadline.remainingMilliseconds
            guard left > 0 else { return false }
            var entry = pollfd(fd: fd, events: events, revents: 0)
            let ready = poll(&entry, 1, left)
            if ready > 0 { return true }
            if ready == 0 { return false }
            guard errno == EINTR else { throw Failure(description: "waiting for the socket failed: \(String(cString: strerror(errno)))") }
        }
    }

    static func seconds(_ value: Double) -> String {
        value == value.rounded() ? "\(Int(value)) s" : "\(value) s"
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
