// swift-tools-version:6.1
import PackageDescription

// Every target compiles in Swift 6 mode with the same upcoming-feature flags
// (as grpc-swift-2 does), so strict concurrency and explicit `any` hold everywhere.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "weft",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "weft", targets: ["weft"]),
        .executable(name: "weft-loadtest", targets: ["weft-loadtest"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        // SQLite (the system's libsqlite3) with migrations, a WAL pool and FTS5.
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        // Outbound calls of `http` tasks.
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        // Traces: the API in the libraries, the OTLP/HTTP exporter in the server only.
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPHTTP"]),
        // The W3C parser swift-otel uses, to hand it only what it accepts.
        .package(url: "https://github.com/swift-otel/swift-w3c-trace-context.git", from: "1.0.0"),
        // The load-test harness only: latency histograms without coordinated
        // omission (HdrHistogram) and scenario/SLO files in YAML.
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
    ],
    targets: [
        // System libraries (Debian's -dev packages), wrapped by a shim header each.
        .systemLibrary(
            name: "CNghttp2",
            pkgConfig: "libnghttp2",
            providers: [.apt(["libnghttp2-dev"])]
        ),
        // The process's allocator (nghttpd's too): glibc's malloc and free of
        // Swift objects and nghttp2's blocks were ~10 % of a health check.
        .systemLibrary(
            name: "CJemalloc",
            pkgConfig: "jemalloc",
            providers: [.apt(["libjemalloc-dev"])]
        ),
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        // TLS, and scrypt, HMAC-SHA256 and random bytes for accounts and tokens.
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        .target(
            name: "WeftProto",
            dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .target(
            name: "WeftObservability",
            dependencies: [
                "CJemalloc",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "W3CTraceContext", package: "swift-w3c-trace-context"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "WeftRPC",
            dependencies: [
                "CNghttp2",
                "CZlib",
                // TLS on the listener (memory BIOs between the socket and nghttp2).
                "COpenSSL",
                "WeftObservability",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            // The per-call path mutates class-held state many times per
            // request; dynamic exclusivity checks cost ~4% of its CPU. All of
            // that state is confined to one event loop, so release builds skip
            // the checks (debug builds and tests keep them).
            swiftSettings: swiftSettings + [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]
        ),
        // The storage domain: records, store protocols and their contract,
        // JSON values, typed statuses, and the in-memory store. No backend.
        .target(
            name: "WeftStore",
            swiftSettings: swiftSettings
        ),
        // The SQLite implementation of the store protocols, on GRDB.
        .target(
            name: "WeftSQLite",
            dependencies: [
                "WeftStore",
                "WeftObservability",
                .product(name: "GRDB", package: "GRDB.swift"),
                // The FTS5 extension API, for the search's rank function.
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "WeftEngine",
            dependencies: [
                "WeftStore",
                "WeftObservability",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                // The egress guard resolves names on NIO's blocking-I/O pool.
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "WeftServer",
            dependencies: [
                "COpenSSL",
                "WeftEngine",
                "WeftStore",
                "WeftSQLite",
                "WeftRPC",
                "WeftProto",
                "WeftObservability",
                .product(name: "NIOCore", package: "swift-nio"),
                // The SMTP client's sockets, and webhook/Slack deliveries.
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "OTel", package: "swift-otel"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "weft",
            dependencies: [
                "WeftServer",
                "WeftEngine",
                "WeftStore",
                "WeftSQLite",
                "WeftRPC",
                "WeftObservability",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The load-test harness: drives any reachable Weft over gRPC (our
        // nghttp2 client session, h2c or TLS) and REST (HTTP/1.1, HTTP/2).
        .executableTarget(
            name: "weft-loadtest",
            dependencies: [
                "CNghttp2",
                "WeftRPC",
                "WeftProto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Yams", package: "Yams"),
            ],
            // As WeftRPC: the per-call path is confined to one event loop;
            // release builds skip the dynamic exclusivity checks.
            swiftSettings: swiftSettings + [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]
        ),
        // Shared test helpers: record builders, temporary stores, a manual
        // clock, the store conformance suite, an in-process client.
        .target(
            name: "WeftTestSupport",
            dependencies: [
                "WeftStore", "WeftSQLite", "WeftEngine", "WeftRPC", "WeftServer", "WeftProto", "WeftObservability",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/WeftTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "WeftRPCTests",
            dependencies: [
                "WeftRPC",
                "WeftProto",
                "WeftObservability",
                "CNghttp2",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "WeftEngineTests",
            dependencies: [
                "WeftEngine", "WeftStore", "WeftObservability", "WeftTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "WeftStoreTests",
            dependencies: ["WeftStore", "WeftTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "WeftSQLiteTests",
            dependencies: [
                "WeftSQLite", "WeftStore", "WeftTestSupport",
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "WeftServerTests",
            dependencies: [
                "WeftServer", "WeftRPC", "WeftEngine", "WeftStore", "WeftProto", "WeftObservability", "WeftTestSupport",
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
