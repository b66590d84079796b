import Foundation
import WeftObservability
import WeftProto
import WeftRPC
import WeftStore

/// weft.v1.UserService: register, login, sessions (refresh, logout,
/// password change), who am I.
struct UserAPI: RPCService {
    static let name = "weft.v1.UserService"
    let deps: APIDependencies

    var handlers: [RPCHandler] {
        [
            .unary(service: Self.name, method: "Register", rest: [.post("/users/register", status: 201)], access: .publicAuth) {
                (request: Weft_V1_RegisterRequest, context) in
                try await audited(context) { notes in try await register(request, notes) }
            },
            .unary(service: Self.name, method: "Login", rest: [.post("/users/login")], access: .publicAuth) {
                (request: Weft_V1_LoginRequest, context) in
                var response = try await audited(context) { notes in try await login(request, notes, peer: context.peer) }
                try cookieSession(&response, context)
                return response
            },
            .unary(service: Self.name, method: "GetCurrentUser", rest: [.get("/users/me")]) {
                (_: Weft_V1_GetCurrentUserRequest, context) in
                let caller = try Caller(context)
                guard let user = try await deps.users.user(id: caller.userId) else {
                    throw RPCError(code: .unauthenticated, message: "the token's user no longer exists")
                }
                return ProtoMapping.user(user)
            },
            .unary(service: Self.name, method: "Refresh", rest: [.post("/users/refresh")], access: .publicAuth) {
                (request: Weft_V1_RefreshRequest, context) in
                var request = request
                // The dashboard's refresh token rides in its httpOnly cookie.
                if request.refreshToken.isEmpty, SessionCookies.wanted(context),
                    let token = SessionCookies.value(SessionCookies.refresh, in: context.requestMetadata)
                {
                    request.refreshToken = token
                }
                var response: Weft_V1_LoginResponse
                do {
                    response = try await audited(context) { [request] notes in try await refresh(request, notes) }
                } catch var error as RPCError where error.code == .unauthenticated && SessionCookies.wanted(context) {
                    // The session is over (revoked, expired, reused): its
                    // cookies go too, so the page stops offering them.
                    deps.auth.cookies.clear(into: &error.metadata)
                    throw error
                }
                try cookieSession(&response, context)
                return response
            },
            .unary(service: Self.name, method: "Logout", rest: [.post("/users/logout")]) {
                (request: Weft_V1_LogoutRequest, context) in
                let response = try await logout(request, try Caller(context))
                if context.transport == .rest,
                    SessionCookies.wanted(context) || SessionCookies.value(SessionCookies.session, in: context.requestMetadata) != nil
                {
                    deps.auth.cookies.clear(context)
                }
                return response
            },
            .unary(service: Self.name, method: "ChangePassword", rest: [.post("/users/me/password")]) {
                (request: Weft_V1_ChangePasswordRequest, context) in
                var response = try await changePassword(request, try Caller(context), peer: context.peer)
                try cookieSession(&response, context)
                return response
            },
        ]
    }

    /// For a REST caller that asked for a cookie session (the dashboard):
    /// the tokens go into httpOnly cookies and out of the body. Fails
    /// closed: a token it cannot read never goes back in the body.
    private func cookieSession(_ response: inout Weft_V1_LoginResponse, _ context: ServerContext) throws {
        guard SessionCookies.wanted(context) else { return }
        guard case .success(let claims) = deps.auth.signer.verify(response.token) else {
            throw RPCError(code: .internal, message: "the new session could not be put in cookies")
        }
        deps.auth.cookies.issue(&response, sessionId: claims.sessionId, context: context)
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
        let passwordHash = try await hash(request.password)
        let now = Date.nowMillis
        let user = UserRecord(
            id: IDGenerator.make(IDGenerator.user, now: now), email: email, name: name,
            passwordHash: passwordHash, createdAt: now, updatedAt: now)
        // Every user belongs to an organization: their own, created with them.
        let org = OrganizationRecord(
            id: IDGenerator.make(IDGenerator.organization, now: now), name: "\(name)'s organization",
            plan: deps.quotas.plans.defaultPlan, createdAt: now)
        try await deps.users.createUser(user, organization: org)
        deps.engine.workflowLabels?.created(orgId: org.id)
        audit.note(org: org.id, resource: ("user", user.id), actor: user.id)
        deps.quotas.remember(userId: user.id, org: org)
        deps.metrics.counter(MetricNames.accountsRegistered, help: "Accounts created.").increment()
        return ProtoMapping.user(user)
    }

    func login(_ request: Weft_V1_LoginRequest, _ audit: CallAudit, peer: String) async throws -> Weft_V1_LoginResponse {
        guard !request.email.isEmpty else { throw APIError.required("email") }
        guard !request.password.isEmpty else { throw APIError.required("password") }
        guard request.password.utf8.count <= APILimits.passwordMaxBytes else {
            throw RPCError(code: .invalidArgument, message: "password must be at most \(APILimits.passwordMaxBytes) bytes")
        }
        guard request.email.utf8.count <= APILimits.emailMaxBytes else {
            throw RPCError(code: .invalidArgument, message: "email must be at most \(APILimits.emailMaxBytes) bytes")
        }
        let email = request.email.trimmingCharacters(in: .whitespaces)
        let address = ClientAddress.host(of: peer)
        // Refused before any hashing: a flood costs no scrypt.
        try deps.logins.check(email: email, address: address)
        let user = try await deps.users.user(email: email)
        if let user {
            audit.note(resource: ("user", user.id), actor: user.id)
            if let home = try await deps.orgs.memberships(userId: user.id).first { audit.note(org: home.1.id) }
        }
        // An unknown email costs the same hash as a known one.
        guard try await verify(request.password, against: user?.passwordHash), let user else {
            deps.logins.failed(email: email, address: address)
            throw wrongCredentials()
        }
        deps.logins.succeeded(email: email)
        return try await startSession(for: user)
    }

    func refresh(_ request: Weft_V1_RefreshRequest, _ audit: CallAudit) async throws -> Weft_V1_LoginResponse {
        guard !request.refreshToken.isEmpty else { throw APIError.required("refresh_token") }
        guard request.refreshToken.utf8.count <= 256 else { throw invalidRefresh() }
        let now = Date.nowMillis
        let next = Self.newRefreshToken()
        let outcome = try await deps.credentials.rotateRefreshToken(
            hash: ApiKeyIndex.hash(request.refreshToken), nextHash: ApiKeyIndex.hash(next),
            nextExpiresAt: now.addingTimeInterval(deps.refreshLifetime), now: now)
        switch outcome {
        case .invalid:
            throw invalidRefresh()
        case .reused(let userId, let familyId):
            // A spent token came back: someone holds a copy. End the session.
            audit.note(resource: ("user", userId), actor: userId)
            audit.detail("reason", "refresh_token_reuse")
            deps.auth.sessions.revoke([familyId])
            countRevoked("refresh_reuse", 1)
            deps.metrics.counter(
                MetricNames.authFailures, help: "Calls rejected as unauthenticated, by reason.", labels: [("reason", "refresh_reuse")]
            ).increment()
            throw RPCError(
                code: .unauthenticated,
                message: "this refresh token was used already; the session is revoked for safety: log in again")
        case .rotated(let userId, let familyId):
            audit.note(resource: ("user", userId), actor: userId)
            guard let user = try await deps.users.user(id: userId) else { throw invalidRefresh() }
            return response(user: user, sessionId: familyId, refreshToken: next, refreshExpires: now.addingTimeInterval(deps.refreshLifetime))
        }
    }

    func logout(_ request: Weft_V1_LogoutRequest, _ caller: Caller) async throws -> Weft_V1_LogoutResponse {
        let now = Date.nowMillis
        var response = Weft_V1_LogoutResponse()
        if request.allSessions {
            // The version bump ends every access token at once; the refresh
            // tokens are revoked in the store.
            let version = try await deps.credentials.bumpTokenVersion(userId: caller.userId, now: now)
            deps.auth.sessions.setVersion(version, of: caller.userId)
            let families = try await deps.credentials.revokeSessions(userId: caller.userId, familyId: nil, now: now)
            deps.auth.sessions.revoke(families, now: now)
            response.revokedSessions = Int32(max(families.count, 1))
        } else {
            guard let session = caller.sessionId else {
                throw RPCError(
                    code: .failedPrecondition,
                    message: "this credential is not a login session; revoke an API key with DELETE /api-keys/{apiKeyId}")
            }
            _ = try await deps.credentials.revokeSessions(userId: caller.userId, familyId: session, now: now)
            deps.auth.sessions.revoke([session], now: now)
            response.revokedSessions = 1
        }
        countRevoked(request.allSessions ? "logout_all" : "logout", Int(response.revokedSessions))
        return response
    }

    func changePassword(_ request: Weft_V1_ChangePasswordRequest, _ caller: Caller, peer: String) async throws
        -> Weft_V1_LoginResponse
    {
        guard !request.currentPassword.isEmpty else { throw APIError.required("current_password") }
        guard !request.newPassword.isEmpty else { throw APIError.required("new_password") }
        guard request.newPassword.unicodeScalars.count >= APILimits.passwordMinCharacters else {
            throw RPCError(
                code: .invalidArgument, message: "new_password must be at least \(APILimits.passwordMinCharacters) characters")
        }
        for (field, value) in [("current_password", request.currentPassword), ("new_password", request.newPassword)]
        where value.utf8.count > APILimits.passwordMaxBytes {
            throw RPCError(code: .invalidArgument, message: "\(field) must be at most \(APILimits.passwordMaxBytes) bytes")
        }
        guard caller.key == nil else {
            throw RPCError(code: .permissionDenied, message: "an API key cannot change its user's password; log in")
        }
        guard let user = try await deps.users.user(id: caller.userId) else {
            throw RPCError(code: .unauthenticated, message: "the token's user no longer exists")
        }
        let address = ClientAddress.host(of: peer)
        try deps.logins.check(email: user.email, address: address)
        guard try await verify(request.currentPassword, against: user.passwordHash) else {
            deps.logins.failed(email: user.email, address: address)
            throw RPCError(code: .unauthenticated, message: "current_password is wrong")
        }
        let newHash = try await hash(request.newPassword)
        let now = Date.nowMillis
        let version = try await deps.credentials.changePassword(userId: user.id, passwordHash: newHash, now: now)
        deps.auth.sessions.setVersion(version, of: user.id)
        let families = try await deps.credentials.revokeSessions(userId: user.id, familyId: nil, now: now)
        deps.auth.sessions.revoke(families, now: now)
        countRevoked("password_change", max(1, families.count))
        return try await startSession(for: user)
    }

    /// A new session: a refresh-token family in the store and its first
    /// access token.
    private func startSession(for user: UserRecord) async throws -> Weft_V1_LoginResponse {
        let now = Date.nowMillis
        // Short (it rides in every access token): 96 random bits.
        let sessionId = "s" + Base64URL.encode(Crypto.randomBytes(12))
        let refreshToken = Self.newRefreshToken()
        let refreshExpires = now.addingTimeInterval(deps.refreshLifetime)
        try await deps.credentials.createRefreshToken(RefreshTokenRecord(
            hash: ApiKeyIndex.hash(refreshToken), familyId: sessionId, userId: user.id, createdAt: now, expiresAt: refreshExpires))
        return response(user: user, sessionId: sessionId, refreshToken: refreshToken, refreshExpires: refreshExpires)
    }

    private func response(user: UserRecord, sessionId: String, refreshToken: String, refreshExpires: Date)
        -> Weft_V1_LoginResponse
    {
        let (token, expires) = deps.auth.signer.issue(
            userId: user.id, sessionId: sessionId, version: deps.auth.sessions.version(of: user.id))
        var response = Weft_V1_LoginResponse()
        response.token = token
        response.expiresAt = ProtoMapping.timestamp(expires)
        response.user = ProtoMapping.user(user)
        response.refreshToken = refreshToken
        response.refreshExpiresAt = ProtoMapping.timestamp(refreshExpires)
        return response
    }

    /// `wrt_` + 32 random bytes; stored only as its SHA-256.
    static func newRefreshToken() -> String { "wrt_" + Base64URL.encode(Crypto.randomBytes(32)) }

    private func invalidRefresh() -> RPCError {
        deps.metrics.counter(
            MetricNames.authFailures, help: "Calls rejected as unauthenticated, by reason.", labels: [("reason", "bad_refresh")]
        ).increment()
        return RPCError(code: .unauthenticated, message: "the refresh token is not valid (unknown, expired or revoked); log in again")
    }

    private func countRevoked(_ reason: String, _ count: Int) {
        deps.metrics.counter(MetricNames.sessionsRevoked, help: "Login sessions revoked, by reason.", labels: [("reason", reason)])
            .increment(by: Int64(count))
    }

    /// scrypt on the hashing pool; an unknown account (nil) runs the same
    /// work against a dummy hash and fails.
    private func verify(_ password: String, against stored: String?) async throws -> Bool {
        let hasher = deps.passwords
        return try await deps.hashing.run {
            guard let stored else {
                hasher.dummyVerify(password)
                return false
            }
            return hasher.verify(password, against: stored)
        }
    }

    private func hash(_ password: String) async throws -> String {
        let hasher = deps.passwords
        return try await deps.hashing.run { hasher.hash(password) }
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
