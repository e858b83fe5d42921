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
        return .milliseconds(Int64((value * multiplier * 1000).rounded()))
    }
}
