/// One SMTP reply: a three-digit code and its text lines (a multi-line
/// reply has "250-" continuation lines and ends at "250 ").
struct SMTPReply: Sendable, Equatable {
    var code: Int
    var lines: [String]

    /// The text on one line, for receipts and errors.
    var text: String { lines.joined(separator: " ") }

    var isPositive: Bool { (200..<400).contains(code) }
}

/// Splits the server's bytes into replies. Pure (no channel), so each rule
/// is testable on bytes alone; the limits keep a hostile server from
/// growing our memory without end.
struct SMTPReplyDecoder {
    /// RFC 5321 4.5.3.1.5 says 512 for a reply line; EHLO lists run longer
    /// in practice, 4 KiB is far beyond any real one.
    static let maxLineLength = 4096
    /// A reply is a handful of lines; EHLO lists about twenty.
    static let maxLines = 200

    private var buffer: [UInt8] = []
    private var pendingCode: Int?
    private var pendingLines: [String] = []

    /// Bytes received but not yet part of a whole reply.
    var hasBufferedInput: Bool { !buffer.isEmpty || pendingCode != nil }

    mutating func feed(_ bytes: some Sequence<UInt8>) throws(SMTPError) -> [SMTPReply] {
        buffer.append(contentsOf: bytes)
        var replies: [SMTPReply] = []
        var start = 0
        while let newline = buffer[start...].firstIndex(of: UInt8(ascii: "\n")) {
            var end = newline
            if end > start && buffer[end - 1] == UInt8(ascii: "\r") { end -= 1 }
            let line = buffer[start..<end]
            start = newline + 1
            guard line.count <= Self.maxLineLength else { throw .protocolError("reply line longer than \(Self.maxLineLength) bytes") }
            if let reply = try parse(line) { replies.append(reply) }
        }
        buffer.removeFirst(start)
        guard buffer.count <= Self.maxLineLength else { throw .protocolError("reply line longer than \(Self.maxLineLength) bytes") }
        return replies
    }

    /// Adds one line; returns the reply it completes, if it does.
    private mutating func parse(_ line: ArraySlice<UInt8>) throws(SMTPError) -> SMTPReply? {
        let bytes = Array(line)
        guard bytes.count >= 3, bytes[0...2].allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            (UInt8(ascii: "2")...UInt8(ascii: "5")).contains(bytes[0])
        else {
            throw .protocolError("malformed reply line \(Self.printable(bytes).debugDescription)")
        }
        let code = bytes[0...2].reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
        let separator = bytes.count > 3 ? bytes[3] : UInt8(ascii: " ")
        guard separator == UInt8(ascii: " ") || separator == UInt8(ascii: "-") else {
            throw .protocolError("malformed reply line \(Self.printable(bytes).debugDescription)")
        }
        if let pendingCode, pendingCode != code {
            throw .protocolError("reply code changed from \(pendingCode) to \(code) within one reply")
        }
        pendingCode = code
        pendingLines.append(Self.printable(bytes.dropFirst(4)))
        guard pendingLines.count <= Self.maxLines else { throw .protocolError("reply longer than \(Self.maxLines) lines") }
        guard separator == UInt8(ascii: " ") else { return nil }
        let reply = SMTPReply(code: code, lines: pendingLines)
        self.pendingCode = nil
        pendingLines = []
        return reply
    }

    /// Server text as it may go into an error or a log: UTF-8 (lossy), with
    /// control characters dropped.
    static func printable(_ bytes: some Collection<UInt8>) -> String {
        String(decoding: bytes, as: UTF8.self).unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7f }
            .reduce(into: "") { $0.unicodeScalars.append($1) }
    }
}

/// What the server's EHLO reply offers (RFC 5321 4.1.1.1): one keyword per
/// line after the first, with parameters.
struct SMTPExtensions: Sendable, Equatable {
    var keywords: [String: [String]] = [:]

    init() {}

    init(ehlo reply: SMTPReply) {
        for line in reply.lines.dropFirst() {
            let words = line.split(separator: " ").map(String.init)
            guard let first = words.first else { continue }
            // Some servers still advertise "AUTH=LOGIN PLAIN" (pre-RFC 4954 syntax).
            let parts = first.split(separator: "=", maxSplits: 1).map(String.init)
            // "250 =" splits into nothing: a line without a keyword is skipped.
            guard let head = parts.first else { continue }
            let keyword = head.uppercased()
            let parameters = (parts.count > 1 ? [parts[1]] : []) + words.dropFirst()
            keywords[keyword, default: []] += parameters.map { $0.uppercased() }
        }
    }

    var startTLS: Bool { keywords["STARTTLS"] != nil }
    var authMechanisms: Set<String> { Set(keywords["AUTH"] ?? []) }
}
