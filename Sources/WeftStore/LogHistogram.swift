public import Foundation

/// Counts of non-negative integers (milliseconds, nano-dollars) in
/// log-linear buckets, so percentiles of millions of values can be kept in
/// a few hundred bytes and merged by adding counts.
///
/// Values below 128 have a bucket each (exact). Above, every power of two
/// is split into 64 equal buckets, so a bucket spans at most 1/64 of its
/// lower bound; reporting its midpoint is within `relativeError` (1/128,
/// 0.78 %) of any value in it. The layout is HdrHistogram's with two
/// significant binary digits more than needed for 1 %.
public struct LogHistogram: Sendable, Hashable {
    public static let relativeError = 1.0 / 128
    static let exactBelow: Int64 = 128
    static let subBuckets: Int64 = 64
    /// The bucket of Int64.max: no encoding names a higher one.
    static let maxIndex: Int64 = exactBelow + (62 - 7) * subBuckets + subBuckets - 1

    /// Counts of buckets `base`, `base + 1`, …: dense between the lowest and
    /// the highest bucket in use (no zeros at either end), so merging the
    /// thousands of rows of a query adds arrays instead of hashing; a
    /// workflow's hour spans a few octaves, a few hundred entries.
    public private(set) var base: Int32 = 0
    public private(set) var counts: [Int64] = []
    public private(set) var total: Int64 = 0

    public init() {}

    public var isEmpty: Bool { total == 0 }

    /// Makes room for buckets `low...high`.
    private mutating func cover(_ low: Int32, _ high: Int32) {
        if counts.isEmpty {
            base = low
            counts = Array(repeating: 0, count: Int(high - low) + 1)
            return
        }
        if low < base {
            counts.insert(contentsOf: repeatElement(0, count: Int(base - low)), at: 0)
            base = low
        }
        let end = Int(high - base) + 1
        if end > counts.count { counts.append(contentsOf: repeatElement(0, count: end - counts.count)) }
    }

    public mutating func record(_ value: Int64, count: Int64 = 1) {
        guard count > 0 else { return }
        let index = Self.index(of: max(0, value))
        cover(index, index)
        counts[Int(index - base)] += count
        total += count
    }

    public mutating func merge(_ other: LogHistogram) {
        guard !other.isEmpty else { return }
        guard !isEmpty else {
            self = other
            return
        }
        cover(other.base, other.base + Int32(other.counts.count) - 1)
        let offset = Int(other.base - base)
        counts.withUnsafeMutableBufferPointer { mine in
            other.counts.withUnsafeBufferPointer { theirs in
                for position in 0..<theirs.count { mine[offset + position] &+= theirs[position] }
            }
        }
        total += other.total
    }

    /// Adds an `encoded` histogram read in place (no histogram of its own
    /// is made: a query merges thousands). False, adding nothing, when the
    /// bytes are not an encoding.
    @discardableResult
    public mutating func merge(encoded raw: UnsafeRawBufferPointer) -> Bool {
        let bytes = raw.bindMemory(to: UInt8.self)
        // Validate and find the range first, so nothing is added on error
        // and the array grows once.
        var position = 0
        var last: Int64 = -1
        var first: Int64 = -1
        var added: Int64 = 0
        while position < bytes.count {
            guard let delta = Self.varint(bytes, &position), let count = Self.varint(bytes, &position),
                delta <= UInt64(Int32.max), count > 0, count <= UInt64(Int64.max / 4)
            else { return false }
            let index = max(0, last) + Int64(delta)
            guard index <= Self.maxIndex, index > last else { return false }
            if first < 0 { first = index }
            let (sum, overflow) = added.addingReportingOverflow(Int64(count))
            guard !overflow else { return false }
            added = sum
            last = index
        }
        guard added > 0 else { return true }
        // Each bucket and the total stay far from overflow (counts are
        // executions); a blob that would pass it is not a real one.
        guard total.addingReportingOverflow(added).overflow == false, total + added <= Int64.max / 4 else { return false }
        cover(Int32(first), Int32(last))
        position = 0
        last = -1
        counts.withUnsafeMutableBufferPointer { mine in
            while position < bytes.count {
                let delta = Self.varint(bytes, &position)!
                let count = Self.varint(bytes, &position)!
                let index = max(0, last) + Int64(delta)
                mine[Int(index - Int64(base))] &+= Int64(count)
                last = index
            }
        }
        total += added
        return true
    }

    static func index(of value: Int64) -> Int32 {
        guard value >= exactBelow else { return Int32(value) }
        // exponent >= 7; the top 7 bits select the sub-bucket (the first is always 1).
        let exponent = Int64(63 - value.leadingZeroBitCount)
        let sub = (value >> (exponent - 6)) & (subBuckets - 1)
        return Int32(exactBelow + (exponent - 7) * subBuckets + sub)
    }

    /// The smallest value of bucket `index` and the first of the next.
    static func bounds(of index: Int32) -> (low: Int64, high: Int64) {
        let index = Int64(index)
        guard index >= exactBelow else { return (index, index + 1) }
        let exponent = (index - exactBelow) / subBuckets + 7
        let sub = (index - exactBelow) % subBuckets
        let width = Int64(1) << (exponent - 6)
        let low = (Int64(1) << exponent) + sub * width
        return (low, low + width)
    }

    /// What a value of bucket `index` is reported as.
    static func midpoint(of index: Int32) -> Int64 {
        let (low, high) = bounds(of: index)
        return high - low == 1 ? low : low + (high - low) / 2
    }

    /// The nearest-rank `p` quantile (0 < p <= 1): the value of the
    /// ceil(p·n)-th smallest sample, as its bucket's midpoint (exact below
    /// 128), never above `maximum` when one is given. Nil when empty.
    public func quantile(_ p: Double, maximum: Int64? = nil) -> Int64? {
        guard total > 0 else { return nil }
        let rank = max(1, Int64((p * Double(total)).rounded(.up)))
        return value(atRank: rank, maximum: maximum)
    }

    /// The value of the `rank`-th smallest sample (1-based), as above.
    public func value(atRank rank: Int64, maximum: Int64? = nil) -> Int64? {
        guard total > 0 else { return nil }
        let rank = min(max(rank, 1), total)
        var seen: Int64 = 0
        for position in counts.indices where counts[position] > 0 {
            seen += counts[position]
            if seen >= rank {
                let mid = Self.midpoint(of: base + Int32(position))
                return maximum.map { min(mid, $0) } ?? mid
            }
        }
        return maximum
    }

    /// How many samples are above `value` (counting a bucket that holds
    /// `value` as above when its midpoint is).
    public func count(above value: Int64) -> Int64 {
        var above: Int64 = 0
        for position in counts.indices where counts[position] > 0 && Self.midpoint(of: base + Int32(position)) > value {
            above += counts[position]
        }
        return above
    }

    /// Samples above `value` as a histogram of their own (for predictions
    /// conditioned on "has run this long").
    public func tail(above value: Int64) -> LogHistogram {
        var tail = LogHistogram()
        for position in counts.indices where counts[position] > 0 && Self.midpoint(of: base + Int32(position)) > value {
            let index = base + Int32(position)
            tail.cover(index, index)
            tail.counts[Int(index - tail.base)] = counts[position]
            tail.total += counts[position]
        }
        return tail
    }

    // MARK: Encoding

    /// Varint pairs (index delta, count) of the buckets in use, ascending: a
    /// few bytes a bucket.
    public var encoded: Data {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(counts.count * 2)
        var last: Int64 = 0
        for position in counts.indices where counts[position] > 0 {
            let index = Int64(base) + Int64(position)
            Self.putVarint(UInt64(index - last), &bytes)
            Self.putVarint(UInt64(counts[position]), &bytes)
            last = index
        }
        return Data(bytes)
    }

    /// Decodes `encoded`; nil when the bytes are not such an encoding.
    public init?(encoded data: Data) {
        let decoded: Bool = data.withUnsafeBytes { raw in
            let bytes = raw.bindMemory(to: UInt8.self)
            var position = 0
            var last: Int64 = -1
            while position < bytes.count {
                guard let delta = Self.varint(bytes, &position), let count = Self.varint(bytes, &position),
                    delta <= UInt64(Int32.max), count > 0, count <= UInt64(Int64.max / 2)
                else { return false }
                let index = max(0, last) + Int64(delta)
                // Ascending and distinct (the first may be 0).
                guard index <= Self.maxIndex, index > last else { return false }
                if counts.isEmpty {
                    base = Int32(index)
                } else {
                    counts.append(contentsOf: repeatElement(0, count: Int(index - last - 1)))
                }
                counts.append(Int64(count))
                let (sum, overflow) = total.addingReportingOverflow(Int64(count))
                guard !overflow, sum <= Int64.max / 4 else { return false }
                total = sum
                last = index
            }
            return true
        }
        guard decoded else { return nil }
    }

    static func putVarint(_ value: UInt64, _ bytes: inout [UInt8]) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(value & 0x7F) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }

    static func varint(_ bytes: UnsafeBufferPointer<UInt8>, _ position: inout Int) -> UInt64? {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while position < bytes.count {
            let byte = bytes[position]
            position += 1
            value |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return value }
            shift += 7
            if shift > 63 { return nil }
        }
        return nil
    }
}
