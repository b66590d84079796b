import Foundation
import Logging
public import SwiftProtobuf
public import WeftEngine
public import WeftObservability
public import WeftProto
public import WeftRPC
public import WeftServer
public import WeftStore

/// The whole API in process: `WeftApplication` on the in-memory store with a
/// running engine (`EngineHarness`), called through `InProcessTransport`, so
/// every call goes through the real router, interceptor chain, handlers and
/// proto mapping, gRPC and REST alike, without sockets.
public struct APIHarness: Sendable {
    public let engine: EngineHarness
    public let app: WeftApplication
    public let transport: InProcessTransport
    public let metrics: WeftMetrics

    public var store: MemoryStore { engine.store }

    /// Runs `body` with a fresh application (engine stopped afterwards).
    public static func with<T: Sendable>(
        configure: (inout WeftServerConfig) -> Void = { _ in },
        runners: [any TaskRunner] = [NoopRunner(), LogRunner(), TransformRunner(), ConditionRunner()],
        _ body: (APIHarness) async throws -> T
    ) async throws -> T {
        var config = WeftServerConfig()
        config.auth.scryptLogN = 10
        configure(&config)
        let store = MemoryStore()
        let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        // Secrets open under a random key of this run.
        let vault = SecretVault(
            store: store, sealer: SecretSealer(current: try MasterKey(text: MasterKey.generate())),
            audit: AuditLog(store: store, logger: quiet))
        let index = NotificationIndex()
        return try await EngineHarness.with(store: store, runners: runners, secrets: vault, notifier: index) { engine in
            let metrics = WeftMetrics()
            let app = try WeftApplication(
                config: config, users: engine.store, workflows: engine.store, executions: engine.store, organizations: engine.store,
                credentials: engine.store, logs: engine.store, schedules: engine.store, notifications: engine.store,
                notificationIndex: index, analytics: engine.store, engine: engine.engine, vault: vault,
                keyring: SigningKeyring(pinned: Array(repeating: 7, count: 32)), metrics: metrics,
                logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
            try await app.loadCredentials()
            return try await body(
                APIHarness(engine: engine, app: app, transport: InProcessTransport(environment: app.environment), metrics: metrics))
        }
    }

    /// `authorization: Bearer <token>` metadata.
    public static func bearer(_ token: String) -> Metadata {
        var metadata = Metadata()
        metadata.add("authorization", "Bearer \(token)")
        return metadata
    }

    /// Registers an account and logs in; returns its token and user.
    public func signUp(_ name: String = "Ada") async throws -> (token: String, user: Weft_V1_User) {
        let email = "\(name.lowercased())-\(UUID().uuidString.prefix(8))@example.com"
        let user: Weft_V1_User = try await transport.unary(
            "/weft.v1.UserService/Register",
            Weft_V1_RegisterRequest.with {
                $0.email = email
                $0.password = "correct horse"
                $0.name = name
            })
        let login: Weft_V1_LoginResponse = try await transport.unary(
            "/weft.v1.UserService/Login",
            Weft_V1_LoginRequest.with {
                $0.email = email
                $0.password = "correct horse"
            })
        return (login.token, user)
    }

    /// An org admin invites `member`'s email and `member` accepts: the way
    /// anyone joins an organization (and can then be a collaborator there).
    public func join(_ member: (token: String, user: Weft_V1_User), org orgId: String, admin: String, role: String = "member")
        async throws
    {
        let invitation: Weft_V1_Invitation = try await call(
            "/weft.v1.OrganizationService/CreateInvitation",
            Weft_V1_CreateInvitationRequest.with {
                $0.orgID = orgId
                $0.email = member.user.email
                $0.role = role
            }, token: admin)
        let _: Weft_V1_Organization = try await call(
            "/weft.v1.OrganizationService/AcceptInvitation",
            Weft_V1_RespondToInvitationRequest.with { $0.invitationID = invitation.id }, token: member.token)
    }

    /// A unary call with a token.
    public func call<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ path: String, _ request: Request, token: String?, as: Response.Type = Response.self
    ) async throws -> Response {
        try await transport.unary(path, request, metadata: token.map(Self.bearer) ?? Metadata())
    }

    /// A REST request with a token; the response body as JSON.
    public func rest(_ method: String, _ target: String, body: String? = nil, token: String? = nil) async
        -> (status: Int, json: [String: Any], headers: [(name: String, value: String)])
    {
        var headers: [(name: String, value: String)] = []
        if let token { headers.append(("authorization", "Bearer \(token)")) }
        let response = await transport.rest(method, target, body: body, headers: headers)
        let json = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any] ?? [:]
        return (response.status, json, response.headers)
    }
}
