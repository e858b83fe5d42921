/// A file's text indexed by line, to turn a server's character position into `line:column` and give that line's
/// text (the CLI shows it with a caret under the column, the way a compiler does).
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
}

extension MigrationFile {
    /// A place in this file, with the line's text for the caret excerpt.
    func location(line: Int, column: Int) -> SourceLocation {
        SourceLocation(file: displayPath, line: line, column: column, lineText: SourceText(content).line(line))
    }

    /// The place of a 0-based UTF-8 byte offset in this file (what PostgreSQL's parser reports as a location).
    public func location(ofUTF8Offset offset: Int) -> SourceLocation {
        let utf8 = content.utf8
        let end = utf8.index(utf8.startIndex, offsetBy: max(0, min(offset, utf8.count)))
        return location(ofOffset: content.unicodeScalars[..<end].count)
    }

    /// The place of a 0-based scalar offset in this file.
    public func location(ofOffset offset: Int) -> SourceLocation {
        let source = SourceText(content)
        let (line, column) = source.location(ofOffset: offset)
        return SourceLocation(file: displayPath, line: line, column: column, lineText: source.line(line))
    }
}
