import Foundation
import Logging
import MigratorTestSupport
import Postgres
import Testing

@Suite("LISTEN/NOTIFY")
struct NotificationTests {
    @Test("notifications sent by another session arrive with their channel, payload and sender")
    func receives() throws {
        try TestDatabase.with { database in
            let listener = try database.connect()
            let sender = try database.connect()
            try listener.listen("migrator_projects")
            #expect(try listener.waitForNotifications(timeout: .milliseconds(50)).isEmpty)

            try sender.query("SELECT pg_notify('migrator_projects', $1)", ["42"])
            try sender.query("SELECT pg_notify('migrator_projects', $1)", ["it's \"quoted\""])
            try sender.query("SELECT pg_notify('other_channel', 'ignored')")
            var received: [PostgresNotification] = []
            let deadline = ContinuousClock.now + .seconds(5)
            while received.count < 2, ContinuousClock.now < deadline {
                received += try listener.waitForNotifications(timeout: .milliseconds(500))
            }
            #expect(received.map(\.payload) == ["42", "it's \"quoted\""])
            #expect(received.allSatisfy { $0.channel == "migrator_projects" && $0.senderPID == sender.backendPID })
        }
    }

    @Test("notifications sent inside a transaction arrive only after it commits")
    func afterCommit() throws {
        try TestDatabase.with { database in
            let listener = try database.connect()
            let sender = try database.connect()
            try listener.listen("jobs")
            try sender.query("BEGIN")
            try sender.query("SELECT pg_notify('jobs', '1')")
            #expect(try listener.waitForNotifications(timeout: .milliseconds(200)).isEmpty)
            try sender.query("COMMIT")
            #expect(try listener.waitForNotifications(timeout: .seconds(5)).map(\.payload) == ["1"])
        }
    }

    @Test("a terminated listener reports a lost connection")
    func lostConnection() throws {
        try TestDatabase.with { database in
            let listener = try database.connect()
            let admin = try database.connect()
            try listener.listen("jobs")
            try admin.query("SELECT pg_terminate_backend($1)", [listener.backendPID])
            var error: PostgresError?
            let deadline = ContinuousClock.now + .seconds(5)
            while error == nil, ContinuousClock.now < deadline {
                do {
                    _ = try listener.waitForNotifications(timeout: .milliseconds(500))
                } catch let caught as PostgresError {
                    error = caught
                }
            }
            #expect(error?.code == .connectionLost)
            #expect(listener.isConnected == false)
        }
    }

    @Test("a channel name is quoted, never spliced")
    func quotedChannel() throws {
        try TestDatabase.with { database in
            let listener = try database.connect()
            try listener.listen("weird\"; SELECT 1; --")
            let sender = try database.connect()
            try sender.query("SELECT pg_notify($1, 'x')", ["weird\"; SELECT 1; --"])
            #expect(try listener.waitForNotifications(timeout: .seconds(5)).map(\.channel) == ["weird\"; SELECT 1; --"])
        }
    }
}
