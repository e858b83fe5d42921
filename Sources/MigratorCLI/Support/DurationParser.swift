import FoundationEssentials
import SystemSupport

/// Parses the durations the options take: `300` or `300s`, `1500ms`, `5m` / `5min`, `1h`, `0`.
enum DurationParser {
    static func parse(_ text: String) -> Duration? {
        let trimmed = text.trimmingWhitespace().lowercased()
        let digits = trimmed.prefix { $0.isNumber || $0 == "." }
        let unit = trimmed.dropFirst(digits.count).trimmingWhitespace()
        guard !digits.isEmpty, let value = Double(digits), value >= 0, value.isFinite else { return nil }
        let multiplier: Double
        switch unit {
        case "ms": multiplier = 0.001
        case "", "s", "sec": multiplier = 1
        case "m", "min": multiplier = 60
        case "h": multiplier = 3600
        default: return nil
        }
        // Microseconds, so that 0.5ms stays a timeout; far beyond any timeout (a century) is refused, not trapped on.
        let microseconds = (value * multiplier * 1_000_000).rounded()
        guard microseconds <= 100 * 365 * 24 * 3600 * 1_000_000 else { return nil }
        return .microseconds(Int64(microseconds))
    }
}
