#!/usr/bin/env bash
# Regenerates Sources/WeftProto from proto/. Run it after editing any .proto and
# commit the result: CI and fresh machines never need protoc.
#
# Needs: protoc (Debian `protobuf-compiler`) and protoc-gen-swift built from the
# same swift-protobuf version as Package.swift names. PROTOC_GEN_SWIFT may point
# at an existing plugin; otherwise it is built once into /tmp/weft-protoc-gen-swift.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=1.39.0
plugin=${PROTOC_GEN_SWIFT:-}
if [ -z "$plugin" ]; then
  scratch=/tmp/weft-protoc-gen-swift
  if [ ! -x "$scratch/.build/release/protoc-gen-swift" ]; then
    rm -rf "$scratch"
    git clone -q https://github.com/apple/swift-protobuf.git "$scratch"
    git -C "$scratch" checkout -q "$version"
    (cd "$scratch" && swift build -c release --product protoc-gen-swift)
  fi
  plugin="$scratch/.build/release/protoc-gen-swift"
fi
command -v protoc >/dev/null || { apt-get update && apt-get install -y protobuf-compiler; }
out="$root/Sources/WeftProto"
find "$out" -name '*.pb.swift' -delete
cd "$root/proto"
protoc --plugin=protoc-gen-swift="$plugin" \
  --swift_out="$out" --swift_opt=Visibility=Public --swift_opt=FileNaming=PathToUnderscores \
  $(find . -name '*.proto' | sed 's|^\./||' | sort)
echo "generated: $(ls "$out"/*.pb.swift | wc -l) files"
# The descriptor set (every file of proto/ and the well-known types it imports)
# that gRPC server reflection answers from; committed, and embedded in the
# binary as base64 so the server needs no file at run time.
protoc --include_imports --descriptor_set_out="$root/proto/weft.protoset" \
  $(find . -name '*.proto' | sed 's|^\./||' | sort)
python3 "$root/scripts/embed-descriptor-set.py" "$root/proto/weft.protoset" \
  "$root/Sources/WeftServer/Reflection/DescriptorSet.swift"
python3 "$root/scripts/generate-api-schemas.py"
