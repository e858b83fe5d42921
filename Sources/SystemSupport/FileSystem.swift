#if canImport(Glibc)
import Glibc
#endif

/// The few file-system calls migrator needs, straight to the C library.
public enum FileSystem {
    /// `other`: a FIFO, socket or device, which a reader could block on forever or read without end.
    public enum Kind: Sendable { case file, directory, other, missing }

    /// What a path is, following symbolic links.
    public static func kind(_ path: String) -> Kind {
        var info = stat()
        guard stat(path, &info) == 0 else { return .missing }
        switch info.st_mode & S_IFMT {
        case S_IFDIR: return .directory
        case S_IFREG: return .file
        default: return .other
        }
    }

    /// The names in a folder, without `.` and `..`.
    public static func list(_ path: String) -> [String]? {
        guard let directory = opendir(path) else { return nil }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// The whole file, or nil with errno set.
    /// - Parameter maxBytes: a file larger than this is not read (errno EFBIG), so a huge file costs no memory.
    public static func readFile(_ path: String, maxBytes: Int = .max) -> [UInt8]? {
        // O_NONBLOCK: opening a FIFO would otherwise wait for a writer; it changes nothing for a regular file.
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { return nil }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            errno = EISDIR
            return nil
        }
        if (info.st_mode & S_IFMT) != S_IFREG {
            errno = EINVAL
            return nil
        }
        if Int(info.st_size) > maxBytes {
            errno = EFBIG
            return nil
        }
        var bytes = [UInt8](repeating: 0, count: max(Int(info.st_size), 0))
        var filled = 0
        while true {
            if filled == bytes.count { bytes.append(contentsOf: repeatElement(0, count: max(4096, bytes.count))) }
            let count = bytes.withUnsafeMutableBytes { buffer in
                read(descriptor, buffer.baseAddress! + filled, buffer.count - filled)
            }
            if count < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if count == 0 { break }
            filled += count
        }
        bytes.removeSubrange(filled...)
        return bytes
    }

    /// Everything on standard input up to its end, or nil with errno set (EFBIG past `maxBytes`, without reading
    /// further).
    public static func readStandardInput(maxBytes: Int = .max) -> [UInt8]? {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { buffer in read(0, buffer.baseAddress!, buffer.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if count == 0 { return bytes }
            bytes += chunk[0..<count]
            if bytes.count > maxBytes {
                errno = EFBIG
                return nil
            }
        }
    }

    /// Whether the last readFile failed because the file was larger than its maxBytes.
    public static var lastErrorWasTooLarge: Bool { errno == EFBIG }

    public static func lastError() -> String {
        String(cString: strerror(errno))
    }
}
