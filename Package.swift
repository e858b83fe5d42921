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
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
    ],
    targets: [
        // libpq, from Debian's libpq-dev. Only the Postgres target imports it.
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        // Text and file helpers, so that no module needs full Foundation (whose ICU data slows every start).
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
        .executableTarget(
            name: "migrator",
            dependencies: [
                "Postgres",
                "SystemSupport",
                "MigrationEngine",
                "RoleSync",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
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
        .testTarget(
            name: "MigratorEndToEndTests",
            dependencies: ["migrator", "Postgres", "MigratorTestSupport"],
            swiftSettings: swiftSettings
        ),
    ],
    swiftLanguageModes: [.v6]
)
