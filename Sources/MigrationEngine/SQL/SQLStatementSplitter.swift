/// One statement of a migration file, with where it starts in the file.
///
/// Positions are kept so that an error PostgreSQL reports against a single statement
/// (it counts characters, i.e. unicode scalars) can be mapped back to the file.
public struct SQLStatement: Sendable, Equatable {
    /// The statement's exact source text: from its first character that is not whitespace or part of a comment
    /// preceding it, up to but excluding the terminating semicolon, with trailing whitespace removed.
    /// Comments inside the statement are kept verbatim.
    public var text: String
    /// Offset of `text`'s first unicode scalar in the source, 0-based, counted in unicode scalars.
    public var offset: Int
    /// 1-based line and column (column counted in unicode scalars) of `text`'s first scalar.
    public var line: Int
    public var column: Int

    /// The first `count` keywords/words of the statement, uppercased, skipping comments
    /// (e.g. ["CREATE", "INDEX"]; ["BEGIN"]; ["START", "TRANSACTION"]). Quoted identifiers and strings stop the scan.
    ///
    /// Only ASCII letters are uppercased, because that is all PostgreSQL folds when it
    /// matches keywords; anything else in a word is kept as written.
    /// Any token that is not a bare word (a string, a quoted identifier, punctuation)
    /// ends the scan, since what follows it can no longer be a statement's leading keyword.
    public func leadingWords(_ count: Int) -> [String] {
        guard count > 0 else { return [] }
        var text = self.text
        return text.withUTF8 { bytes in
            var words: [String] = []
            let n = bytes.count
            var i = 0
            while i < n && words.count < count {
                let c = bytes[i]
                if SQLLexing.isSpace(c) {
                    i += 1
                } else if c == .minus, i + 1 < n, bytes[i + 1] == .minus {
                    i = SQLLexing.endOfLineComment(bytes, from: i)
                } else if c == .slash, i + 1 < n, bytes[i + 1] == .star {
                    guard let end = SQLLexing.endOfBlockComment(bytes, from: i) else { break }
                    i = end
                } else if SQLLexing.isIdentStart(c) {
                    if SQLLexing.literalPrefixLength(bytes, at: i) != nil { break }
                    var j = i + 1
                    while j < n && SQLLexing.isIdentCont(bytes[j]) { j += 1 }
                    let upper = bytes[i..<j].map { $0 >= 0x61 && $0 <= 0x7A ? $0 - 0x20 : $0 }
                    words.append(String(decoding: upper, as: UTF8.self))
                    i = j
                } else {
                    break
                }
            }
            return words
        }
    }
}

public struct SQLSyntaxError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable { case unterminatedString, unterminatedQuotedIdentifier, unterminatedDollarQuote, unterminatedBlockComment }
    public var kind: Kind
    /// Where the unterminated construct STARTS (1-based line, column in unicode scalars) and its scalar offset.
    ///
    /// The start, not the end of file, is reported because the end is always the same
    /// place and tells the author nothing about which quote or comment was left open.
    public var line: Int
    public var column: Int
    public var offset: Int
    /// e.g. "unterminated dollar-quoted string $fn$ starting here", "unterminated /* comment starting here"
    public var description: String
}

public enum SQLStatementSplitter {
    /// Splits a script into statements. Empty statements (only whitespace/comments, or a lone `;`) are dropped.
    /// A last statement without a semicolon is still returned. Throws at the first unterminated construct.
    ///
    /// Statement boundaries are decided exactly as psql decides them (psqlscan.l), so a
    /// "no transaction" migration is cut into the same statements a developer saw when
    /// running the file through `psql -f`.
    ///
    /// `standardConformingStrings` is the server's setting of that name (libpq reports it at connection): when it is
    /// off, a backslash escapes the next character in a plain '...' literal too, as it always does in E'...', so
    /// `'it\'s'` is one literal. The split must read the file as the server will, or a `COMMIT` the server sees could
    /// hide inside what the splitter took for a string.
    public static func split(_ source: String, standardConformingStrings: Bool = true) throws(SQLSyntaxError) -> [SQLStatement] {
        // `withUTF8` lends the string's own storage, so a large file is not copied;
        // the result travels out as a `Result` because the closure cannot rethrow a typed error.
        var source = source
        let result: Result<[SQLStatement], SQLSyntaxError> = source.withUTF8 { bytes in
            var scanner = StatementScanner(bytes, standardConformingStrings: standardConformingStrings)
            do throws(SQLSyntaxError) {
                return .success(try scanner.run())
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// True when the statement is transaction control that must not appear inside a transactional migration:
    /// BEGIN (but not BEGIN ATOMIC, which only occurs inside CREATE FUNCTION), START TRANSACTION, COMMIT, END, ROLLBACK, ABORT,
    /// COMMIT PREPARED / ROLLBACK PREPARED / PREPARE TRANSACTION. (SAVEPOINT / RELEASE / ROLLBACK TO SAVEPOINT are allowed → false.)
    ///
    /// Savepoints are allowed because they nest inside the runner's transaction without ending it.
    public static func isTransactionControl(_ statement: SQLStatement) -> Bool {
        let words = statement.leadingWords(3)
        guard let first = words.first else { return false }
        switch first {
        case "BEGIN":
            return words.count < 2 || words[1] != "ATOMIC"
        case "START":
            return words.count >= 2 && words[1] == "TRANSACTION"
        case "COMMIT", "END", "ABORT":
            return true
        case "ROLLBACK":
            // ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] name only unwinds to a savepoint.
            var next = 1
            if words.count > next && (words[next] == "WORK" || words[next] == "TRANSACTION") { next += 1 }
            return !(words.count > next && words[next] == "TO")
        case "PREPARE":
            // Two-phase PREPARE TRANSACTION takes a string literal, which stops the word scan;
            // a third word means `transaction` is merely the name of a prepared statement.
            return words.count == 2 && words[1] == "TRANSACTION"
        default:
            return false
        }
    }
}

// MARK: - Lexing

/// Byte constants, so the scanner reads like the psqlscan.l rules it mirrors.
extension UInt8 {
    fileprivate static let newline: UInt8 = 0x0A
    fileprivate static let carriageReturn: UInt8 = 0x0D
    fileprivate static let space: UInt8 = 0x20
    fileprivate static let tab: UInt8 = 0x09
    fileprivate static let verticalTab: UInt8 = 0x0B
    fileprivate static let formFeed: UInt8 = 0x0C
    fileprivate static let doubleQuote: UInt8 = 0x22
    fileprivate static let dollar: UInt8 = 0x24
    fileprivate static let ampersand: UInt8 = 0x26
    fileprivate static let singleQuote: UInt8 = 0x27
    fileprivate static let openParen: UInt8 = 0x28
    fileprivate static let closeParen: UInt8 = 0x29
    fileprivate static let star: UInt8 = 0x2A
    fileprivate static let plus: UInt8 = 0x2B
    fileprivate static let minus: UInt8 = 0x2D
    fileprivate static let dot: UInt8 = 0x2E
    fileprivate static let slash: UInt8 = 0x2F
    fileprivate static let semicolon: UInt8 = 0x3B
    fileprivate static let backslash: UInt8 = 0x5C
    fileprivate static let underscore: UInt8 = 0x5F
}

/// Character classes and small sub-scanners shared by the splitter and `leadingWords`.
///
/// Everything works on UTF-8 bytes: every character with lexical meaning in SQL is ASCII,
/// and psql itself treats each byte >= 0x80 as an identifier letter, so a byte scanner
/// reproduces its decisions exactly while never decoding a scalar.
fileprivate enum SQLLexing {
    /// `[ \t\n\r\f\v]`: PostgreSQL 16 added `\v`, and a migration is run by a current server.
    @inline(__always)
    static func isSpace(_ c: UInt8) -> Bool {
        c == .space || (c >= .tab && c <= .carriageReturn)
    }

    /// Whitespace that does not end a line; a string continuation needs a real line break.
    @inline(__always)
    static func isHorizontalSpace(_ c: UInt8) -> Bool {
        c == .space || c == .tab || c == .formFeed || c == .verticalTab
    }

    /// psql ends `--` comments at either `\r` or `\n`, so a stray carriage return ends one too.
    @inline(__always)
    static func isLineBreak(_ c: UInt8) -> Bool {
        c == .newline || c == .carriageReturn
    }

    @inline(__always)
    static func isDigit(_ c: UInt8) -> Bool {
        c &- 0x30 < 10
    }

    /// `[A-Za-z\200-\377_]`, which is also a dollar-quote tag's first character.
    @inline(__always)
    static func isIdentStart(_ c: UInt8) -> Bool {
        (c | 0x20) &- 0x61 < 26 || c == .underscore || c >= 0x80
    }

    /// `[A-Za-z\200-\377_0-9$]`: the `$` is why `a$$b` is one identifier and not a dollar quote.
    @inline(__always)
    static func isIdentCont(_ c: UInt8) -> Bool {
        isIdentStart(c) || isDigit(c) || c == .dollar
    }

    /// A dollar-quote tag continues like an identifier but without `$`, which would close it.
    @inline(__always)
    static func isTagCont(_ c: UInt8) -> Bool {
        isIdentStart(c) || isDigit(c)
    }

    /// Index of the line break (or end) that finishes the `--` comment starting at `start`.
    static func endOfLineComment(_ b: UnsafeBufferPointer<UInt8>, from start: Int) -> Int {
        var j = start + 2
        while j < b.count && !isLineBreak(b[j]) { j += 1 }
        return j
    }

    /// Index just past the `*/` closing the (nesting) comment opened at `start`, or nil if it never closes.
    /// A `*` or `/` is consumed with the pair it starts, so `/*/` is an opener and not also a closer.
    static func endOfBlockComment(_ b: UnsafeBufferPointer<UInt8>, from start: Int) -> Int? {
        let n = b.count
        var depth = 1
        var j = start + 2
        while j < n {
            let c = b[j]
            if c == .star, j + 1 < n, b[j + 1] == .slash {
                depth -= 1
                j += 2
                if depth == 0 { return j }
            } else if c == .slash, j + 1 < n, b[j + 1] == .star {
                depth += 1
                j += 2
            } else {
                j += 1
            }
        }
        return nil
    }

    /// For a word starting at `i` that is really a literal's prefix (`E'`, `B'`, `X'`, `N'`,
    /// `U&'`, `U&"`), the prefix length; flex prefers these longer matches over the identifier.
    @inline(__always)
    static func literalPrefixLength(_ b: UnsafeBufferPointer<UInt8>, at i: Int) -> Int? {
        let n = b.count
        guard i + 1 < n else { return nil }
        let next = b[i + 1]
        switch b[i] | 0x20 {
        case 0x65, 0x62, 0x78, 0x6E:  // e b x n
            return next == .singleQuote ? 1 : nil
        case 0x75:  // u
            guard next == .ampersand, i + 2 < n else { return nil }
            let q = b[i + 2]
            return q == .singleQuote || q == .doubleQuote ? 2 : nil
        default:
            return nil
        }
    }
}

/// Converts byte positions into PostgreSQL's character positions.
///
/// It only ever moves forward, so asking for each statement's start in order costs one pass
/// over the file in total instead of a rescan from the beginning per statement.
fileprivate struct SourceLocator {
    private var byte = 0
    private(set) var scalar = 0
    private(set) var line = 1
    private var lineStartScalar = 0

    var column: Int { scalar - lineStartScalar + 1 }

    mutating func advance(to target: Int, in b: UnsafeBufferPointer<UInt8>) {
        while byte < target {
            let c = b[byte]
            if c == .newline {
                scalar += 1
                line += 1
                lineStartScalar = scalar
            } else if c & 0xC0 != 0x80 {
                // Continuation bytes belong to the scalar already counted.
                scalar += 1
            }
            byte += 1
        }
    }
}

/// A one-pass re-implementation of psqlscan.l's statement-boundary logic over UTF-8 bytes.
fileprivate struct StatementScanner {
    private let b: UnsafeBufferPointer<UInt8>
    private let n: Int
    private var locator = SourceLocator()

    // psql's heuristic for SQL-standard function bodies: once the statement's first
    // words spell CREATE [OR REPLACE] FUNCTION|PROCEDURE, BEGIN ... END (and CASE ... END
    // inside it) nest, and a semicolon inside them does not end the statement.
    private var parenDepth = 0
    private var beginDepth = 0
    private var identifierCount = 0
    private var headerLetters: (UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0)

    /// Whether a plain '...' literal is read without backslash escapes (the server's `standard_conforming_strings`).
    private let standardConformingStrings: Bool

    init(_ bytes: UnsafeBufferPointer<UInt8>, standardConformingStrings: Bool) {
        b = bytes
        n = bytes.count
        self.standardConformingStrings = standardConformingStrings
    }

    @inline(__always)
    private func at(_ i: Int) -> UInt8? {
        i < n ? b[i] : nil
    }

    mutating func run() throws(SQLSyntaxError) -> [SQLStatement] {
        var statements: [SQLStatement] = []
        // Byte index of the current statement's first significant character, or -1 while
        // only whitespace and comments have been seen since the last terminator.
        var start = -1
        var i = 0
        while i < n {
            let c = b[i]
            if SQLLexing.isSpace(c) {
                i += 1
                continue
            }
            switch c {
            case .minus where at(i + 1) == .minus:
                i = SQLLexing.endOfLineComment(b, from: i)
                continue
            case .slash where at(i + 1) == .star:
                guard let end = SQLLexing.endOfBlockComment(b, from: i) else {
                    throw error(.unterminatedBlockComment, at: i, "unterminated /* comment starting here")
                }
                i = end
                continue
            default:
                break
            }
            if start < 0 { start = i }
            switch c {
            case .semicolon:
                if parenDepth == 0 && beginDepth == 0 {
                    if i > start { statements.append(makeStatement(from: start, to: i)) }
                    start = -1
                    identifierCount = 0
                }
                i += 1
            case .openParen:
                parenDepth += 1
                i += 1
            case .closeParen:
                if parenDepth > 0 { parenDepth -= 1 }
                i += 1
            case .singleQuote:
                i = try skipString(literalStart: i, bodyStart: i + 1, backslashEscapes: !standardConformingStrings)
            case .doubleQuote:
                i = try skipQuotedIdentifier(literalStart: i, bodyStart: i + 1)
            case .dollar:
                i = try skipDollar(i)
            case .dot:
                i = at(i + 1).map(SQLLexing.isDigit) == true ? skipNumber(i) : i + 1
            default:
                if SQLLexing.isDigit(c) {
                    i = skipNumber(i)
                } else if SQLLexing.isIdentStart(c) {
                    i = try skipWord(i)
                } else {
                    i += 1
                }
            }
        }
        if start >= 0 { statements.append(makeStatement(from: start, to: n)) }
        return statements
    }

    private mutating func makeStatement(from start: Int, to end: Int) -> SQLStatement {
        var last = end
        while last > start && SQLLexing.isSpace(b[last - 1]) { last -= 1 }
        locator.advance(to: start, in: b)
        let text = String(decoding: UnsafeBufferPointer(rebasing: b[start..<last]), as: UTF8.self)
        return SQLStatement(text: text, offset: locator.scalar, line: locator.line, column: locator.column)
    }

    private mutating func error(_ kind: SQLSyntaxError.Kind, at position: Int, _ description: String) -> SQLSyntaxError {
        locator.advance(to: position, in: b)
        return SQLSyntaxError(
            kind: kind, line: locator.line, column: locator.column, offset: locator.scalar, description: description)
    }

    /// A word: either a literal prefix, or an identifier/keyword that feeds the BEGIN ATOMIC heuristic.
    private mutating func skipWord(_ i: Int) throws(SQLSyntaxError) -> Int {
        if let prefix = SQLLexing.literalPrefixLength(b, at: i) {
            let opener = b[i + prefix]
            if opener == .doubleQuote {
                return try skipQuotedIdentifier(literalStart: i, bodyStart: i + prefix + 1)
            }
            // Only E'...' treats backslash as an escape; B, X, N and U& follow plain quoting.
            let escapes = b[i] | 0x20 == 0x65
            return try skipString(literalStart: i, bodyStart: i + prefix + 1, backslashEscapes: escapes)
        }
        if b[i] | 0x20 == 0x75, at(i + 1) == .ampersand {
            // psql's {xufailed}: a `U&` not followed by a quote gives up just the `u`,
            // which is not counted as an identifier.
            return i + 1
        }
        var j = i + 1
        while j < n && SQLLexing.isIdentCont(b[j]) { j += 1 }
        noteIdentifier(i, j)
        return j
    }

    /// psqlscan.l's {identifier} action, letter for letter: it remembers the first letter of
    /// CREATE/OR/REPLACE/FUNCTION/PROCEDURE among the first four identifiers, and once those
    /// spell a routine definition it counts BEGIN/CASE/END outside parentheses.
    private mutating func noteIdentifier(_ start: Int, _ end: Int) {
        if identifierCount == 0 { headerLetters = (0, 0, 0, 0) }
        if identifierCount < 4 {
            let letter = headerLetter(start, end)
            if letter != 0 {
                switch identifierCount {
                case 0: headerLetters.0 = letter
                case 1: headerLetters.1 = letter
                case 2: headerLetters.2 = letter
                default: headerLetters.3 = letter
                }
            }
        }
        identifierCount += 1

        let h = headerLetters
        let c: UInt8 = 0x63, f: UInt8 = 0x66, p: UInt8 = 0x70, o: UInt8 = 0x6F, r: UInt8 = 0x72
        guard h.0 == c,
            h.1 == f || h.1 == p || (h.1 == o && h.2 == r && (h.3 == f || h.3 == p)),
            parenDepth == 0
        else { return }

        switch end - start {
        case 5 where matches(start, "begin"):
            beginDepth += 1
        case 4 where matches(start, "case"):
            // CASE ends with END too, but only matters inside a body already being tracked.
            if beginDepth >= 1 { beginDepth += 1 }
        case 3 where matches(start, "end"):
            if beginDepth > 0 { beginDepth -= 1 }
        default:
            break
        }
    }

    private func headerLetter(_ start: Int, _ end: Int) -> UInt8 {
        let word: StaticString
        switch end - start {
        case 2: word = "or"
        case 6: word = "create"
        case 7: word = "replace"
        case 8: word = "function"
        case 9: word = "procedure"
        default: return 0
        }
        return matches(start, word) ? word.utf8Start.pointee : 0
    }

    /// ASCII case-insensitive comparison against a lowercase keyword of the same length.
    private func matches(_ start: Int, _ keyword: StaticString) -> Bool {
        let k = keyword.utf8Start
        for offset in 0..<keyword.utf8CodeUnitCount where b[start + offset] | 0x20 != k[offset] {
            return false
        }
        return true
    }

    /// Skips a '...' literal (with `''` doubling, and backslash escapes for E'...') and any
    /// continuation segments. A continuation keeps the first segment's escape rule, which is
    /// why E'a'<newline>'\'' is still one literal.
    private mutating func skipString(literalStart: Int, bodyStart: Int, backslashEscapes: Bool) throws(SQLSyntaxError) -> Int {
        var j = bodyStart
        while true {
            while true {
                guard j < n else {
                    throw error(.unterminatedString, at: literalStart, "unterminated quoted string starting here")
                }
                let c = b[j]
                if c == .singleQuote {
                    if at(j + 1) == .singleQuote {
                        j += 2
                        continue
                    }
                    j += 1
                    break
                }
                j += (c == .backslash && backslashEscapes) ? 2 : 1
            }
            guard let resumed = continuation(after: j) else { return j }
            j = resumed
        }
    }

    /// psql's {quotecontinue}: whitespace (and `--` comments) containing at least one line break,
    /// then another quote. Returns the index just past that quote, or nil if the literal ended.
    private func continuation(after closingQuote: Int) -> Int? {
        var k = closingQuote
        while k < n {
            let c = b[k]
            if SQLLexing.isHorizontalSpace(c) {
                k += 1
            } else if c == .minus, at(k + 1) == .minus {
                k = SQLLexing.endOfLineComment(b, from: k)
            } else {
                break
            }
        }
        guard k < n, SQLLexing.isLineBreak(b[k]) else { return nil }
        k += 1
        while k < n {
            let c = b[k]
            if SQLLexing.isSpace(c) {
                k += 1
            } else if c == .minus, at(k + 1) == .minus {
                // After the first line break a comment must itself end in one.
                k = SQLLexing.endOfLineComment(b, from: k)
                guard k < n else { return nil }
                k += 1
            } else {
                break
            }
        }
        guard k < n, b[k] == .singleQuote else { return nil }
        return k + 1
    }

    private mutating func skipQuotedIdentifier(literalStart: Int, bodyStart: Int) throws(SQLSyntaxError) -> Int {
        var j = bodyStart
        while j < n {
            if b[j] == .doubleQuote {
                if at(j + 1) == .doubleQuote {
                    j += 2
                    continue
                }
                return j + 1
            }
            j += 1
        }
        throw error(.unterminatedQuotedIdentifier, at: literalStart, "unterminated quoted identifier starting here")
    }

    /// A `$` outside any literal: a positional parameter (`$1`), a dollar-quote opener
    /// (`$$`, `$tag$`), or a lone character (`$tag` with no closing `$`).
    private mutating func skipDollar(_ i: Int) throws(SQLSyntaxError) -> Int {
        var j = i + 1
        if j < n && SQLLexing.isDigit(b[j]) {
            while j < n && SQLLexing.isDigit(b[j]) { j += 1 }
            return skipJunk(j)
        }
        if j < n && SQLLexing.isIdentStart(b[j]) {
            j += 1
            while j < n && SQLLexing.isTagCont(b[j]) { j += 1 }
        }
        guard j < n && b[j] == .dollar else { return i + 1 }
        return try skipDollarBody(openerStart: i, tagLength: j - i - 1, bodyStart: j + 1)
    }

    /// Finds the closing delimiter. At each `$` the maximal run of tag characters is read once:
    /// the quote closes only if that run equals the tag and is followed by `$`, otherwise the scan
    /// resumes at the end of the run, so the body is read in linear time whatever the tag.
    private mutating func skipDollarBody(openerStart: Int, tagLength: Int, bodyStart: Int) throws(SQLSyntaxError) -> Int {
        let tagStart = openerStart + 1
        var k = bodyStart
        while k < n {
            guard b[k] == .dollar else {
                k += 1
                continue
            }
            var m = k + 1
            while m < n && SQLLexing.isTagCont(b[m]) { m += 1 }
            if m < n && b[m] == .dollar && m - k - 1 == tagLength && sameBytes(tagStart, k + 1, tagLength) {
                return m + 1
            }
            k = m
        }
        let delimiter = String(decoding: UnsafeBufferPointer(rebasing: b[openerStart..<bodyStart]), as: UTF8.self)
        throw error(.unterminatedDollarQuote, at: openerStart, "unterminated dollar-quoted string \(delimiter) starting here")
    }

    private func sameBytes(_ a: Int, _ c: Int, _ count: Int) -> Bool {
        for offset in 0..<count where b[a + offset] != b[c + offset] { return false }
        return true
    }

    /// Numeric literals matter only for where they end: PostgreSQL 16+ glues trailing identifier
    /// characters onto a number ({integer_junk} and friends), so in `1e$$` the `$$` belongs to
    /// the number and opens no quote, while in `1.5$$` it does.
    private func skipNumber(_ i: Int) -> Int {
        var j = i
        if SQLLexing.isDigit(b[j]) {
            j = skipDigits(j)
            // {numericfail}: `1..10` is 1, `..`, 10.
            if at(j) == .dot && at(j + 1) != .dot {
                j += 1
                if let c = at(j), SQLLexing.isDigit(c) { j = skipDigits(j) }
            }
        } else {
            j = skipDigits(j + 1)
        }
        if let e = at(j), e | 0x20 == 0x65 {
            var k = j + 1
            if at(k) == .plus || at(k) == .minus { k += 1 }
            if let d = at(k), SQLLexing.isDigit(d) { j = skipDigits(k) }
        }
        return skipJunk(j)
    }

    /// {decinteger}: digits with single underscores between them.
    private func skipDigits(_ i: Int) -> Int {
        var j = i + 1
        while j < n {
            if SQLLexing.isDigit(b[j]) {
                j += 1
            } else if b[j] == .underscore, let d = at(j + 1), SQLLexing.isDigit(d) {
                j += 2
            } else {
                break
            }
        }
        return j
    }

    /// An identifier glued to a number or parameter is part of that token and is not a keyword.
    private func skipJunk(_ i: Int) -> Int {
        guard i < n && SQLLexing.isIdentStart(b[i]) else { return i }
        var j = i + 1
        while j < n && SQLLexing.isIdentCont(b[j]) { j += 1 }
        return j
    }
}
