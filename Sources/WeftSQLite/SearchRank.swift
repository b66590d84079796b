import Foundation
import GRDB
import GRDBSQLite
import Synchronization

/// BM25 for workflow search, with each phrase's document count given by the
/// caller instead of counted per query.
///
/// FTS5's `bm25()` counts the documents of every phrase of the query by
/// walking its whole doclist once per query (`xQueryPhrase`): 1.5 ms of a
/// common word's 1.8 ms of ranking over 100,000 workflows, repeated for
/// every page and every keystroke. `weft_bm25` is the same formula (FTS5's
/// `fts5_aux.c`: k1 = 1.2, b = 0.75, IDF floored at 1e-6, per-column
/// weights) with the counts passed as arguments, which `PhraseCounts` keeps
/// for a minute. A count a minute old moves a score by the change in the
/// word's IDF, not the order of documents matching one word.
///
///     weft_bm25(workflow_search, weight0, …, weightN-1, count0, …, countP-1)
///
/// one weight per column, then one count per phrase of the MATCH in the
/// order they appear in it. Unlike `bm25()` the score is positive (higher
/// is better).
enum SearchRank {
    static let functionName = "weft_bm25"

    /// Registers `weft_bm25` on a connection (FTS5 functions are per connection).
    static func register(_ db: Database) throws {
        let api = FTS5.api(db)
        guard let create = api.pointee.xCreateFunction else { throw DatabaseError(message: "FTS5 has no xCreateFunction") }
        let code = create(UnsafeMutablePointer(mutating: api), functionName, nil, bm25, nil)
        guard code == SQLITE_OK else { throw DatabaseError(resultCode: ResultCode(rawValue: code), message: "cannot register weft_bm25") }
    }

    /// The query's constants, made at its first row and kept by FTS5 for
    /// the rest (`xSetAuxdata`): `[avgdl, idf0…, weight0…]`.
    private static func queryData(
        _ api: Fts5ExtensionApi, _ fts: OpaquePointer, columns: Int, phrases: Int, _ values: UnsafeMutablePointer<OpaquePointer?>
    ) -> UnsafeMutablePointer<Double>? {
        if let data = api.xGetAuxdata(fts, 0) { return data.assumingMemoryBound(to: Double.self) }
        var rows: sqlite3_int64 = 0
        var tokens: sqlite3_int64 = 0
        guard api.xRowCount(fts, &rows) == SQLITE_OK, api.xColumnTotalSize(fts, -1, &tokens) == SQLITE_OK,
            let raw = malloc(MemoryLayout<Double>.stride * (1 + phrases + columns))
        else { return nil }
        let data = raw.bindMemory(to: Double.self, capacity: 1 + phrases + columns)
        let n = Double(max(rows, 1))
        data[0] = Double(tokens) / n
        for phrase in 0..<phrases {
            // A count up to a minute old can exceed today's documents (some
            // were deleted since): clamped, so the logarithm stays defined.
            let hits = min(max(sqlite3_value_double(values[columns + phrase]), 0), n)
            let idf = log((n - hits + 0.5) / (hits + 0.5))
            // `!(idf > 0)` also catches a NaN.
            data[1 + phrase] = !(idf > 0) ? 1e-6 : idf
        }
        for column in 0..<columns { data[1 + phrases + column] = sqlite3_value_double(values[column]) }
        guard api.xSetAuxdata(fts, raw, { free($0) }) == SQLITE_OK else { return nil }
        return data
    }

    private static let bm25: fts5_extension_function = { api, fts, context, count, values in
        guard let api = api?.pointee, let fts, let values else { return }
        let columns = Int(api.xColumnCount(fts))
        let phrases = Int(api.xPhraseCount(fts))
        guard Int(count) == columns + phrases else {
            sqlite3_result_error(
                context, "weft_bm25 takes \(columns) column weights and \(phrases) phrase counts, got \(count) values", -1)
            return
        }
        guard let data = queryData(api, fts, columns: columns, phrases: phrases, values) else {
            sqlite3_result_error_code(context, SQLITE_ERROR)
            return
        }
        let k1 = 1.2
        let b = 0.75
        withUnsafeTemporaryAllocation(of: Double.self, capacity: max(phrases, 1)) { frequency in
            frequency.initialize(repeating: 0)
            var instances: Int32 = 0
            guard api.xInstCount(fts, &instances) == SQLITE_OK else {
                sqlite3_result_error_code(context, SQLITE_ERROR)
                return
            }
            for index in 0..<instances {
                var phrase: Int32 = 0
                var column: Int32 = 0
                var offset: Int32 = 0
                guard api.xInst(fts, index, &phrase, &column, &offset) == SQLITE_OK else { continue }
                frequency[Int(phrase)] += Int(column) < columns ? data[1 + phrases + Int(column)] : 1
            }
            var length: Int32 = 0
            guard api.xColumnSize(fts, -1, &length) == SQLITE_OK else {
                sqlite3_result_error_code(context, SQLITE_ERROR)
                return
            }
            let norm = k1 * (1 - b + b * Double(length) / data[0])
            var score = 0.0
            for phrase in 0..<phrases {
                let f = frequency[phrase]
                score += data[1 + phrase] * (f * (k1 + 1)) / (f + norm)
            }
            sqlite3_result_double(context, score)
        }
    }
}

/// Document counts of search phrases (`"word"` or `"prefix"*`), each kept
/// for `lifetime` after it was counted (`SearchRank`).
final class PhraseCounts: Sendable {
    private struct Entry {
        let count: Int
        let counted: ContinuousClock.Instant
    }

    let lifetime: Duration
    let capacity: Int
    private let entries = Mutex([String: Entry]())

    init(lifetime: Duration = .seconds(60), capacity: Int = 10_000) {
        self.lifetime = lifetime
        self.capacity = max(1, capacity)
    }

    /// The count of each phrase, counting in `db` those not kept or too old.
    func counts(_ phrases: [String], in db: Database) throws -> [Int] {
        let now = ContinuousClock.now
        let kept = entries.withLock { entries in
            phrases.map { phrase -> Int? in
                guard let entry = entries[phrase], now - entry.counted < lifetime else { return nil }
                return entry.count
            }
        }
        var counted: [(String, Int)] = []
        let result = try zip(phrases, kept).map { phrase, known -> Int in
            if let known { return known }
            let count = try Int.fetchOne(
                db.cachedStatement(sql: "SELECT count(*) FROM workflow_search WHERE workflow_search MATCH ?"), arguments: [phrase]
            ) ?? 0
            counted.append((phrase, count))
            return count
        }
        if !counted.isEmpty {
            entries.withLock { entries in
                if entries.count + counted.count > capacity { entries.removeAll(keepingCapacity: true) }
                for (phrase, count) in counted { entries[phrase] = Entry(count: count, counted: now) }
            }
        }
        return result
    }
}
