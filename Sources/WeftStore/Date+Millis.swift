public import Foundation

extension Date {
    /// Now, truncated to the millisecond: the precision the store keeps, so
    /// a timestamp reads back exactly as it was first returned.
    public static var nowMillis: Date {
        Date(timeIntervalSince1970: (Date().timeIntervalSince1970 * 1000).rounded(.down) / 1000)
    }
}
