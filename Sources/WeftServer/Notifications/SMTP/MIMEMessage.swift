public import Foundation

/// A notification e-mail: a plain-text body and optionally an HTML one,
/// rendered as RFC 5322 / MIME (RFC 2045-2047) text with CRLF line ends.
/// Everything that reaches a header is stripped of CR and LF, so no value
/// (a workflow name in a subject, say) can add a header of its own.
public struct MIMEMessage: Sendable {
    public var fromAddress: String
    /// The sender's display name; non-ASCII is fine (RFC 2047 encoded).
    public var fromName: String?
    public var to: [String]
    public var subject: String
    public var text: String
    public var html: String?
    /// Extra header fields, after the standard ones (e.g. `X-Weft-Delivery-Id`).
    /// The ones `render` writes itself (From, To, Subject, ...) are refused.
    public var headers: [(String, String)]
    /// With or without the angle brackets.
    public var messageId: String

    public init(
        fromAddress: String, fromName: String? = nil, to: [String], subject: String, text: String,
        html: String? = nil, headers: [(String, String)] = [], messageId: String
    ) {
        self.fromAddress = fromAddress
        self.fromName = fromName
        self.to = to
        self.subject = subject
        self.text = text
        self.html = html
        self.headers = headers
        self.messageId = messageId
    }

    /// A fresh, globally unique Message-ID at `domain`.
    public static func newMessageId(domain: String) -> String {
        "<\(randomHex(16))@\(stripLineBreaks(domain))>"
    }

    /// Refuses what cannot be sent safely: addresses with line breaks,
    /// angle brackets or no `@` (they go into SMTP commands verbatim), no
    /// recipient, header names that are malformed or that `render` owns.
    public func validate() throws {
        try Self.validateAddress(fromAddress, role: "sender")
        guard !to.isEmpty else { throw SMTPError.invalidMessage("no recipient") }
        for address in to { try Self.validateAddress(address, role: "recipient") }
        for (name, _) in headers {
            guard Self.isFieldName(name) else { throw SMTPError.invalidMessage("malformed header name \(name.debugDescription)") }
            guard !Self.reservedHeaders.contains(name.lowercased()) else {
                throw SMTPError.invalidMessage("header \(name) is written by the renderer")
            }
        }
    }

    /// Refuses an address that would break out of `MAIL FROM:<...>` /
    /// `RCPT TO:<...>` or of its header. Non-ASCII needs SMTPUTF8, which
    /// this client does not speak.
    static func validateAddress(_ address: String, role: String) throws {
        guard !address.isEmpty else { throw SMTPError.invalidMessage("empty \(role) address") }
        let forbidden = address.unicodeScalars.contains { $0 == "<" || $0 == ">" || $0.value < 0x21 || $0.value >= 0x7f }
        guard !forbidden else {
            throw SMTPError.invalidMessage("\(role) address \(address.debugDescription) has a space, line break, angle bracket or non-ASCII character")
        }
        guard address.contains("@") else { throw SMTPError.invalidMessage("\(role) address \(address.debugDescription) has no @") }
    }

    /// The whole message, headers and body, with CRLF line ends (not yet
    /// dot-stuffed: that is the SMTP client's business).
    public func render(date: Date) -> String {
        render(date: date, boundary: "=_weft_" + Self.randomHex(16))
    }

    /// `boundary` starts with "=_": quoted-printable output never contains
    /// that pair ("=" is always followed by a hex digit or a line end), so
    /// no body can collide with it.
    func render(date: Date, boundary: String) -> String {
        var lines: [String] = [
            "Date: " + Self.rfc5322Date(date),
            Self.mailboxHeader("From", address: fromAddress, name: fromName),
            Self.addressListHeader("To", to.map(Self.stripLineBreaks)),
            Self.unstructuredHeader("Subject", subject),
            "Message-ID: " + Self.messageIdValue(messageId),
            "MIME-Version: 1.0",
        ]
        for (name, value) in headers where Self.isFieldName(name) && !Self.reservedHeaders.contains(name.lowercased()) {
            lines.append(Self.unstructuredHeader(name, value))
        }
        if let html {
            lines.append("Content-Type: multipart/alternative;\r\n boundary=\"\(boundary)\"")
            lines.append("")
            lines.append("--" + boundary)
            lines.append(contentsOf: Self.textPart(text, subtype: "plain", endsMessage: false))
            lines.append("--" + boundary)
            lines.append(contentsOf: Self.textPart(html, subtype: "html", endsMessage: false))
            lines.append("--" + boundary + "--")
        } else {
            lines.append(contentsOf: Self.textPart(text, subtype: "plain", endsMessage: true))
        }
        return lines.joined(separator: "\r\n") + "\r\n"
    }

    /// SMTP's DATA ends at a line holding a lone "."; a line of the message
    /// that starts with "." gets a second one, which the server removes
    /// (RFC 5321 4.5.2).
    public static func dotStuffed(_ body: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(body.utf8.count + 16)
        var atLineStart = true
        for byte in body.utf8 {
            if atLineStart && byte == UInt8(ascii: ".") { out.append(byte) }
            out.append(byte)
            atLineStart = byte == UInt8(ascii: "\n")
        }
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: Headers

    /// Headers `render` writes itself, plus Cc/Bcc: a copy header that does
    /// not match the envelope would mislead the reader.
    static let reservedHeaders: Set<String> = [
        "date", "from", "to", "cc", "bcc", "subject", "message-id", "mime-version",
        "content-type", "content-transfer-encoding", "sender",
    ]

    static func isFieldName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.allSatisfy { $0 >= 33 && $0 <= 126 && $0 != UInt8(ascii: ":") }
    }

    /// The recommended header line length (RFC 5322 2.1.1); lines with
    /// encoded-words stay within 76 (RFC 2047 2).
    private static let lineLimit = 78
    private static let encodedLineLimit = 76

    /// CR and LF become a space: removing them would glue words together,
    /// keeping them would start a new header.
    static func stripLineBreaks(_ value: String) -> String {
        var out = String.UnicodeScalarView()
        var lastWasBreak = false
        for scalar in value.unicodeScalars {
            if scalar == "\r" || scalar == "\n" {
                if !lastWasBreak { out.append(" ") }
                lastWasBreak = true
            } else {
                out.append(scalar)
                lastWasBreak = false
            }
        }
        return String(out)
    }

    /// "Name: value", folded at spaces, or as RFC 2047 encoded-words when
    /// the value is not plain ASCII.
    static func unstructuredHeader(_ name: String, _ value: String) -> String {
        let value = stripLineBreaks(value)
        let prefix = name + ": "
        if needsEncoding(value) {
            return prefix + encodedWords(value, firstLineUsed: prefix.utf8.count).joined(separator: "\r\n ")
        }
        return foldAtSpaces(prefix + value)
    }

    /// Plain ASCII headers go as they are, unless some control character,
    /// a "=?" that a reader would take for an encoded-word, or a run too
    /// long to fold (RFC 5322's hard limit is 998) makes encoding safer.
    static func needsEncoding(_ value: String) -> Bool {
        if value.contains("=?") { return true }
        var run = 0
        for byte in value.utf8 {
            if byte >= 0x7f || (byte < 0x20 && byte != 0x09) { return true }
            run = byte == 0x20 ? 0 : run + 1
            if run > 900 { return true }
        }
        return false
    }

    /// Breaks a long header line before spaces (the space then starts the
    /// continuation line, so unfolding restores the value exactly).
    static func foldAtSpaces(_ line: String) -> String {
        guard line.utf8.count > lineLimit else { return line }
        let words = line.split(separator: " ", omittingEmptySubsequences: false)
        var out = String(words[0])
        var current = out.utf8.count
        for word in words.dropFirst() {
            let length = word.utf8.count + 1
            if current + length > lineLimit && current > 0 && !word.isEmpty {
                out += "\r\n " + word
                current = length
            } else {
                out += " " + word
                current += length
            }
        }
        return out
    }

    /// RFC 2047 B-encoded words of at most 75 characters, each holding whole
    /// characters (a word must decode on its own), sized so that no line,
    /// the first with its "Name: " included, passes 76 characters.
    static func encodedWords(_ value: String, firstLineUsed: Int) -> [String] {
        let overhead = "=?UTF-8?B?".utf8.count + "?=".utf8.count
        // Base64 turns 3 bytes into 4 characters.
        func capacity(_ room: Int) -> Int { max((room - overhead) / 4 * 3, 12) }
        let firstCapacity = capacity(encodedLineLimit - firstLineUsed)
        let laterCapacity = capacity(encodedLineLimit - 1)

        var chunks: [[UInt8]] = []
        var chunk: [UInt8] = []
        func limit() -> Int { chunks.isEmpty ? firstCapacity : laterCapacity }
        func append(_ bytes: [UInt8]) {
            if !chunk.isEmpty && chunk.count + bytes.count > limit() {
                chunks.append(chunk)
                chunk = []
            }
            chunk += bytes
        }
        for character in value {
            let bytes = Array(character.utf8)
            if bytes.count <= laterCapacity {
                append(bytes)
            } else {
                // A cluster longer than a word (a long emoji sequence): split
                // between scalars, which readers join back.
                for scalar in character.unicodeScalars { append(Array(String(scalar).utf8)) }
            }
        }
        if !chunk.isEmpty || chunks.isEmpty { chunks.append(chunk) }
        return chunks.map { "=?UTF-8?B?" + Data($0).base64EncodedString() + "?=" }
    }

    /// `Name <address>`, the name quoted or encoded as it needs.
    static func mailboxHeader(_ header: String, address: String, name: String?) -> String {
        let address = stripLineBreaks(address)
        let prefix = header + ": "
        guard let rawName = name.map(stripLineBreaks), !rawName.trimmingCharacters(in: .whitespaces).isEmpty else {
            return prefix + address
        }
        let phrase: String
        if needsEncoding(rawName) {
            phrase = encodedWords(rawName, firstLineUsed: prefix.utf8.count).joined(separator: "\r\n ")
        } else if rawName.unicodeScalars.contains(where: { specials.contains($0) }) || rawName != rawName.trimmingCharacters(in: .whitespaces) {
            phrase = quoted(rawName)
        } else {
            phrase = rawName
        }
        // The address goes on a line of its own when the name's last line
        // leaves no room for it.
        let lastLine = (prefix + phrase).components(separatedBy: "\r\n").last ?? ""
        let separator = lastLine.utf8.count + 2 + address.utf8.count + 1 > encodedLineLimit ? "\r\n " : " "
        return prefix + phrase + separator + "<" + address + ">"
    }

    /// RFC 5322 3.2.3 specials: a display name holding one must be quoted.
    private static let specials = Set("()<>[]:;@\\,.\"".unicodeScalars)

    static func quoted(_ value: String) -> String {
        var out = "\""
        for scalar in value.unicodeScalars {
            if scalar == "\"" || scalar == "\\" { out.append("\\") }
            out.unicodeScalars.append(scalar)
        }
        return out + "\""
    }

    /// "To: a, b, c", folded after commas.
    static func addressListHeader(_ header: String, _ addresses: [String]) -> String {
        var out = header + ":"
        var current = out.utf8.count
        for (index, address) in addresses.enumerated() {
            let separator = index == 0 ? " " : ", "
            if index > 0 && current + separator.utf8.count + address.utf8.count > lineLimit {
                out += ",\r\n " + address
                current = 1 + address.utf8.count
            } else {
                out += separator + address
                current += separator.utf8.count + address.utf8.count
            }
        }
        return out
    }

    static func messageIdValue(_ id: String) -> String {
        let bare = stripLineBreaks(id).filter { $0 != " " }
        return bare.hasPrefix("<") && bare.hasSuffix(">") ? bare : "<" + bare + ">"
    }

    /// "Tue, 03 Mar 2026 14:05:09 +0000": English names whatever the
    /// process locale (en_US_POSIX), always UTC.
    static func rfc5322Date(_ date: Date) -> String {
        // A formatter per call: a message takes one, and DateFormatter is
        // not Sendable.
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(secondsFromGMT: 0)
        formatter.calendar = Calendar(identifier: .gregorian)
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss '+0000'"
        return formatter.string(from: date)
    }

    // MARK: Body

    /// In a multipart body the line end before the next boundary belongs
    /// to the boundary; a part that `endsMessage` has none after it, but
    /// SMTP ends the message with one, so a body without a final line end
    /// closes with a soft break to decode exactly as it was.
    static func textPart(_ body: String, subtype: String, endsMessage: Bool) -> [String] {
        let softEnd = endsMessage && !body.isEmpty && !body.hasSuffix("\n") && !body.hasSuffix("\r")
        return [
            "Content-Type: text/\(subtype); charset=utf-8",
            "Content-Transfer-Encoding: quoted-printable",
            "",
            quotedPrintable(body, softEnd: softEnd),
        ]
    }

    /// Quoted-printable (RFC 2045 6.7). Line ends of any style (CRLF, LF,
    /// CR) become CRLF hard breaks; longer lines get soft breaks ("=" at
    /// the end) so that none passes 76 characters; "=", bytes outside
    /// printable ASCII, and a space or tab ending a line are written as =XX
    /// (a relay may strip trailing whitespace).
    /// `softEnd` closes the text with a soft break ("=").
    static func quotedPrintable(_ text: String, softEnd: Bool = false) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count + text.utf8.count / 8)
        let lines = hardLines(Array(text.utf8))
        for (index, line) in lines.enumerated() {
            if index > 0 { out += [13, 10] }
            let endsSoftly = softEnd && index == lines.count - 1
            encodeQuotedPrintableLine(line, endsSoftly: endsSoftly, into: &out)
            if endsSoftly { out.append(UInt8(ascii: "=")) }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func hardLines(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
        var lines: [ArraySlice<UInt8>] = []
        var start = 0
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            guard byte == 13 || byte == 10 else {
                index += 1
                continue
            }
            lines.append(bytes[start..<index])
            if byte == 13, index + 1 < bytes.count, bytes[index + 1] == 10 { index += 1 }
            index += 1
            start = index
        }
        lines.append(bytes[start..<bytes.count])
        return lines
    }

    private static let hexDigits = Array("0123456789ABCDEF".utf8)

    /// `endsSoftly`: a soft break follows the line, so its last token too
    /// must leave room for the "=".
    private static func encodeQuotedPrintableLine(_ line: ArraySlice<UInt8>, endsSoftly: Bool, into out: inout [UInt8]) {
        var length = 0
        for index in line.indices {
            let byte = line[index]
            let isLast = index == line.index(before: line.endIndex)
            let literal: Bool
            if byte == 9 || byte == 32 {
                literal = !isLast
            } else {
                literal = byte >= 33 && byte <= 126 && byte != UInt8(ascii: "=")
            }
            let width = literal ? 1 : 3
            // Room for a soft break's "=" unless this is the line's last token.
            if length + width > (isLast && !endsSoftly ? 76 : 75) {
                out += [UInt8(ascii: "="), 13, 10]
                length = 0
            }
            if literal {
                out.append(byte)
            } else {
                out += [UInt8(ascii: "="), hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0x0f)]]
            }
            length += width
        }
    }

    // MARK: Randomness

    /// Hex of `count` random bytes (the system CSPRNG): boundaries and
    /// Message-IDs must not be guessable or collide.
    static func randomHex(_ count: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        var out = ""
        for _ in 0..<count {
            let byte = UInt8.random(in: 0...255, using: &generator)
            out.append(Character(Unicode.Scalar(hexDigits[Int(byte >> 4)])))
            out.append(Character(Unicode.Scalar(hexDigits[Int(byte & 0x0f)])))
        }
        return out.lowercased()
    }
}
