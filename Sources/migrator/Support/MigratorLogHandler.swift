import Foundation
import Logging
import Postgres

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
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
            line = String(decoding: data, as: UTF8.self)
        }
        FileHandle.standardError.write(Data((redactor.redact(line) + "\n").utf8))
    }

    static func quoted(_ value: String) -> String {
        value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0 == "\n" })
            ? "\"" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n") + "\""
            : value
    }
}
