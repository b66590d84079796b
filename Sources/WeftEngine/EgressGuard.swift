import Foundation
import NIOPosix
import Prometheus
public import WeftObservability

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one gate of every outbound connection the server makes for a user
/// (`http` tasks now; webhooks, notifications and integrations later).
///
/// It resolves the host itself, checks every address the name resolves to
/// against the `EgressPolicy`, and hands back the one address to connect to:
/// the caller pins its connection to it, so the name cannot resolve to
/// something else between the check and the connect (DNS rebinding).
public struct EgressGuard: Sendable {
    public let policy: EgressPolicy
    /// Resolves a host name to its addresses (getaddrinfo off the event
    /// loops; tests inject their own).
    let resolve: @Sendable (String) async throws -> [IPAddress]
    private let deniedCounters: [String: Prometheus.Counter]

    /// Where to connect for one host.
    public struct Destination: Sendable, Equatable {
        /// The address to connect to; nil when the operator allowed the host
        /// by name (the client resolves it as usual).
        public let pinned: IPAddress?
        /// True when the URL's host is the address itself (no pin needed).
        public let isLiteral: Bool
    }

    /// Why a destination is refused; `message` reads `127.0.0.1 is loopback`.
    public struct Denied: Error, Sendable, Equatable {
        public let reason: String
        public let message: String
    }

    public init(
        policy: EgressPolicy = EgressPolicy(), metrics: WeftMetrics? = nil,
        resolve: (@Sendable (String) async throws -> [IPAddress])? = nil
    ) {
        self.policy = policy
        self.resolve = resolve ?? { host in try await Self.systemResolve(host) }
        var counters: [String: Prometheus.Counter] = [:]
        if let metrics {
            for reason in EgressPolicy.denialReasons {
                counters[reason] = metrics.counter(
                    MetricNames.egressDenied,
                    help: "Outbound connections refused by the egress guard, by the kind of address.",
                    labels: [("reason", reason)])
            }
        }
        deniedCounters = counters
    }

    /// Checks `host` (a URL's host, IPv6 literals with or without brackets).
    /// Throws `Denied` when any address it resolves to is denied, or a
    /// resolution error when it resolves to nothing.
    public func check(host rawHost: String) async throws -> Destination {
        var host = rawHost
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if policy.isAllowedHost(host) { return Destination(pinned: nil, isLiteral: false) }
        if let literal = IPAddress(host) {
            if let denial = policy.denial(of: literal) { throw deny(denial.reason, "\(literal) is \(denial.what)") }
            return Destination(pinned: literal, isLiteral: true)
        }
        let addresses = try await resolve(host)
        guard !addresses.isEmpty else { throw EgressResolutionError(host: host, detail: "no addresses") }
        // One denied address is enough to refuse: the client could pick it.
        for address in addresses {
            if let denial = policy.denial(of: address) {
                throw deny(denial.reason, "\(host) resolves to \(address), which is \(denial.what)")
            }
        }
        // IPv4 first: the common case where both work.
        let chosen = addresses.first(where: \.isIPv4) ?? addresses[0]
        return Destination(pinned: chosen, isLiteral: false)
    }

    /// Counts and returns a denial.
    func deny(_ reason: String, _ message: String) -> Denied {
        deniedCounters[reason]?.increment()
        return Denied(reason: reason, message: message)
    }

    /// getaddrinfo on NIO's blocking-I/O pool. It also reads the numeric
    /// spellings a URL parser passes through ("2130706433", "0177.0.0.1",
    /// "0x7f.1") as the C library does, so they are checked as what they are.
    static func systemResolve(_ host: String) async throws -> [IPAddress] {
        try await NIOThreadPool.singleton.runIfActive {
            var hints = addrinfo()
            hints.ai_family = AF_UNSPEC
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var list: UnsafeMutablePointer<addrinfo>?
            let status = getaddrinfo(host, nil, &hints, &list)
            guard status == 0, let first = list else {
                throw EgressResolutionError(host: host, detail: String(cString: gai_strerror(status)))
            }
            defer { freeaddrinfo(first) }
            var result: [IPAddress] = []
            var node: UnsafeMutablePointer<addrinfo>? = first
            while let entry = node {
                if let address = entry.pointee.ai_addr {
                    switch Int32(address.pointee.sa_family) {
                    case AF_INET:
                        let v4 = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
                        if let ip = withUnsafeBytes(of: v4, { IPAddress(bytes: Array($0)) }) { result.append(ip) }
                    case AF_INET6:
                        let v6 = address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr }
                        if let ip = withUnsafeBytes(of: v6, { IPAddress(bytes: Array($0)) }) { result.append(ip) }
                    default:
                        break
                    }
                }
                node = entry.pointee.ai_next
            }
            return result
        }
    }
}

/// A host that does not resolve: a connection failure (retryable), not a denial.
public struct EgressResolutionError: Error, CustomStringConvertible {
    public let host: String
    public let detail: String
    public var description: String { "cannot resolve \(host): \(detail)" }
}
