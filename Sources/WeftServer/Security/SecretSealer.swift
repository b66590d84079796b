import COpenSSL
public import Foundation
public import WeftStore

/// A 32-byte AES-256 master key and its id (the first 8 bytes of its
/// SHA-256, hex): stored next to each value it seals, so values sealed
/// under an older key can still be opened while a rotation runs.
public struct MasterKey: Sendable, Hashable {
    public let id: String
    let bytes: [UInt8]

    init(bytes: [UInt8]) {
        self.bytes = bytes
        id = Crypto.sha256(bytes).prefix(8).map { String(format: "%02x", $0) }.joined()
    }

    /// 32 raw bytes, 64 hex digits, or base64 of 32 bytes (surrounding
    /// whitespace ignored).
    public init(text: String) throws(SecretError) {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.utf8.count == 64, let hex = Self.hex(trimmed) {
            self.init(bytes: hex)
        } else if let decoded = Data(base64Encoded: trimmed), decoded.count == 32 {
            self.init(bytes: Array(decoded))
        } else {
            throw SecretError("a master key is 32 bytes: 64 hex digits or base64 (e.g. `openssl rand -base64 32`)")
        }
    }

    /// Reads a key file: it must be outside `dataDirectory` (a copy of the
    /// data must not carry its key) and readable by its owner only.
    public static func load(file path: String, dataDirectory: String?) throws(SecretError) -> MasterKey {
        let url = URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath()
        if let dataDirectory {
            let data = URL(fileURLWithPath: dataDirectory).standardizedFileURL.resolvingSymlinksInPath().path
            if url.path == data || url.path.hasPrefix(data.hasSuffix("/") ? data : data + "/") {
                throw SecretError("the master key file \(path) is inside the data directory; keep it elsewhere")
            }
        }
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: url.path),
            let contents = FileManager.default.contents(atPath: url.path)
        else { throw SecretError("cannot read the master key file \(path)") }
        if let mode = attributes[.posixPermissions] as? Int, mode & 0o077 != 0 {
            throw SecretError(
                "the master key file \(path) is readable by others (mode \(String(mode, radix: 8))); chmod 600 it")
        }
        // 32 raw bytes; text (hex, base64) of the wrong length is refused,
        // not taken as raw bytes (32 hex digits are a 16-byte key).
        let printable = contents.allSatisfy { (0x20...0x7e).contains($0) || $0 == 0x0a || $0 == 0x0d || $0 == 0x09 }
        if contents.count == 32, !printable { return MasterKey(bytes: Array(contents)) }
        return try MasterKey(text: String(decoding: contents, as: UTF8.self))
    }

    /// A new random key as base64 (`weft secrets new-key`).
    public static func generate() -> String { Data(Crypto.randomBytes(32)).base64EncodedString() }

    private static func hex(_ text: String) -> [UInt8]? {
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let high = iterator.next(), let low = iterator.next() {
            guard let h = Self.nibble(high), let l = Self.nibble(low) else { return nil }
            bytes.append(h << 4 | l)
        }
        return bytes.count == 32 ? bytes : nil
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x61...0x66: c - 0x61 + 10
        case 0x41...0x46: c - 0x41 + 10
        default: nil
        }
    }
}

public struct SecretError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Seals and opens secret values with AES-256-GCM (OpenSSL EVP): a fresh
/// 12-byte nonce per value, the 16-byte tag after the ciphertext, and the
/// organization and name as additional data, so a sealed value moved to
/// another organization or name does not open.
public struct SecretSealer: Sendable {
    public let current: MasterKey
    /// Every key that may open a value: the current one and older ones.
    let keys: [String: MasterKey]

    public init(current: MasterKey, older: [MasterKey] = []) {
        self.current = current
        var keys = [current.id: current]
        for key in older { keys[key.id] = key }
        self.keys = keys
    }

    static func additionalData(orgId: String, name: String) -> [UInt8] { Array("weft-secret:v1:\(orgId):\(name)".utf8) }

    public func seal(_ value: String, orgId: String, name: String) -> (keyId: String, nonce: [UInt8], ciphertext: [UInt8]) {
        let nonce = Crypto.randomBytes(12)
        let sealed = Self.gcm(
            encrypt: true, key: current.bytes, nonce: nonce, input: Array(value.utf8),
            aad: Self.additionalData(orgId: orgId, name: name))!
        return (current.id, nonce, sealed)
    }

    public func open(_ record: SecretRecord) throws(SecretError) -> String {
        guard let key = keys[record.keyId] else {
            throw SecretError("secret \(record.name) is sealed under master key \(record.keyId), which this server does not have")
        }
        guard record.nonce.count == 12, record.ciphertext.count >= 16,
            let plain = Self.gcm(
                encrypt: false, key: key.bytes, nonce: record.nonce, input: record.ciphertext,
                aad: Self.additionalData(orgId: record.orgId, name: record.name))
        else { throw SecretError("secret \(record.name) does not open under key \(record.keyId): it was altered") }
        return String(decoding: plain, as: UTF8.self)
    }

    /// Encrypts (output: ciphertext + tag) or decrypts (input: ciphertext +
    /// tag; nil when the tag does not verify).
    static func gcm(encrypt: Bool, key: [UInt8], nonce: [UInt8], input: [UInt8], aad: [UInt8]) -> [UInt8]? {
        guard let context = EVP_CIPHER_CTX_new() else { return nil }
        defer { EVP_CIPHER_CTX_free(context) }
        let body = encrypt ? input : Array(input.dropLast(16))
        var tag = encrypt ? [UInt8](repeating: 0, count: 16) : Array(input.suffix(16))
        var output = [UInt8](repeating: 0, count: body.count + 16)
        var length: Int32 = 0
        var total = 0
        let initialize = encrypt ? EVP_EncryptInit_ex : EVP_DecryptInit_ex
        guard initialize(context, EVP_aes_256_gcm(), nil, nil, nil) == 1,
            EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_IVLEN, 12, nil) == 1,
            initialize(context, nil, nil, key, nonce) == 1
        else { return nil }
        let update = encrypt ? EVP_EncryptUpdate : EVP_DecryptUpdate
        if !aad.isEmpty {
            guard aad.withUnsafeBufferPointer({ update(context, nil, &length, $0.baseAddress, Int32($0.count)) }) == 1 else {
                return nil
            }
        }
        if !body.isEmpty {
            let ok = output.withUnsafeMutableBufferPointer { out in
                body.withUnsafeBufferPointer { update(context, out.baseAddress, &length, $0.baseAddress, Int32($0.count)) }
            }
            guard ok == 1 else { return nil }
            total = Int(length)
        }
        if encrypt {
            let ok = output.withUnsafeMutableBufferPointer { EVP_EncryptFinal_ex(context, $0.baseAddress! + total, &length) }
            guard ok == 1 else { return nil }
            total += Int(length)
            guard EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_GET_TAG, 16, &tag) == 1 else { return nil }
            return Array(output.prefix(total)) + tag
        }
        guard EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_TAG, 16, &tag) == 1 else { return nil }
        let ok = output.withUnsafeMutableBufferPointer { EVP_DecryptFinal_ex(context, $0.baseAddress! + total, &length) }
        guard ok == 1 else { return nil }
        total += Int(length)
        return Array(output.prefix(total))
    }
}
