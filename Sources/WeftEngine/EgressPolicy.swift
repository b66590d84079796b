import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IPv4 (4 bytes) or IPv6 (16 bytes) address, in network byte order.
public struct IPAddress: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// Only the canonical text forms `inet_pton` accepts ("127.0.0.1",
    /// "::1", "::ffff:127.0.0.1"); a bracketed IPv6 literal loses its
    /// brackets. Other spellings ("2130706433", "0177.0.0.1") are names to
    /// resolve: the resolver reads them as the C library does.
    public init?(_ text: String) {
        var literal = Substring(text)
        if literal.hasPrefix("["), literal.hasSuffix("]") { literal = literal.dropFirst().dropLast() }
        var v4 = in_addr()
        if inet_pton(AF_INET, String(literal), &v4) == 1 {
            self.bytes = withUnsafeBytes(of: &v4) { Array($0) }
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, String(literal), &v6) == 1 {
            self.bytes = withUnsafeBytes(of: &v6) { Array($0) }
            return
        }
        return nil
    }

    public var isIPv4: Bool { bytes.count == 4 }

    public var description: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = isIPv4 ? AF_INET : AF_INET6
        let text = bytes.withUnsafeBytes { raw in inet_ntop(family, raw.baseAddress, &buffer, socklen_t(buffer.count)) }
        guard text != nil else { return "?" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// An address block, `10.0.0.0/8` or `fc00::/7`.
public struct CIDR: Hashable, Sendable, CustomStringConvertible {
    public let network: IPAddress
    public let prefixLength: Int

    /// "10.0.0.0/8", "::1/128", or a bare address (a block of one).
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = IPAddress(String(parts[0])) else { return nil }
        let bits = address.bytes.count * 8
        if parts.count == 2 {
            guard let length = Int(parts[1]), (0...bits).contains(length) else { return nil }
            prefixLength = length
        } else {
            prefixLength = bits
        }
        network = address
    }

    public func contains(_ address: IPAddress) -> Bool {
        guard address.bytes.count == network.bytes.count else { return false }
        var remaining = prefixLength
        for index in 0..<address.bytes.count where remaining > 0 {
            let take = min(8, remaining)
            let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - take))
            if address.bytes[index] & mask != network.bytes[index] & mask { return false }
            remaining -= take
        }
        return true
    }

    public var description: String { "\(network)/\(prefixLength)" }
}

/// Which destinations the server may reach for a user, and which request
/// headers a task may not set. Pure: the resolver and the HTTP client ask it.
///
/// By default every address that reaches the server itself, its network or
/// its cloud is denied (the list below, with the reason a denial names);
/// the operator's allowlist re-opens blocks or host names a deployment needs.
public struct EgressPolicy: Sendable {
    /// Blocks the operator re-opened (`--egress-allow 10.1.2.0/24`).
    public var allowedBlocks: [CIDR]
    /// Host names the operator re-opened (`--egress-allow vault.internal`),
    /// lower-case; their addresses are not checked.
    public var allowedHosts: Set<String>

    public init(allowedBlocks: [CIDR] = [], allowedHosts: Set<String> = []) {
        self.allowedBlocks = allowedBlocks
        self.allowedHosts = allowedHosts
    }

    /// Parses allowlist entries: a CIDR, an address, or a host name.
    public init(allow entries: [String]) throws(EgressPolicyError) {
        self.init()
        for raw in entries {
            let entry = raw.trimmingCharacters(in: .whitespaces)
            guard !entry.isEmpty else { continue }
            if let block = CIDR(entry) {
                allowedBlocks.append(block)
            } else if Self.isHostName(entry) {
                allowedHosts.insert(entry.lowercased())
            } else {
                throw EgressPolicyError(
                    "\"\(entry)\" is neither an address block (10.0.0.0/8, ::1/128), an address nor a host name")
            }
        }
    }

    /// The denied blocks and what each is (the reason a denial names).
    /// The first matching block names the reason (broadcast before the
    /// reserved 240/4 that holds it). Sources: RFC 6890 special-purpose registries, plus the IPv6 forms
    /// that embed an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo)
    /// so a denied IPv4 block cannot be reached through them.
    static let denied: [(block: CIDR, reason: String, text: String)] = [
        ("0.0.0.0/8", "unspecified", "unspecified"), ("127.0.0.0/8", "loopback", "loopback"),
        ("10.0.0.0/8", "private", "private (RFC 1918)"), ("172.16.0.0/12", "private", "private (RFC 1918)"),
        ("192.168.0.0/16", "private", "private (RFC 1918)"), ("100.64.0.0/10", "cgnat", "shared address space (CGNAT)"),
        ("169.254.0.0/16", "link_local", "link-local"), ("192.0.0.0/24", "reserved", "IETF protocol assignments"),
        ("198.18.0.0/15", "reserved", "benchmarking"), ("224.0.0.0/4", "multicast", "multicast"),
        ("255.255.255.255/32", "broadcast", "broadcast"), ("240.0.0.0/4", "reserved", "reserved"),
        ("::/128", "unspecified", "unspecified"), ("::1/128", "loopback", "loopback"),
        ("::ffff:0:0/96", "embedded_ipv4", "IPv4-mapped IPv6"), ("::/96", "embedded_ipv4", "IPv4-compatible IPv6"),
        ("64:ff9b::/96", "embedded_ipv4", "NAT64 (embeds IPv4)"), ("64:ff9b:1::/48", "embedded_ipv4", "NAT64 (embeds IPv4)"),
        ("2002::/16", "embedded_ipv4", "6to4 (embeds IPv4)"), ("2001::/32", "embedded_ipv4", "Teredo (embeds IPv4)"),
        ("fc00::/7", "private", "unique local (ULA)"), ("fe80::/10", "link_local", "link-local"),
        ("fec0::/10", "private", "site-local"), ("ff00::/8", "multicast", "multicast"), ("100::/64", "reserved", "discard-only"),
    ].map { (CIDR($0.0)!, $0.1, $0.2) }

    /// The metric label values of denials (a fixed set).
    public static let denialReasons = Set(denied.map(\.reason)).sorted()

    /// Why `address` may not be reached (a metric label, and what the
    /// address is: "loopback"), or nil when it may.
    public func denial(of address: IPAddress) -> (reason: String, what: String)? {
        if allowedBlocks.contains(where: { $0.contains(address) }) { return nil }
        return Self.denied.first { $0.block.contains(address) }.map { ($0.reason, $0.text) }
    }

    public func isAllowedHost(_ host: String) -> Bool {
        !allowedHosts.isEmpty && allowedHosts.contains(host.lowercased())
    }

    /// Request headers a task may not set: the client frames the request
    /// (`Content-Length`, `Transfer-Encoding`), the URL names the host, and
    /// hop-by-hop headers belong to the connection (RFC 9110 §7.6.1).
    public static let forbiddenHeaders: Set<String> = [
        "host", "content-length", "transfer-encoding", "connection", "keep-alive", "proxy-connection", "te", "trailer",
        "upgrade", "proxy-authenticate", "proxy-authorization",
    ]

    /// A request header that carries credentials: dropped when a redirect
    /// leaves the origin (Authorization, Cookie, X-Api-Key, *token*, ...).
    public static func isCredentialHeader(_ name: String) -> Bool {
        let lower = name.lowercased()
        if ["authorization", "proxy-authorization", "cookie"].contains(lower) { return true }
        let squashed = lower.replacingOccurrences(of: "-", with: "").replacingOccurrences(of: "_", with: "")
        return ["token", "secret", "password", "apikey", "auth", "credential", "session", "signature"]
            .contains { squashed.contains($0) }
    }

    /// An RFC 9110 field name (a token).
    public static func isHeaderName(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 256
            && text.utf8.allSatisfy { byte in
                (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                    || "!#$%&'*+-.^_`|~".utf8.contains(byte)
            }
    }

    static func isHostName(_ text: String) -> Bool {
        let labels = text.split(separator: ".", omittingEmptySubsequences: false)
        guard !text.isEmpty, text.utf8.count <= 253, !labels.isEmpty else { return false }
        return labels.allSatisfy { label in
            !label.isEmpty && label.utf8.count <= 63 && !label.hasPrefix("-") && !label.hasSuffix("-")
                && label.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-") }
        }
    }
}

public struct EgressPolicyError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
