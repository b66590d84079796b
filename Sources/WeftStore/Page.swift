/// One page of a keyset- or offset-paginated listing.
public struct Page<Item: Sendable>: Sendable {
    public var items: [Item]
    /// Where the next page starts; nil on the last page. Opaque to clients
    /// (the API layer wraps it in a page token).
    public var nextCursor: String?

    public init(items: [Item], nextCursor: String?) {
        self.items = items
        self.nextCursor = nextCursor
    }
}
