import Foundation
import GRDB
public import WeftStore

/// Full-text search of workflows (FTS5, ranked by BM25).
extension SQLiteStore {
    public func searchWorkflows(text: String, visibleTo userId: String, limit: Int, cursor: String?) async throws
        -> Page<SearchHit>
    {
        guard let match = Self.ftsQuery(text) else { return Page(items: [], nextCursor: nil) }
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
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT w.*, \(Self.callerRoleColumn), -s.rank AS score,
                        snippet(workflow_search, -1, '[', ']', '…', 12) AS snippet
                    FROM workflow_search s JOIN workflows w ON w.search_rowid = s.rowid
                    WHERE workflow_search MATCH ? AND w.deleted_at IS NULL \(Self.visibilityClause)
                        AND s.rowid >= (SELECT MIN(rid) FROM (
                            SELECT s2.rowid AS rid FROM workflow_search s2 JOIN workflows w2 ON w2.search_rowid = s2.rowid
                            WHERE s2.workflow_search MATCH ? AND w2.deleted_at IS NULL
                                AND (w2.user_id = ? OR EXISTS (SELECT 1 FROM workflow_collaborators c2
                                     WHERE c2.workflow_id = w2.id AND c2.user_id = ?))
                            ORDER BY s2.rowid DESC LIMIT ?))
                    ORDER BY s.rank, w.id DESC LIMIT ? OFFSET ?
                    """,
                arguments: [
                    userId, userId, match, userId, userId, match, userId, userId, Self.searchRankWindow,
                    min(limit + 1, Self.searchRankWindow - offset + 1), offset,
                ])
            var hits = rows.map { row in
                SearchHit(workflow: Self.workflowRecord(row), score: row["score"], snippet: row["snippet"] ?? "")
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

    static func ftsQuery(_ text: String) -> String? {
        // Unicode scalars, not Characters: a grapheme cluster can glue a
        // quote to a letter. Quotes are doubled anyway, as FTS5 escapes them.
        let words = text.unicodeScalars.split { !isWordScalar($0) }.prefix(32)
        guard !words.isEmpty else { return nil }
        var parts = words.map { word in
            "\"" + String(String.UnicodeScalarView(word)).replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }
        parts[parts.count - 1] += "*"
        return parts.joined(separator: " ")
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
