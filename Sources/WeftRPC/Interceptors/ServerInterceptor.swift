import Synchronization
/// Who is calling, as an authenticating interceptor established it.
public struct Principal: Sendable, Hashable {
    public let id: String
    /// How the caller authenticated, when that narrows or names anything
    /// (an API key's limits, a login session); nil: the user's full rights.
    /// One reference, built once per credential by the authenticator and
    /// kept with its cache: a call copies a principal without allocating.
    public let credential: PrincipalCredential?

    public init(id: String, credential: PrincipalCredential? = nil) {
        self.id = id
        self.credential = credential
    }

    /// What narrows the caller's rights (an API key's scopes).
    public var limits: (any PrincipalLimits)? { credential?.limits }
    /// The login session the credential belongs to, if it is one.
    public var sessionId: String? { credential?.sessionId }

    public static func == (a: Principal, b: Principal) -> Bool {
        a.id == b.id && a.credential?.limits?.credentialId == b.credential?.limits?.credentialId
            && a.sessionId == b.sessionId
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(id)
        hasher.combine(credential?.limits?.credentialId)
    }
}

/// The credential behind a principal.
public final class PrincipalCredential: Sendable {
    public let limits: (any PrincipalLimits)?
    public let sessionId: String?

    public init(limits: (any PrincipalLimits)? = nil, sessionId: String? = nil) {
        self.limits = limits
        self.sessionId = sessionId
    }
}

/// A credential narrower than its user (an API key): handlers read it
/// through the server's own type.
public protocol PrincipalLimits: Sendable {
    /// Names the credential (e.g. the API key id), for rate limits and logs.
    var credentialId: String { get }
}

/// Whether a method needs an authenticated caller. Methods are private
/// unless they say otherwise: an interceptor that authenticates refuses
/// every call to a non-public method without valid credentials.
public enum RPCAccess: Sendable, Hashable {
    /// Needs a caller (the default).
    case authenticated
    /// Anyone may call it (health, reflection).
    case `public`
    /// Anyone may call it, and it takes or hands out credentials (register,
    /// login, refresh): interceptors that guard those (rate limits) see it,
    /// while plain public calls such as Health/Check skip the chain.
    case publicAuth

    /// Needs no caller.
    public var isPublic: Bool { self != .authenticated }
}

/// A call as interceptors see it: before its request message is decoded or
/// validated, whichever transport brought it (gRPC over HTTP/2, REST over
/// HTTP/1.1 or HTTP/2, the in-process test transport).
public struct CallHead: Sendable {
    public enum Transport: String, Sendable {
        case grpc
        case rest
        case inProcess = "in-process"
    }

    public let descriptor: RPCMethodDescriptor
    public let access: RPCAccess
    /// Request metadata (gRPC metadata, or the HTTP headers REST maps to it).
    public let metadata: Metadata
    public let transport: Transport
    public let peer: String
    /// The subject CN of the client's verified TLS certificate (mutual TLS),
    /// which an authenticating interceptor may map to an identity.
    public var peerIdentity: String?
    /// The HTTP method of a REST call (nil for gRPC): a cookie session's
    /// CSRF check applies to everything but reads.
    public var httpMethod: String?
    /// Who calls; set by an authenticating interceptor, read by handlers
    /// through `ServerContext.caller`.
    public var principal: Principal?
    /// Set by an interceptor that audits this call: the handler adds what
    /// only it knows (organization, resource) through `ServerContext.audit`.
    public var audit: CallAudit?

    public init(
        descriptor: RPCMethodDescriptor, access: RPCAccess, metadata: Metadata, transport: Transport, peer: String,
        principal: Principal? = nil
    ) {
        self.descriptor = descriptor
        self.access = access
        self.metadata = metadata
        self.transport = transport
        self.peer = peer
        self.principal = principal
    }
}

/// What a handler tells the audit about its call (organization, resource,
/// the actor when the call itself establishes it, e.g. login). Shared by
/// the interceptor that created it and the call's `ServerContext`.
public final class CallAudit: Sendable {
    public struct Notes: Sendable {
        public var orgId = ""
        public var resourceType = ""
        public var resourceId = ""
        public var actorId: String?
        public var detail: [String: String] = [:]
    }

    private let notes = Mutex(Notes())

    public init() {}

    public func note(org: String? = nil, resource: (type: String, id: String)? = nil, actor: String? = nil) {
        notes.withLock { notes in
            if let org, !org.isEmpty { notes.orgId = org }
            if let resource {
                notes.resourceType = resource.type
                notes.resourceId = resource.id
            }
            if let actor { notes.actorId = actor }
        }
    }

    public func detail(_ key: String, _ value: String) { notes.withLock { $0.detail[key] = value } }

    public var current: Notes { notes.withLock { $0 } }
}

/// One stage of the server's interceptor chain. Every RPC call and REST
/// operation goes through the same chain on every transport, in order,
/// before its handler runs and before its request is decoded: so an
/// unauthenticated call with a malformed body is refused as
/// unauthenticated, not as malformed. (Plain HTTP routes such as `/metrics`,
/// and what a transport refuses by itself, do not reach it.)
///
/// The chain's fixed stages (tracing, metrics, the access log) are written
/// once in `CallObservability`; interceptors are what a server adds:
/// authentication now, rate limiting and audit later.
public protocol ServerInterceptor: Sendable {
    /// Admits the call or refuses it by throwing (the error is the call's
    /// status: UNAUTHENTICATED, RESOURCE_EXHAUSTED, ...). May establish the
    /// caller (`call.principal`).
    func admit(_ call: inout CallHead) throws
    /// Whether `admit` needs to see calls of public methods (rate limits,
    /// audit); an authenticator does not. Default: it does.
    var seesPublicMethods: Bool { get }
    /// Whether it sees calls of `.publicAuth` methods (register, login,
    /// refresh). Default: `seesPublicMethods`.
    var seesAuthMethods: Bool { get }
    /// Whether it sees calls of authenticated methods. Default: yes (a rate
    /// limiter configured for auth routes only says no, and costs the other
    /// calls nothing).
    var seesAuthenticatedMethods: Bool { get }
    /// The call ended with `code` (audit, per-caller accounting). Runs for
    /// admitted calls only.
    func completed(_ call: CallHead, code: RPCError.Code)
    /// Whether `completed` does anything: transports keep a call's head
    /// until its end only for interceptors that want it. Default: no.
    var wantsCompletion: Bool { get }
    /// Whether `completed` matters for this call (after `admit`); default:
    /// `wantsCompletion`. A transport keeps the head only when some
    /// interceptor wants this call's end.
    func wantsCompletion(of call: CallHead) -> Bool
}

extension ServerInterceptor {
    public func completed(_ call: CallHead, code: RPCError.Code) {}
    public var wantsCompletion: Bool { false }
    public func wantsCompletion(of call: CallHead) -> Bool { wantsCompletion }
    public var seesPublicMethods: Bool { true }
    public var seesAuthMethods: Bool { seesPublicMethods }
    public var seesAuthenticatedMethods: Bool { true }
}

/// The interceptors of a server, in order.
public struct InterceptorChain: Sendable {
    public let interceptors: [any ServerInterceptor]
    /// Some interceptor wants `completed`: a transport keeps the call's
    /// head until its end only then.
    let wantsCompletion: Bool

    /// Some interceptor looks at calls of public methods.
    private let seesPublicMethods: Bool
    /// Some interceptor looks at calls of `.publicAuth` methods.
    private let seesAuthMethods: Bool

    /// The interceptors that may want a call's end.
    private let completing: [any ServerInterceptor]

    /// The interceptors that take part in calls of each access, worked out
    /// once: a call walks only its own list.
    private let authenticated: [any ServerInterceptor]
    private let publicOnes: [any ServerInterceptor]
    private let auth: [any ServerInterceptor]

    public init(_ interceptors: [any ServerInterceptor] = []) {
        self.interceptors = interceptors
        self.wantsCompletion = interceptors.contains { $0.wantsCompletion }
        self.completing = interceptors.filter { $0.wantsCompletion }
        self.seesPublicMethods = interceptors.contains { $0.seesPublicMethods }
        self.seesAuthMethods = interceptors.contains { $0.seesAuthMethods }
        authenticated = interceptors.filter { $0.seesAuthenticatedMethods }
        publicOnes = interceptors.filter { $0.seesPublicMethods }
        auth = interceptors.filter { $0.seesAuthMethods }
    }

    private func list(_ access: RPCAccess) -> [any ServerInterceptor] {
        switch access {
        case .authenticated: return authenticated
        case .public: return publicOnes
        case .publicAuth: return auth
        }
    }

    /// Whether `interceptor` takes part in calls with this access.
    private static func sees(_ interceptor: any ServerInterceptor, _ access: RPCAccess) -> Bool {
        switch access {
        case .authenticated: return interceptor.seesAuthenticatedMethods
        case .public: return interceptor.seesPublicMethods
        case .publicAuth: return interceptor.seesAuthMethods
        }
    }

    /// Whether a call with this access goes through any interceptor (a
    /// transport builds no `CallHead` for a call that does not: the
    /// Health/Check path stays as cheap as it was).
    func applies(to access: RPCAccess) -> Bool {
        switch access {
        case .authenticated: return !authenticated.isEmpty
        case .public: return seesPublicMethods
        case .publicAuth: return seesAuthMethods
        }
    }

    /// Runs every interceptor's `admit`; the first refusal ends the call.
    func admit(_ call: inout CallHead) throws {
        for interceptor in list(call.access) { try interceptor.admit(&call) }
    }

    /// Whether some interceptor wants this admitted call's end (a
    /// transport keeps its head only then).
    func wantsCompletion(of call: CallHead) -> Bool {
        guard wantsCompletion else { return false }
        return completing.contains { Self.sees($0, call.access) && $0.wantsCompletion(of: call) }
    }

    /// Tells the interceptors that admitted the call (and want to know) how it ended.
    func completed(_ call: CallHead, code: RPCError.Code) {
        guard wantsCompletion else { return }
        for interceptor in completing where Self.sees(interceptor, call.access) && interceptor.wantsCompletion(of: call) {
            interceptor.completed(call, code: code)
        }
    }
}
