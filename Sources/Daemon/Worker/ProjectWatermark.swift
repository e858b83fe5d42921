import RoleSync

/// Where the daemon's poll for new projects starts (``NewProjectsPoll``): the watermark `mark`, below or at which
/// every project was seen, and when it may move.
///
/// The poll scans `id > mark`. A transaction may commit an id below the largest one already seen (it took its id
/// from the sequence first and committed last), so the mark cannot simply follow the largest id. The rule: a poll
/// whose largest id `maxID` passed everything covered takes a transaction id `xid` (every transaction that had an id
/// when it ran has a smaller one); the mark advances to that `maxID` only at a later poll whose snapshot's `xmin` (the
/// oldest transaction still running) is greater than `xid`, so every transaction that could have taken an id up to
/// `maxID` has ended, and that poll, scanning from the old mark, saw what they committed. When that later poll stopped
/// at its limit, the mark advances only to the last id it returned. A table whose largest id fell below the mark (its
/// newest project deleted, a `TRUNCATE … RESTART IDENTITY`) starts over from the bottom.
///
/// Not covered, left to the reconcile: ids the app supplies itself below the mark, ids a transaction took from the
/// sequence before it wrote anything (and so had no transaction id when the poll ran), and a sequence with `CACHE` > 1,
/// which hands out ids out of order.
///
/// Ids handed to a sync are not returned again while they are above the mark (`handed`), so a project whose groups
/// cannot be created (a name too long, a failed sync) is not synced on every poll: the reconcile has it.
struct ProjectWatermark: Equatable {
    struct Candidate: Equatable {
        var maxID: Int64
        var xid: Int64
    }

    /// At most this many polls wait to be confirmed; a newer one replaces the newest (the oldest confirm first).
    static let maxCandidates = 8

    /// Every project with an id at or below it was seen (Int64.min: none yet).
    private(set) var mark = Int64.min
    /// Polls not confirmed yet, oldest (and smallest) first.
    private(set) var candidates: [Candidate] = []
    /// Ids above the mark already handed to a sync.
    private(set) var handed = Set<Int64>()

    /// A poll whose largest id is above this takes a transaction id (a new candidate).
    var covered: Int64 { max(mark, candidates.last?.maxID ?? .min) }

    /// What the poll leaves out, in order.
    var skipping: [Int64] { handed.sorted() }

    /// The mark as a metric shows it: 0 before the first.
    var shown: Int64 { mark == .min ? 0 : mark }

    /// A new session: the first poll scans from the bottom.
    mutating func reset() {
        self = ProjectWatermark()
    }

    /// A poll's answer, made with this value's `mark`, `covered` and `skipping`. Returns the ids to sync.
    mutating func observe(_ poll: NewProjectsPoll) -> [Int64] {
        if mark != .min, (poll.maxID ?? .min) < mark {
            // The newest projects are gone; ids may be handed out again below the mark. Start over.
            reset()
            handed.formUnion(poll.ids)
            return poll.ids
        }
        // The scan reached every project above the old mark, or up to its last id when it stopped at its limit.
        let reach = poll.truncated ? (poll.ids.last ?? mark) : Int64.max
        while let first = candidates.first, poll.xmin > first.xid {
            let advanced = min(first.maxID, reach)
            mark = max(mark, advanced)
            if advanced < first.maxID { break }  // the rest of this candidate's range is still to scan
            candidates.removeFirst()
        }
        if let xid = poll.pollXID, let maxID = poll.maxID, maxID > covered {
            let candidate = Candidate(maxID: maxID, xid: xid)
            if candidates.count < Self.maxCandidates {
                candidates.append(candidate)
            } else {
                candidates[candidates.count - 1] = candidate
            }
        }
        let fresh = poll.ids.filter { handed.insert($0).inserted }
        let mark = mark
        handed = handed.filter { $0 > mark }
        return fresh
    }
}
