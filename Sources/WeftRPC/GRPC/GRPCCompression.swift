import CZlib

/// Message compression for `grpc-encoding` (PROTOCOL-HTTP2.md, compression.md),
/// on Debian's zlib.
public enum GRPCCompression {
    public enum Algorithm: String, Sendable, CaseIterable {
        case gzip
        case deflate

        /// zlib window bits: 16+15 writes/reads a gzip wrapper, 15 a zlib one.
        var windowBits: Int32 { self == .gzip ? 31 : 15 }
    }

    /// What this server accepts, for `grpc-accept-encoding`.
    public static let acceptEncodingHeader = "identity,deflate,gzip"

    public enum CompressionError: Error, Equatable {
        case zlib(Int32)
        /// The decompressed message would exceed the limit (a zip bomb or just
        /// too big): RESOURCE_EXHAUSTED.
        case tooLarge(limit: Int)
        case corrupt
    }

    public static func compress(_ input: UnsafeRawBufferPointer, algorithm: Algorithm) throws -> [UInt8] {
        var stream = z_stream()
        var rc = weft_deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, algorithm.windowBits, 8, Z_DEFAULT_STRATEGY)
        guard rc == Z_OK else { throw CompressionError.zlib(rc) }
        defer { deflateEnd(&stream) }
        let bound = Int(deflateBound(&stream, UInt(input.count)))
        var output = [UInt8](repeating: 0, count: bound)
        let produced: Int = try output.withUnsafeMutableBytes { out in
            stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
            stream.avail_in = uInt(input.count)
            stream.next_out = out.baseAddress!.assumingMemoryBound(to: Bytef.self)
            stream.avail_out = uInt(out.count)
            rc = deflate(&stream, Z_FINISH)
            guard rc == Z_STREAM_END else { throw CompressionError.zlib(rc) }
            return out.count - Int(stream.avail_out)
        }
        output.removeLast(output.count - produced)
        return output
    }

    public static func decompress(_ input: UnsafeRawBufferPointer, algorithm: Algorithm, limit: Int) throws -> [UInt8] {
        var stream = z_stream()
        var rc = weft_inflateInit2(&stream, algorithm.windowBits)
        guard rc == Z_OK else { throw CompressionError.zlib(rc) }
        defer { inflateEnd(&stream) }
        stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
        stream.avail_in = uInt(input.count)
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: min(max(input.count * 4, 1024), 256 * 1024))
        while true {
            let produced: Int = chunk.withUnsafeMutableBytes { out in
                stream.next_out = out.baseAddress!.assumingMemoryBound(to: Bytef.self)
                stream.avail_out = uInt(out.count)
                rc = inflate(&stream, Z_NO_FLUSH)
                return out.count - Int(stream.avail_out)
            }
            if output.count + produced > limit { throw CompressionError.tooLarge(limit: limit) }
            output.append(contentsOf: chunk[0..<produced])
            if rc == Z_STREAM_END { return output }
            guard rc == Z_OK else { throw CompressionError.corrupt }
            // Z_OK with no progress and no input left: truncated stream.
            if produced == 0 && stream.avail_in == 0 { throw CompressionError.corrupt }
        }
    }
}
