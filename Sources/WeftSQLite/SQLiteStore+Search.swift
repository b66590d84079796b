import Foundation
import GRDB
public import WeftStore

/// Full-text search of workflows (FTS5, ranked by BM25).
extension SQLiteStore {
    public func searchWorkflows(text: String, visibleTo userId: String, limit: Int, cursor: String?) async throws
        -> Page<SearchHit>
    {
        guard let words = Self.ftsWords(text) else { return Page(items: [], nextCursor: nil) }
        let offset: Int
        if let cursor {
            guard let value = Int(cursor), (0...Self.searchRankWindow).contains(value) else {
                throw StoreError.invalid("page_token is not valid for this search")
            }
            offset = value
        } else {
            offset = 0
        }
        return try await read("search_workflows") { db in
            let query = try Self.ftsQuery(words, expandingIn: db)
            let match = query.match
            let counts = try self.phraseCounts.counts(query.phrases, in: db)
            // Pass 1, ranking: the caller's newest `searchRankWindow` matches,
            // each scored (BM25, `SearchRank`) as the index is walked newest
            // first, and the page taken from them by score. One evaluation
            // of the MATCH.
            let rank = "\(SearchRank.functionName)(workflow_search, \(Self.searchColumnWeights), "
                + Array(repeating: "?", count: counts.count).joined(separator: ", ") + ")"
            // Cached statements: the texts vary only with the number of
            // phrases and of the page's rows, and preparing a statement on
            // an FTS5 table (parse, plan, GRDB's authorizer) costs about as
            // much as a rare word's whole search.
            let ranked = try Row.fetchAll(
                db.cachedStatement(sql: """
                    SELECT rid, score FROM (
                        SELECT s.rowid AS rid, \(rank) AS score, w.id AS wid
                        FROM workflow_search s JOIN workflows w ON w.rid = s.rowid
                        WHERE workflow_search MATCH ? AND w.deleted_at IS NULL \(Self.visibilityClause)
                        ORDER BY s.rowid DESC LIMIT ?)
                    ORDER BY score DESC, wid DESC LIMIT ? OFFSET ?
                    """),
                arguments: StatementArguments(counts) + [
                    match, userId, userId, Self.searchRankWindow,
                    min(limit + 1, Self.searchRankWindow - offset + 1), offset,
                ])
            guard !ranked.isEmpty else { return Page(items: [], nextCursor: nil) }
            let order = ranked.map { $0["rid"] as Int64 }
            let scores = Dictionary(uniqueKeysWithValues: ranked.map { ($0["rid"] as Int64, ($0["score"] as Double?) ?? 0) })
            // Pass 2, the page's rows and snippets. The rowid range bounds the
            // walk of the index; `+s.rowid IN` is a filter, not a lookup per
            // value (each lookup would evaluate the MATCH again), so snippet()
            // runs for the page's rows only.
            let placeholders = Array(repeating: "?", count: order.count).joined(separator: ",")
            let rows = try Row.fetchAll(
                db.cachedStatement(sql: """
                    SELECT w.*, \(Self.callerRoleColumn), s.rowid AS rid,
                        snippet(workflow_search, -1, '[', ']', '…', 12) AS snippet
                    FROM workflow_search s JOIN workflows w ON w.rid = s.rowid
                    WHERE workflow_search MATCH ? AND s.rowid BETWEEN ? AND ? AND +s.rowid IN (\(placeholders))
                    """),
                arguments: StatementArguments([userId, userId, match, order.min()!, order.max()!] as [any DatabaseValueConvertible])
                    + StatementArguments(order))
            let byRowid = Dictionary(rows.map { ($0["rid"] as Int64, $0) }, uniquingKeysWith: { first, _ in first })
            var hits = order.compactMap { rid -> SearchHit? in
                guard let row = byRowid[rid] else { return nil }
                return SearchHit(workflow: Self.workflowRecord(row), score: scores[rid] ?? 0, snippet: row["snippet"] ?? "")
            }
            var next: String?
            if hits.count > limit, offset + limit < Self.searchRankWindow {
                hits.removeLast()
                next = String(offset + limit)
            } else if hits.count > limit {
                hits.removeLast()
            }
            return Page(items: hits, nextCursor: next)
        }
    }

    /// The query's words (at most 32), or nil when it has none.
    static func ftsWords(_ text: String) -> [String]? {
        // Unicode scalars, not Characters: a grapheme cluster can glue a
        // quote to a letter.
        let words = text.unicodeScalars.split { !isWordScalar($0) }.prefix(32)
        guard !words.isEmpty else { return nil }
        return words.map { String(String.UnicodeScalarView($0)) }
    }

    /// The weights of the search columns in BM25 (name, description, task
    /// names), as the table's `rank` option has them.
    static let searchColumnWeights = "10.0, 4.0, 2.0"

    /// An FTS5 query and its phrases in the order they appear in it (each
    /// as a query of its own, to count its documents).
    struct FTSQuery: Equatable {
        var match: String
        var phrases: [String]
    }

    /// The FTS5 query: every word must match, the last as a prefix (search
    /// as you type) or as the terms it was expanded to. Quotes are doubled,
    /// as FTS5 escapes them.
    static func ftsQuery(_ words: [String], lastExpandedTo terms: [String]?) -> FTSQuery {
        func quoted(_ word: String) -> String { "\"" + word.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }
        var phrases = words.dropLast().map(quoted)
        var parts = phrases
        if let terms, terms.count == 1 {
            phrases.append(quoted(terms[0]))
            parts.append(quoted(terms[0]))
        } else if let terms {
            phrases += terms.map(quoted)
            // FTS5 has no implicit AND before a parenthesis: it is written.
            parts.append((parts.isEmpty ? "(" : "AND (") + terms.map(quoted).joined(separator: " OR ") + ")")
        } else {
            phrases.append(quoted(words[words.count - 1]) + "*")
            parts.append(phrases[phrases.count - 1])
        }
        return FTSQuery(match: parts.joined(separator: " "), phrases: phrases)
    }

    /// At most this many terms replace a prefix; more, and the prefix query
    /// is used as it is.
    static let prefixExpansionLimit = 16

    /// The FTS5 query, with the last word's prefix replaced by the terms of
    /// the index that start with it when they are few. FTS5 answers a prefix
    /// by merging the doclists of all those terms into memory, and a search
    /// evaluates its query three times (the walk, BM25's document counts and
    /// the snippets): for a word in half of 100,000 workflows that merge was
    /// two thirds of the search. Exact terms are read in place. Only ASCII
    /// prefixes are expanded: the tokenizer's folding of other scripts
    /// (diacritics, case) is not repeated here, so those keep the prefix.
    static func ftsQuery(_ words: [String], expandingIn db: Database) throws -> FTSQuery {
        let last = words[words.count - 1]
        guard last.utf8.allSatisfy({ $0 < 0x80 }) else { return ftsQuery(words, lastExpandedTo: nil) }
        let prefix = last.lowercased()
        var terms: [String] = []
        var from = prefix
        let next = try db.cachedStatement(sql: "SELECT term FROM workflow_search_terms WHERE term >= ? LIMIT 1")
        while terms.count <= prefixExpansionLimit {
            // Bytes, not Characters: a combining mark after the prefix must
            // not hide a term that starts with it.
            guard let term = try String.fetchOne(next, arguments: [from]), term.utf8.starts(with: prefix.utf8) else {
                break
            }
            terms.append(term)
            // Terms hold no control characters: this is the first string
            // after `term`, so the next lookup skips its occurrences.
            from = term + "\u{1}"
        }
        guard !terms.isEmpty, terms.count <= prefixExpansionLimit else { return ftsQuery(words, lastExpandedTo: nil) }
        return ftsQuery(words, lastExpandedTo: terms)
    }

    static func isWordScalar(_ scalar: Unicode.Scalar) -> Bool {
        let properties = scalar.properties
        if properties.isAlphabetic || properties.numericType != nil { return true }
        switch properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark: return true
        default: return false
        }
    }
}
