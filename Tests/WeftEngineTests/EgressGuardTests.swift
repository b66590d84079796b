import Foundation
import Testing
import WeftEngine
import WeftStore

/// The egress guard: which addresses are denied by default, what the
/// operator's allowlist re-opens, and that every resolved address counts.
@Suite("egress guard")
struct EgressGuardTests {
    static let deniedByDefault: [(String, String)] = [
        ("127.0.0.1", "loopback"), ("127.1.2.3", "loopback"), ("0.0.0.0", "unspecified"), ("10.1.2.3", "private"),
        ("172.16.0.1", "private"), ("172.31.255.255", "private"), ("192.168.1.1", "private"), ("100.64.0.1", "CGNAT"),
        ("100.127.255.254", "CGNAT"), ("169.254.169.254", "link-local"), ("224.0.0.1", "multicast"),
        ("255.255.255.255", "broadcast"), ("240.0.0.1", "reserved"), ("::1", "loopback"), ("::", "unspecified"),
        ("::ffff:127.0.0.1", "IPv4-mapped"), ("::ffff:8.8.8.8", "IPv4-mapped"), ("::127.0.0.1", "IPv4-compatible"),
        ("64:ff9b::7f00:1", "NAT64"), ("2002:7f00:1::1", "6to4"), ("fc00::1", "ULA"), ("fd12:3456::1", "ULA"),
        ("fe80::1", "link-local"), ("ff02::1", "multicast"),
    ]

    @Test("the default policy denies internal addresses and names what they are", arguments: deniedByDefault)
    func denied(_ address: String, _ what: String) throws {
        let ip = try #require(IPAddress(address))
        let denial = try #require(EgressPolicy().denial(of: ip), "\(address) should be denied")
        #expect(denial.what.contains(what), "\(denial.what)")
        #expect(EgressPolicy.denialReasons.contains(denial.reason))
    }

    @Test("public addresses pass", arguments: ["8.8.8.8", "93.184.216.34", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "2a00:1450::1"])
    func allowed(_ address: String) throws {
        #expect(EgressPolicy().denial(of: try #require(IPAddress(address))) == nil)
    }

    @Test("the allowlist re-opens exactly the blocks and hosts it names")
    func allowlist() throws {
        let policy = try EgressPolicy(allow: ["127.0.0.1/32", "10.1.0.0/16", "fd00::/8", "Vault.Internal"])
        #expect(policy.denial(of: IPAddress("127.0.0.1")!) == nil)
        #expect(policy.denial(of: IPAddress("127.0.0.2")!) != nil)
        #expect(policy.denial(of: IPAddress("10.1.200.3")!) == nil)
        #expect(policy.denial(of: IPAddress("10.2.0.1")!) != nil)
        #expect(policy.denial(of: IPAddress("fd12::1")!) == nil)
        // An IPv4 block does not open the IPv4-mapped IPv6 spelling.
        #expect(policy.denial(of: IPAddress("::ffff:127.0.0.1")!) != nil)
        #expect(policy.isAllowedHost("vault.internal"))
        #expect(!policy.isAllowedHost("other.internal"))
        #expect(throws: EgressPolicyError.self) { try EgressPolicy(allow: ["10.0.0.0/33"]) }
        #expect(throws: EgressPolicyError.self) { try EgressPolicy(allow: ["not a host"]) }
        #expect(throws: EgressPolicyError.self) { try EgressPolicy(allow: ["::1/129"]) }
    }

    @Test("one denied address among a name's addresses denies it; an allowed name is pinned to IPv4 first")
    func resolvedAddresses() async throws {
        let guardian = EgressGuard { host in
            switch host {
            case "rebind.test": [IPAddress("93.184.216.34")!, IPAddress("127.0.0.1")!]
            case "dual.test": [IPAddress("2606:4700::1111")!, IPAddress("93.184.216.34")!]
            default: []
            }
        }
        do {
            _ = try await guardian.check(host: "rebind.test")
            Issue.record("rebind.test was allowed")
        } catch let denied as EgressGuard.Denied {
            #expect(denied.reason == "loopback" && denied.message == "rebind.test resolves to 127.0.0.1, which is loopback")
        }
        let dual = try await guardian.check(host: "dual.test")
        #expect(dual.pinned == IPAddress("93.184.216.34") && !dual.isLiteral)
        await #expect(throws: EgressResolutionError.self) { try await guardian.check(host: "nothing.test") }
        let literal = try await guardian.check(host: "[2606:4700::1111]")
        #expect(literal.isLiteral)
        await #expect(throws: EgressGuard.Denied.self) { try await guardian.check(host: "[::ffff:127.0.0.1]") }
    }

    @Test("the system resolver reads localhost and numeric spellings as the C library does, and they are denied",
          arguments: ["localhost", "2130706433", "0177.0.0.1", "0x7f.0.0.1", "127.1", "017700000001"])
    func numericForms(_ host: String) async throws {
        do {
            _ = try await EgressGuard().check(host: host)
            Issue.record("\(host) was allowed")
        } catch let denied as EgressGuard.Denied {
            #expect(denied.reason == "loopback", "\(denied)")
        }
    }

    @Test("a task may not set Host, framing or hop-by-hop headers")
    func headers() async throws {
        let runner = HTTPRunner(egress: EgressGuard(policy: try EgressPolicy(allow: ["127.0.0.1/32"])))
        defer { Task { await runner.shutdown() } }
        for name in ["Host", "content-length", "Transfer-Encoding", "Connection", "Upgrade", "TE", "Proxy-Authorization"] {
            let invocation = TaskInvocation(
                executionId: "e", taskKey: "k", attempt: 1, action: .http,
                config: .object(["url": .string("http://127.0.0.1:9/"), "headers": .object([name: .string("x")])]),
                context: Expression.Context(input: .emptyObject, outputs: [:]))
            let outcome = await runner.run(invocation) { _, _ in }
            guard case .failed(let error) = outcome else {
                Issue.record("\(name) was accepted")
                continue
            }
            #expect(error.kind == "config" && !error.retryable && error.message.contains(name))
        }
        await runner.shutdown()
    }

    @Test("a denied destination fails the attempt with egress_denied before any connection, never retried")
    func deniedAttempt() async throws {
        let runner = HTTPRunner()
        let invocation = TaskInvocation(
            executionId: "e", taskKey: "k", attempt: 1, action: .http,
            config: .object(["url": .string("http://169.254.169.254/latest/meta-data/")]),
            context: Expression.Context(input: .emptyObject, outputs: [:]))
        let outcome = await runner.run(invocation) { _, _ in }
        await runner.shutdown()
        guard case .failed(let error) = outcome else {
            Issue.record("expected a denial, got \(outcome)")
            return
        }
        #expect(error.kind == "egress_denied")
        #expect(!error.retryable)
        #expect(error.message.hasPrefix("egress_denied: 169.254.169.254 is link-local"))
    }
}
