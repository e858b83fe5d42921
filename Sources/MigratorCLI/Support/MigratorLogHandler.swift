import FoundationEssentials
import Logging
import Postgres
import SystemSupport

enum LogFormat: String {
    case text, json
}

/// Writes one line per event to standard error, as text or JSON, with secrets removed.
struct MigratorLogHandler: LogHandler {
    let label: String
    let format: LogFormat
    let redactor: Redactor
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    init(label: String, format: LogFormat, redactor: Redactor) {
        self.label = label
        self.format = format
        self.redactor = redactor
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        let timestamp = Date().formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
        let line: String
        switch format {
        case .text:
            let fields = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\(Self.quoted("\($0.value)"))" }
            line = ([timestamp, event.level.rawValue, "\(event.message)"] + fields).joined(separator: " ")
        case .json:
            var object: [String: String] = ["ts": timestamp, "level": event.level.rawValue, "msg": "\(event.message)"]
            for (key, value) in merged { object[key] = "\(value)" }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            line = String(decoding: (try? encoder.encode(object)) ?? Data("{}".utf8), as: UTF8.self)
        }
        writeStandardError(redactor.redact(line) + "\n")
    }

    static func quoted(_ value: String) -> String {
        value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0 == "\n" })
            ? "\"" + value.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"").replacing("\n", with: "\\n") + "\""
            : value
    }
}
