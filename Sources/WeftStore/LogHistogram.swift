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

    /// Bucket index to count; sparse (a workflow's hour touches a few dozen).
    public private(set) var counts: [Int32: Int64] = [:]
    public private(set) var total: Int64 = 0

    public init() {}

    public var isEmpty: Bool { total == 0 }

    public mutating func record(_ value: Int64, count: Int64 = 1) {
        guard count > 0 else { return }
        counts[Self.index(of: max(0, value)), default: 0] += count
        total += count
    }

    public mutating func merge(_ other: LogHistogram) {
        for (index, count) in other.counts { counts[index, default: 0] += count }
        total += other.total
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
        for index in counts.keys.sorted() {
            seen += counts[index] ?? 0
            if seen >= rank {
                let (low, high) = Self.bounds(of: index)
                let mid = high - low == 1 ? low : low + (high - low) / 2
                return maximum.map { min(mid, $0) } ?? mid
            }
        }
        return maximum
    }

    /// How many samples are above `value` (counting a bucket that holds
    /// `value` as above when its midpoint is).
    public func count(above value: Int64) -> Int64 {
        var above: Int64 = 0
        for (index, count) in counts {
            let (low, high) = Self.bounds(of: index)
            let mid = high - low == 1 ? low : low + (high - low) / 2
            if mid > value { above += count }
        }
        return above
    }

    /// Samples above `value` as a histogram of their own (for predictions
    /// conditioned on "has run this long").
    public func tail(above value: Int64) -> LogHistogram {
        var tail = LogHistogram()
        for (index, count) in counts {
            let (low, high) = Self.bounds(of: index)
            let mid = high - low == 1 ? low : low + (high - low) / 2
            if mid > value {
                tail.counts[index] = count
                tail.total += count
            }
        }
        return tail
    }

    // MARK: Encoding

    /// Varint pairs (index delta, count), indices ascending: a few bytes a bucket.
    public var encoded: Data {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(counts.count * 3)
        var last: Int64 = 0
        for index in counts.keys.sorted() {
            Self.putVarint(UInt64(Int64(index) - last), &bytes)
            Self.putVarint(UInt64(counts[index] ?? 0), &bytes)
            last = Int64(index)
        }
        return Data(bytes)
    }

    /// Decodes `encoded`; nil when the bytes are not such an encoding.
    public init?(encoded data: Data) {
        var position = data.startIndex
        var last: Int64 = 0
        while position < data.endIndex {
            guard let delta = Self.varint(data, &position), let count = Self.varint(data, &position),
                delta <= UInt64(Int32.max), count <= UInt64(Int64.max / 2)
            else { return nil }
            let index = last + Int64(delta)
            guard index <= Int64(Int32.max) else { return nil }
            counts[Int32(index), default: 0] += Int64(count)
            total += Int64(count)
            last = index
        }
    }

    static func putVarint(_ value: UInt64, _ bytes: inout [UInt8]) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(value & 0x7F) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }

    static func varint(_ data: Data, _ position: inout Data.Index) -> UInt64? {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while position < data.endIndex {
            let byte = data[position]
            position += 1
            value |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return value }
            shift += 7
            if shift > 63 { return nil }
        }
        return nil
    }
}
