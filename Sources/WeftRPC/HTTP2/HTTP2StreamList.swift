/// A connection's open streams, linked through the streams themselves: a
/// stream is added when its request head begins and removed when nghttp2
/// closes it, thousands of times a second per connection, with no hashing
/// and no allocation (a dictionary keyed by stream id cost both). Nothing
/// looks a stream up by id here: nghttp2's stream user data does that.
///
/// The list owns its streams (`next` is strong, `previous` unowned); it
/// is confined to the connection's event loop, like the streams.
struct HTTP2StreamList {
    private var head: HTTP2Stream?
    private(set) var count = 0

    var isEmpty: Bool { head == nil }

    mutating func insert(_ stream: HTTP2Stream) {
        precondition(!stream.listed, "stream \(stream.id) is listed already")
        stream.listed = true
        stream.listNext = head
        stream.listPrevious = nil
        head?.listPrevious = stream
        head = stream
        count += 1
    }

    /// Unlinks `stream` (the caller holds it); a stream not listed is left alone.
    mutating func remove(_ stream: HTTP2Stream) {
        guard stream.listed else { return }
        stream.listed = false
        let next = stream.listNext
        if let previous = stream.listPrevious {
            previous.listNext = next
        } else {
            head = next
        }
        next?.listPrevious = stream.listPrevious
        stream.listNext = nil
        stream.listPrevious = nil
        count -= 1
    }

    /// Empties the list, handing its streams to the caller (newest first).
    mutating func removeAll() -> [HTTP2Stream] {
        var streams: [HTTP2Stream] = []
        streams.reserveCapacity(count)
        while let stream = head {
            streams.append(stream)
            remove(stream)
        }
        return streams
    }
}
