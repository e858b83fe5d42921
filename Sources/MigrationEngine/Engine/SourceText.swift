/// A file's text indexed by line, to turn a server's character position into `line:column` and show the line with
/// a caret under the column, the way a compiler does.
struct SourceText {
    private let scalars: [Unicode.Scalar]
    /// Scalar offset at which each line starts.
    private let lineStarts: [Int]

    init(_ text: String) {
        scalars = Array(text.unicodeScalars)
        var starts = [0]
        for (index, scalar) in scalars.enumerated() where scalar == "\n" { starts.append(index + 1) }
        lineStarts = starts
    }

    /// 1-based line and column of a 0-based scalar offset (PostgreSQL counts positions in characters).
    func location(ofOffset offset: Int) -> (line: Int, column: Int) {
        let clamped = max(0, min(offset, scalars.count))
        var low = 0
        var high = lineStarts.count - 1
        while low < high {
            let middle = (low + high + 1) / 2
            if lineStarts[middle] <= clamped { low = middle } else { high = middle - 1 }
        }
        return (low + 1, clamped - lineStarts[low] + 1)
    }

    func line(_ number: Int) -> String {
        guard number >= 1, number <= lineStarts.count else { return "" }
        let start = lineStarts[number - 1]
        let end = number < lineStarts.count ? lineStarts[number] - 1 : scalars.count
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars[start..<max(start, end)])
        return String(view)
    }

    /// ```
    ///    12 | CREATE INDEX ON sites (name);
    ///       |                 ^
    /// ```
    func excerpt(line number: Int, column: Int) -> String {
        let text = line(number)
        let gutter = String(number)
        let pad = String(repeating: " ", count: max(4, gutter.count + 1))
        let lead = String(repeating: " ", count: pad.count - gutter.count) + gutter
        // Keep tabs in the caret line so the caret sits under the column in any terminal.
        let prefix = text.unicodeScalars.prefix(max(0, column - 1)).map { $0 == "\t" ? "\t" : " " }.joined()
        return "\(lead) | \(text)\n\(pad) | \(prefix)^"
    }
}
