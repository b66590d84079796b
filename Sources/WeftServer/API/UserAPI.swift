import Foundation
import WeftObservability
import WeftProto
import WeftRPC
import WeftStore

/// weft.v1.UserService: register, login, who am I.
struct UserAPI: RPCService {
    static let name = "weft.v1.UserService"
    let deps: APIDependencies

    var handlers: [RPCHandler] {
        [
            .unary(service: Self.name, method: "Register", rest: [.post("/users/register", status: 201)], access: .public) {
                (request: Weft_V1_RegisterRequest, context) in
                try await audited(context) { notes in try await register(request, notes) }
            },
            .unary(service: Self.name, method: "Login", rest: [.post("/users/login")], access: .public) {
                (request: Weft_V1_LoginRequest, context) in
                try await audited(context) { notes in try await login(request, notes) }
            },
            .unary(service: Self.name, method: "GetCurrentUser", rest: [.get("/users/me")]) {
                (_: Weft_V1_GetCurrentUserRequest, context) in
                let caller = try Caller(context)
                guard let user = try await deps.users.user(id: caller.userId) else {
                    throw RPCError(code: .unauthenticated, message: "the token's user no longer exists")
                }
                return ProtoMapping.user(user)
            },
        ]
    }

    /// Register and login are public (the interceptor chain's audit does not
    /// see them): they record their own events, failures included, once
    /// the account is known.
    private func audited<T>(_ context: ServerContext, _ body: (CallAudit) async throws -> T) async throws -> T {
        let notes = CallAudit()
        func record(_ outcome: RPCError.Code) {
            let current = notes.current
            guard let actor = current.actorId else { return }  // an unknown email: nobody's trail
            deps.audit.append(AuditRecorder.event(
                current, actor: actor, action: context.descriptor.spanName, outcome: outcome, peer: context.peer,
                traceparent: context.requestMetadata[string: "traceparent"], transport: context.transport))
        }
        do {
            let result = try await body(notes)
            record(.ok)
            return result
        } catch {
            record(RPCError(from: error).code)
            throw error
        }
    }

    func register(_ request: Weft_V1_RegisterRequest, _ audit: CallAudit) async throws -> Weft_V1_User {
        let email = request.email.trimmingCharacters(in: .whitespaces)
        guard !email.isEmpty else { throw APIError.required("email") }
        guard Self.isPlausibleEmail(email) else {
            throw RPCError(code: .invalidArgument, message: "email \"\(email)\" is not a valid address")
        }
        // Counted in Unicode scalars, as JSON Schema counts `minLength`.
        guard request.password.unicodeScalars.count >= APILimits.passwordMinCharacters else {
            throw RPCError(
                code: .invalidArgument, message: "password must be at least \(APILimits.passwordMinCharacters) characters")
        }
        guard request.password.utf8.count <= APILimits.passwordMaxBytes else {
            throw RPCError(code: .invalidArgument, message: "password must be at most \(APILimits.passwordMaxBytes) bytes")
        }
        let name = request.name.trimmingCharacters(in: .whitespaces)
        guard !name.isEmpty else { throw APIError.required("name") }
        guard !name.unicodeScalars.contains("\0") else {
            throw RPCError(code: .invalidArgument, message: "name must not contain NUL characters")
        }
        guard name.count <= APILimits.nameMaxCharacters else {
            throw RPCError(code: .invalidArgument, message: "name is longer than \(APILimits.nameMaxCharacters) characters")
        }
        // Cheap duplicate check first, so a taken email costs no scrypt.
        if try await deps.users.user(email: email) != nil {
            throw RPCError(code: .alreadyExists, message: "a user with email \(email) already exists")
        }
        let now = Date.nowMillis
        let user = UserRecord(
            id: IDGenerator.make(IDGenerator.user, now: now), email: email, name: name,
            passwordHash: deps.passwords.hash(request.password), createdAt: now, updatedAt: now)
        // Every user belongs to an organization: their own, created with them.
        let org = OrganizationRecord(
            id: IDGenerator.make(IDGenerator.organization, now: now), name: "\(name)'s organization",
            plan: deps.quotas.plans.defaultPlan, createdAt: now)
        try await deps.users.createUser(user, organization: org)
        audit.note(org: org.id, resource: ("user", user.id), actor: user.id)
        deps.quotas.remember(userId: user.id, org: org)
        deps.metrics.counter(MetricNames.accountsRegistered, help: "Accounts created.").increment()
        return ProtoMapping.user(user)
    }

    func login(_ request: Weft_V1_LoginRequest, _ audit: CallAudit) async throws -> Weft_V1_LoginResponse {
        guard !request.email.isEmpty else { throw APIError.required("email") }
        guard !request.password.isEmpty else { throw APIError.required("password") }
        let user = try await deps.users.user(email: request.email.trimmingCharacters(in: .whitespaces))
        guard let user else {
            deps.passwords.dummyVerify(request.password)
            throw wrongCredentials()
        }
        audit.note(resource: ("user", user.id), actor: user.id)
        if let home = try await deps.orgs.memberships(userId: user.id).first { audit.note(org: home.1.id) }
        guard deps.passwords.verify(request.password, against: user.passwordHash) else { throw wrongCredentials() }
        let (token, expires) = deps.auth.signer.issue(userId: user.id)
        var response = Weft_V1_LoginResponse()
        response.token = token
        response.expiresAt = ProtoMapping.timestamp(expires)
        response.user = ProtoMapping.user(user)
        return response
    }

    private func wrongCredentials() -> RPCError {
        deps.metrics.counter(
            MetricNames.authFailures, help: "Calls rejected as unauthenticated, by reason.",
            labels: [("reason", "bad_credentials")]
        ).increment()
        return RPCError(code: .unauthenticated, message: "email or password is wrong")
    }

    static func isPlausibleEmail(_ email: String) -> Bool {
        let parts = email.split(separator: "@", omittingEmptySubsequences: false)
        return parts.count == 2 && !parts[0].isEmpty && parts[1].contains(".") && !parts[1].hasPrefix(".")
            && !parts[1].hasSuffix(".") && email.utf8.count <= APILimits.emailMaxBytes && !email.contains(where: \.isWhitespace)
            && !email.unicodeScalars.contains { $0.value < 0x20 }
    }
}
