import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Small text helpers that the library modules would otherwise take from full Foundation: they import at most
// FoundationEssentials, so that they stay free of ICU (today `serve`'s Hummingbird links full Foundation into the
// binary anyway; a binary without the daemon would not need it).

extension StringProtocol {
    /// The text without leading and trailing white space and newlines.
    public func trimmingWhitespace() -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })!
        return String(String.UnicodeScalarView(scalars[first...last]))
    }

    /// Left-aligned in a column of `width` characters.
    public func padded(to width: Int) -> String {
        count >= width ? String(self) : String(self) + String(repeating: " ", count: width - count)
    }
}

public enum TextFormat {
    /// Lowercase hex digits of bytes, e.g. a SHA-256 digest.
    public static func hex<Bytes: Sequence<UInt8>>(_ bytes: Bytes) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var output: [UInt8] = []
        for byte in bytes {
            output.append(digits[Int(byte >> 4)])
            output.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// A JSON string literal of `string`: `"`, `\`, newline, return and tab escaped by name, other control
    /// characters as `\u00XX`, everything else as it is. The role catalogue's canonical form (whose SHA-256 is its
    /// version) is written with it, so its output must not change.
    public static func jsonQuoted(_ string: String) -> String {
        var text = "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": text += "\\\""
            case "\\": text += "\\\\"
            case "\n": text += "\\n"
            case "\r": text += "\\r"
            case "\t": text += "\\t"
            case _ where scalar.value < 0x20: text += "\\u00" + hex([UInt8(scalar.value)])
            default: text.unicodeScalars.append(scalar)
            }
        }
        return text + "\""
    }

    /// A number with a fixed count of decimals, e.g. `fixed(3.14159, 1)` → `3.1`.
    public static func fixed(_ value: Double, _ decimals: Int) -> String {
        guard value.isFinite else { return "\(value)" }
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let scaled = (abs(value) * scale).rounded()
        let whole = Int(scaled / scale)
        var text = (value < 0 && scaled > 0 ? "-" : "") + String(whole)
        if decimals > 0 {
            let fraction = String(Int(scaled) - whole * Int(scale))
            text += "." + String(repeating: "0", count: decimals - fraction.count) + fraction
        }
        return text
    }
}

/// Writes to standard error, unbuffered (logs and error messages).
public func writeStandardError(_ text: String) {
    writeAll(2, text)
}

/// Writes to standard output, unbuffered, so it interleaves with standard error in the order it was written.
public func writeStandardOutput(_ text: String) {
    if !writeAll(1, text) { StandardOutput.failure.withLock { $0 = $0 ?? errno } }
}

/// Whether writing to standard output failed (a full disk, a closed pipe): the CLI then exits with an error
/// instead of claiming success with output that never arrived.
public enum StandardOutput {
    static let failure = Mutex<Int32?>(nil)

    /// The errno of the first failed write, nil when every write succeeded.
    public static var failedWith: Int32? { failure.withLock { $0 } }
}

@discardableResult
private func writeAll(_ descriptor: Int32, _ text: String) -> Bool {
    var bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let written = bytes.withUnsafeMutableBytes { buffer in
            write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
        }
        if written < 0 {
            if errno == EINTR { continue }
            return false
        }
        offset += written
    }
    return true
}

extension Duration {
    /// The duration in seconds, for reports and sleeps.
    public var seconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }

    public var milliseconds: Double { seconds * 1000 }
}
