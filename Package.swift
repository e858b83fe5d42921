// swift-tools-version: 6.2
import PackageDescription

/// Settings shared by every Swift target, each with its reason.
let swiftSettings: [SwiftSetting] = [
    // `any P` spelled out: existential costs are visible at the use site.
    .enableUpcomingFeature("ExistentialAny"),
    // A file sees only the modules it imports itself, so layering stays honest.
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "migrator",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "migrator", targets: ["migrator"]),
        .executable(name: "migrator-serve", targets: ["migrator-serve"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
        // Tests only: a real YAML parser to read docker-compose.yml (README, "Dependencies").
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // libpq, from Debian's libpq-dev. Only the Postgres target imports it.
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        // libpg_query (PostgreSQL's own parser as a C library), from Debian's libpg-query-dev, linked statically.
        // Only the Lint target imports it. Debian ships no pkg-config file for it; the header and archive are in the
        // default search paths.
        .systemLibrary(
            name: "CPGQuery",
            providers: [.apt(["libpg-query-dev"])]
        ),
        // What the modules need below Foundation: file calls straight to the C library (stat to refuse a FIFO
        // before opening it, errno's own text in messages), the HTTP probe of `migrator probe` (no client library in
        // the image), and small text helpers. With them the library modules import at most FoundationEssentials;
        // only `serve`'s dependencies (Hummingbird) bring full Foundation into the binary.
        .target(
            name: "SystemSupport",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Postgres",
            dependencies: [
                "CLibPQ",
                "SystemSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "MigrationEngine",
            dependencies: [
                "Postgres",
                "SystemSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "RoleSync",
            dependencies: [
                "Postgres",
                "SystemSupport",
                "MigrationEngine",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        // `migrator serve`: the listener, the reconciler, readiness, metrics and the HTTP endpoints.
        .target(
            name: "Daemon",
            dependencies: [
                "Postgres",
                "SystemSupport",
                "MigrationEngine",
                "RoleSync",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // `migrator lint`: each statement of a migration parsed by PostgreSQL's own grammar, checked against the rules
        // that keep a deploy from locking the app out.
        .target(
            name: "Lint",
            dependencies: [
                "CPGQuery",
                "MigrationEngine",
            ],
            swiftSettings: swiftSettings
        ),
        // The command line, shared by the two executables; it does not depend on the daemon, so `migrator` does not
        // load Hummingbird, SwiftNIO or full Foundation.
        .target(
            name: "MigratorCLI",
            dependencies: [
                "Postgres",
                "SystemSupport",
                "MigrationEngine",
                "RoleSync",
                "Lint",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // `migrator`: every command; `serve` execs `migrator-serve` beside it.
        .executableTarget(
            name: "migrator",
            dependencies: ["MigratorCLI"],
            swiftSettings: swiftSettings
        ),
        // `migrator serve`: the daemon, in a binary of its own (see MigratorCLI's CommandLineTool).
        .executableTarget(
            name: "migrator-serve",
            dependencies: [
                "MigratorCLI",
                "MigrationEngine",
                "RoleSync",
                "SystemSupport",
                "Daemon",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "MigratorTestSupport",
            dependencies: [
                "Postgres",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PostgresTests",
            dependencies: [
                "Postgres", "MigratorTestSupport",
                .product(name: "InMemoryLogging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MigrationEngineTests",
            dependencies: [
                "MigrationEngine", "Postgres", "MigratorTestSupport",
                .product(name: "InMemoryLogging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "RoleSyncTests",
            dependencies: [
                "RoleSync", "MigrationEngine", "Postgres", "MigratorTestSupport",
                .product(name: "InMemoryLogging", package: "swift-log"),
            ],
            resources: [.copy("Fixtures")],
            swiftSettings: swiftSettings
        ),
        // The daemon's pieces without the binary: batch, schedule, error classes, HTTP endpoints, shutdown.
        .testTarget(
            name: "DaemonTests",
            dependencies: [
                "Daemon", "MigrationEngine", "RoleSync", "Postgres", "MigratorTestSupport",
                .product(name: "InMemoryLogging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MigratorEndToEndTests",
            dependencies: [
                "migrator", "migrator-serve", "MigratorCLI", "Postgres", "MigratorTestSupport", "SystemSupport",
                // The reference catalogue, to build a database the way an earlier release left it.
                "RoleSync",
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: swiftSettings
        ),
    ],
    swiftLanguageModes: [.v6]
)
