import NIOCore
import NIOHTTP1

/// Writes HTTP/1.1 responses as bytes: the status line, the headers and the
/// body in one buffer, one write per response. NIOHTTP1's encoder took a
/// head, a body and an end message per response, each through three outbound
/// handlers; on pipelined REST that was the largest cost left after the
/// handler itself (Step 13).
///
/// The transport owns the framing headers: `content-length`,
/// `transfer-encoding` and `connection` given by a handler are dropped and
/// written from what the transport decided. A control character in a header
/// value (a CR or LF would split the head) is written as a space.
enum HTTP1ResponseEncoder {
    /// How the body is framed.
    enum Framing {
        /// `content-length`; the body follows (or, for HEAD, does not).
        case length(Int)
        /// `transfer-encoding: chunked` (a stream on HTTP/1.1).
        case chunked
        /// Neither: the body runs to the connection's close (a stream on HTTP/1.0).
        case untilClose
        /// No body by definition (204, 304): no length either (RFC 9110
        /// §8.6 forbids it on a 204; on a 304 it would have to be the 200's).
        case none

        /// The framing of a whole response of `count` bytes with `status`.
        static func whole(status: Int, count: Int) -> Framing {
            hasNoBody(status) ? .none : .length(count)
        }
    }

    /// A status whose response never has a body.
    static func hasNoBody(_ status: Int) -> Bool {
        status == 204 || status == 304 || (100..<200).contains(status)
    }

    static func head(
        into buffer: inout ByteBuffer, version: HTTPVersion, status: Int,
        headers: [(name: String, value: String)], framing: Framing, keepAlive: Bool
    ) {
        buffer.writeStaticString(version.minor == 0 && version.major == 1 ? "HTTP/1.0 " : "HTTP/1.1 ")
        buffer.writeString(String(status))
        buffer.writeStaticString(" ")
        buffer.writeString(HTTPResponseStatus(statusCode: status).reasonPhrase)
        buffer.writeStaticString("\r\n")
        for (name, value) in headers where !isFraming(name) {
            buffer.writeString(name)
            buffer.writeStaticString(": ")
            writeValue(value, into: &buffer)
            buffer.writeStaticString("\r\n")
        }
        switch framing {
        case .length(let count):
            buffer.writeStaticString("content-length: ")
            buffer.writeString(String(count))
            buffer.writeStaticString("\r\n")
        case .chunked:
            buffer.writeStaticString("transfer-encoding: chunked\r\n")
        case .untilClose, .none:
            break
        }
        if !keepAlive {
            buffer.writeStaticString("connection: close\r\n")
        } else if version.major == 1 && version.minor == 0 {
            // HTTP/1.0 closes by default: say that this connection stays.
            buffer.writeStaticString("connection: keep-alive\r\n")
        }
        buffer.writeStaticString("\r\n")
    }

    /// One chunk of a chunked body (an empty chunk would end the body, so
    /// none is written for it).
    static func chunk(_ bytes: [UInt8], into buffer: inout ByteBuffer) {
        guard !bytes.isEmpty else { return }
        buffer.writeString(String(bytes.count, radix: 16))
        buffer.writeStaticString("\r\n")
        buffer.writeBytes(bytes)
        buffer.writeStaticString("\r\n")
    }

    /// The end of a chunked body: the zero-length chunk, no trailers.
    static func lastChunk(into buffer: inout ByteBuffer) {
        buffer.writeStaticString("0\r\n\r\n")
    }

    /// The answer to a request the parser could not read: nothing of it can
    /// be trusted, so no body and the connection closes.
    static func badRequest(into buffer: inout ByteBuffer) {
        buffer.writeStaticString("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
    }

    private static func isFraming(_ name: String) -> Bool {
        let utf8 = name.utf8
        guard let first = utf8.first, first | 0x20 == UInt8(ascii: "c") || first | 0x20 == UInt8(ascii: "t") else {
            return false
        }
        switch utf8.count {
        case 10, 14, 17:
            let lower = name.lowercased()
            return lower == "connection" || lower == "content-length" || lower == "transfer-encoding"
        default:
            return false
        }
    }

    private static func writeValue(_ value: String, into buffer: inout ByteBuffer) {
        // Tab is allowed in a field value; other controls are not (RFC 9110 §5.5).
        func isControl(_ byte: UInt8) -> Bool { (byte < 0x20 && byte != 0x09) || byte == 0x7F }
        if !value.utf8.contains(where: isControl) {
            buffer.writeString(value)
            return
        }
        buffer.writeBytes(value.utf8.map { isControl($0) ? UInt8(ascii: " ") : $0 })
    }
}
