import Foundation
import Testing
import WeftRPC

@testable import WeftServer

@Suite("the dashboard's cookie session")
struct SessionCookiesTests {
    @Test("cookies are read from every cookie header; CSRF tokens are bound to their session and key")
    func cookiesAndCSRF() {
        var metadata = Metadata()
        metadata.add("cookie", "a=1; weft_csrf=x")
        metadata.add("cookie", "weft_session=tok.en.value; other=2")
        #expect(SessionCookies.value("weft_session", in: metadata) == "tok.en.value")
        #expect(SessionCookies.value("weft_csrf", in: metadata) == "x")
        #expect(SessionCookies.value("weft_refresh", in: metadata) == nil)
        #expect(SessionCookies.value("weft", in: metadata) == nil, "a prefix is not a name")
        var planted = Metadata()
        planted.add("cookie", "weft_session=; weft_session=real")
        #expect(SessionCookies.value("weft_session", in: planted) == "real", "an empty duplicate does not hide the real one")
        let keyring = SigningKeyring(pinned: Array(repeating: 3, count: 32), kid: "k1")
        let cookies = SessionCookies(keyring: keyring, secure: false)
        let token = cookies.csrfToken(sessionId: "s1")
        #expect(cookies.csrfValid(token, sessionId: "s1"))
        #expect(!cookies.csrfValid(token, sessionId: "s2"), "another session's token")
        #expect(!cookies.csrfValid("", sessionId: "s1"))
        #expect(!cookies.csrfValid("not base64!", sessionId: "s1"))
        let other = SessionCookies(keyring: SigningKeyring(pinned: Array(repeating: 4, count: 32), kid: "k1"), secure: false)
        #expect(!other.csrfValid(token, sessionId: "s1"), "another server's key")
    }
}
