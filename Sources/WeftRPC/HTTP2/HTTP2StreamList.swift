/// A connection's open streams, linked through the streams themselves: a
/// stream is added when its request head begins and removed when nghttp2
/// closes it, thousands of times a second per connection, with no hashing
/// and no allocation (a dictionary keyed by stream id cost both). Nothing
/// looks a stream up by id here: nghttp2's stream user data does that.
///
/// The list owns each stream by one reference taken on insert and given
/// back on removal; the links are unmanaged, so relinking retains and
/// releases nothing. It is confined to the connection's event loop, like
/// the streams.
struct HTTP2StreamList {
    private var head: Unmanaged<HTTP2Stream>?
    private(set) var count = 0

    var isEmpty: Bool { head == nil }

    mutating func insert(_ stream: HTTP2Stream) {
        precondition(!stream.listed, "stream \(stream.id) is listed already")
        stream.listed = true
        let node = Unmanaged.passRetained(stream)
        stream.listNext = head
        stream.listPrevious = nil
        head?._withUnsafeGuaranteedRef { $0.listPrevious = node }
        head = node
        count += 1
    }

    /// Unlinks `stream` (the caller holds it); a stream not listed is left alone.
    mutating func remove(_ stream: HTTP2Stream) {
        guard stream.listed else { return }
        stream.listed = false
        let next = stream.listNext
        let previous = stream.listPrevious
        if let previous {
            previous._withUnsafeGuaranteedRef { $0.listNext = next }
        } else {
            head = next
        }
        next?._withUnsafeGuaranteedRef { $0.listPrevious = previous }
        stream.listNext = nil
        stream.listPrevious = nil
        count -= 1
        Unmanaged.passUnretained(stream).release()  // the list's reference
    }

    /// Empties the list, handing its streams to the caller (newest first).
    mutating func removeAll() -> [HTTP2Stream] {
        var streams: [HTTP2Stream] = []
        streams.reserveCapacity(count)
        while let node = head {
            let stream = node.takeUnretainedValue()
            streams.append(stream)
            remove(stream)
        }
        return streams
    }
}
