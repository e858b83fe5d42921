/// PostgreSQL's binary COPY format (`COPY … TO STDOUT (FORMAT binary)`), read into rows of fields, and each field
/// turned into the text the server would have printed for it, so that rows read this way decode as ``Row``s.
///
/// A `COPY table (columns) TO STDOUT` is not planned: on a new server process it reads the table without opening
/// its indexes or statistics, which a SELECT's planner does. Only the types a caller names are understood; a field
/// whose bytes do not fit its type is a ``BinaryCopy/Malformed`` error, never a guess.
public enum BinaryCopy {
    /// The types ``textRows(_:types:)`` turns into text.
    public enum FieldType: Sendable {
        case int8, int4, bool, float8, text, timestamptzUTC, textArray
    }

    public struct Malformed: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    private static let signature: [UInt8] = Array("PGCOPY\n".utf8) + [0xFF, 0x0D, 0x0A, 0x00]

    /// The rows of a binary COPY stream: each field's bytes, nil for NULL.
    public static func rows(_ data: [UInt8]) throws(Malformed) -> [[ArraySlice<UInt8>?]] {
        var reader = Reader(bytes: data[...])
        guard try reader.take(signature.count).elementsEqual(signature) else {
            throw Malformed(description: "the binary COPY stream has no PGCOPY signature")
        }
        _ = try reader.int32()
        let extensionLength = try reader.int32()
        guard extensionLength >= 0 else { throw Malformed(description: "negative header extension length") }
        _ = try reader.take(Int(extensionLength))
        var rows: [[ArraySlice<UInt8>?]] = []
        while true {
            let count = try reader.int16()
            if count == -1 { break }
            guard count >= 0 else { throw Malformed(description: "negative field count \(count)") }
            var fields: [ArraySlice<UInt8>?] = []
            fields.reserveCapacity(Int(count))
            for _ in 0..<count { fields.append(try reader.field()) }
            rows.append(fields)
        }
        guard reader.bytes.isEmpty else { throw Malformed(description: "\(reader.bytes.count) bytes after the trailer") }
        return rows
    }

    /// The rows with every field in PostgreSQL's text format, as a SELECT of the same columns prints it
    /// (`timestamptzUTC`: as `to_char(value AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`, NULL for infinity).
    public static func textRows(_ data: [UInt8], types: [FieldType]) throws(Malformed) -> [[String?]] {
        var result: [[String?]] = []
        for (index, fields) in try rows(data).enumerated() {
            guard fields.count == types.count else {
                throw Malformed(description: "row \(index + 1) has \(fields.count) fields, not \(types.count)")
            }
            var values: [String?] = []
            values.reserveCapacity(fields.count)
            for (field, type) in zip(fields, types) {
                guard let field else {
                    values.append(nil)
                    continue
                }
                values.append(try text(field, type))
            }
            result.append(values)
        }
        return result
    }

    static func text(_ field: ArraySlice<UInt8>, _ type: FieldType) throws(Malformed) -> String? {
        var reader = Reader(bytes: field)
        func whole<T>(_ value: T) throws(Malformed) -> T {
            guard reader.bytes.isEmpty else { throw Malformed(description: "a \(type) field of \(field.count) bytes") }
            return value
        }
        switch type {
        case .int8: return String(try whole(reader.int64()))
        case .int4: return String(try whole(reader.int32()))
        case .bool: return try whole(reader.take(1).first!) == 0 ? "f" : "t"
        case .float8:
            let value = try whole(Double(bitPattern: UInt64(bitPattern: reader.int64())))
            if value.isNaN { return "NaN" }
            if value.isInfinite { return value < 0 ? "-Infinity" : "Infinity" }
            return String(value)
        case .text: return String(decoding: field, as: UTF8.self)
        case .timestamptzUTC: return timestamp(try whole(reader.int64()))
        case .textArray:
            let dimensions = try reader.int32()
            _ = try reader.int32()
            _ = try reader.int32()
            if dimensions == 0 { return try whole("{}") }
            guard dimensions == 1 else { throw Malformed(description: "an array of \(dimensions) dimensions") }
            let count = try reader.int32()
            _ = try reader.int32()
            guard count >= 0 else { throw Malformed(description: "an array of \(count) elements") }
            var elements: [String?] = []
            for _ in 0..<count { elements.append(try reader.field().map { String(decoding: $0, as: UTF8.self) }) }
            return try whole(PostgresArray.literal(elements))
        }
    }

    /// Microseconds since 2000-01-01 00:00:00 UTC as `YYYY-MM-DDTHH:MM:SS.mmmZ` (milliseconds truncated, as
    /// `to_char`'s `MS`); nil for ±infinity, which `to_char` prints as NULL.
    static func timestamp(_ microseconds: Int64) -> String? {
        guard microseconds != .max, microseconds != .min else { return nil }
        let perDay: Int64 = 86_400_000_000
        var days = microseconds / perDay
        var ofDay = microseconds % perDay
        if ofDay < 0 {
            ofDay += perDay
            days -= 1
        }
        // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
        let z = days + 10_957 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        let seconds = ofDay / 1_000_000
        func pad(_ value: Int64, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(seconds / 3600, 2)):\(pad(seconds / 60 % 60, 2)):"
            + "\(pad(seconds % 60, 2)).\(pad(ofDay % 1_000_000 / 1000, 3))Z"
    }

    private struct Reader {
        var bytes: ArraySlice<UInt8>

        mutating func take(_ count: Int) throws(Malformed) -> ArraySlice<UInt8> {
            guard count >= 0, bytes.count >= count else {
                throw Malformed(description: "the binary COPY stream ends early")
            }
            let taken = bytes.prefix(count)
            bytes = bytes.dropFirst(count)
            return taken
        }

        mutating func integer(_ width: Int) throws(Malformed) -> UInt64 {
            try take(width).reduce(0) { $0 << 8 | UInt64($1) }
        }

        /// A length-prefixed value (a field, an array element): nil for length -1, SQL's NULL.
        mutating func field() throws(Malformed) -> ArraySlice<UInt8>? {
            let length = try int32()
            if length == -1 { return nil }
            guard length >= 0 else { throw Malformed(description: "a value of negative length \(length)") }
            return try take(Int(length))
        }

        mutating func int16() throws(Malformed) -> Int16 { Int16(bitPattern: UInt16(try integer(2))) }
        mutating func int32() throws(Malformed) -> Int32 { Int32(bitPattern: UInt32(try integer(4))) }
        mutating func int64() throws(Malformed) -> Int64 { Int64(bitPattern: try integer(8)) }
    }
}
