import SystemSupport

/// `--http-address`, shared by `serve` and `probe`.
public enum HTTPAddressOption {
    public static func resolve(_ value: String?) throws -> HTTPAddress {
        try MigratorCLI.resolve(
            value, env: "MIGRATOR_HTTP_ADDRESS", option: "--http-address",
            default: HTTPAddress(host: "0.0.0.0", port: 8080), parse: HTTPAddress.init(parsing:)
        )
    }
}
