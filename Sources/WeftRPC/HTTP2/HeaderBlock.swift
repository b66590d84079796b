import CNghttp2

/// Header fields for one HEADERS frame, stored flat so they can be handed to
/// nghttp2 as an `nghttp2_nv` array without a String per field. nghttp2 copies
/// the fields on submit, so the block only has to live through the call.
struct HeaderBlock {
    private var storage: [UInt8] = []
    private var fields: [(nameStart: Int, nameLength: Int, valueStart: Int, valueLength: Int)] = []

    init(capacity: Int = 128) {
        storage.reserveCapacity(capacity)
        fields.reserveCapacity(6)
    }

    mutating func add(_ name: String, _ value: String) {
        let nameStart = storage.count
        storage.append(contentsOf: name.utf8)
        let valueStart = storage.count
        storage.append(contentsOf: value.utf8)
        fields.append((nameStart, valueStart - nameStart, valueStart, storage.count - valueStart))
    }

    /// Adds application metadata; binary values are base64 encoded, keys that
    /// are invalid or reserved are dropped (a handler cannot break framing).
    mutating func add(_ metadata: Metadata) {
        for (key, value) in metadata where Metadata.isValidKey(key) && !Metadata.isReserved(key) {
            switch value {
            case .string(let s):
                guard Self.isValidValue(s) else { continue }
                add(key, s)
            case .binary(let bytes):
                guard key.hasSuffix("-bin") else { continue }
                add(key, Base64.encode(bytes))
            }
        }
    }

    private static func isValidValue(_ value: String) -> Bool {
        value.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F }
    }

    func withNVs<R>(_ body: (UnsafePointer<nghttp2_nv>, Int) -> R) -> R {
        storage.withUnsafeBufferPointer { bytes in
            let base = UnsafeMutablePointer(mutating: bytes.baseAddress!)
            return withUnsafeTemporaryAllocation(of: nghttp2_nv.self, capacity: fields.count) { nvs in
                for (i, f) in fields.enumerated() {
                    nvs[i] = nghttp2_nv(
                        name: base + f.nameStart, value: base + f.valueStart,
                        namelen: f.nameLength, valuelen: f.valueLength,
                        flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
                }
                return body(UnsafePointer(nvs.baseAddress!), fields.count)
            }
        }
    }
}
