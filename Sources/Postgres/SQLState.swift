/// The SQLSTATE codes migrator acts on, by name (PostgreSQL manual, appendix A).
public enum SQLState {
    public static let undefinedTable = "42P01"
    public static let undefinedColumn = "42703"
    public static let undefinedFunction = "42883"
    public static let invalidSchemaName = "3F000"
    public static let duplicateTable = "42P07"
    public static let uniqueViolation = "23505"
    public static let foreignKeyViolation = "23503"
    public static let lockNotAvailable = "55P03"
    public static let queryCanceled = "57014"
    public static let deadlockDetected = "40P01"
    public static let insufficientPrivilege = "42501"
    public static let cannotConnectNow = "57P03"
    public static let tooManyConnections = "53300"
    /// Class 08, connection exceptions: every code that starts with it.
    public static let connectionExceptionClass = "08"
}
