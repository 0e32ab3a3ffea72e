#!/usr/bin/env python3
"""Hand-made GGUF files for the reader's tests: many malformed ones and three valid ones.

What it writes (into ``fixtures/gguf/malformed/``, replacing what is there)
-----------------------------------------------------------------------------
* ``NN-short-name.gguf``: one file per defect, each a few hundred bytes at most, built from a
  small valid file with exactly one thing broken. The defects follow the history of GGUF parser
  bugs and fuzzing findings in llama.cpp and others (forged counts and lengths that drive huge
  allocations or out-of-bounds reads, element counts and byte sizes that overflow, offsets past
  the end or overlapping, nested or unknown types, bad UTF-8, truncation at every stage).
* ``valid-*.gguf``: well-formed files the reader must accept, covering GGUF v2 and v3, every
  metadata value type, arrays (empty ones too), a custom alignment, 1- to 4-dimensional
  tensors, tensors stored out of offset order, a type tallow cannot run (IQ4_NL: the reader
  accepts it, the loader rejects it), and a file with no tensors that ends without padding.
* ``manifest.json``: ``malformed``: ``{file, defect, message}`` where ``message`` is a fragment
  the error must contain; ``valid``: ``{file, description, version, alignment, data_start,
  file_size, metadata, tensors}`` with every metadata entry in file order (``{key, type,
  value}``, arrays with ``element_type``) and every tensor (``{name, type, dims, offset, size,
  data_hex}``, ``dims`` in ggml order, ``offset`` absolute).

``crates/tallow-core/tests/gguf_malformed.rs`` reads the manifest. Only the standard library is
used (``struct``, ``json``) and the output is byte-for-byte deterministic. Run from anywhere::

    python3 scripts/make_malformed_gguf.py
"""

import json
import struct
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "gguf" / "malformed"

# GGUF metadata value types (enum gguf_type).
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
TYPE_NAMES = {
    U8: "uint8", I8: "int8", U16: "uint16", I16: "int16", U32: "uint32", I32: "int32",
    F32: "float32", BOOL: "bool", STRING: "string", ARRAY: "array", U64: "uint64",
    I64: "int64", F64: "float64",
}
SCALAR_FORMATS = {
    U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?",
    U64: "<Q", I64: "<q", F64: "<d",
}

# ggml tensor types: id, elements per block, bytes per block.
GGML = {
    "F32": (0, 1, 4),
    "F16": (1, 1, 2),
    "Q4_0": (2, 32, 18),
    "Q8_0": (8, 32, 34),
    "IQ4_NL": (20, 32, 18),
    "BF16": (30, 1, 2),
}

DEFAULT_ALIGNMENT = 32


def u32(v):
    return struct.pack("<I", v)


def u64(v):
    return struct.pack("<Q", v)


def gstr(s):
    """A GGUF string: u64 byte length, then the bytes (str is UTF-8 encoded)."""
    b = s.encode("utf-8") if isinstance(s, str) else s
    return u64(len(b)) + b


def scalar(ty, v):
    return gstr(v) if ty == STRING else struct.pack(SCALAR_FORMATS[ty], v)


def kv(key, ty, v):
    """One metadata entry with a scalar value."""
    return gstr(key) + u32(ty) + scalar(ty, v)


def kv_array(key, elem_ty, items):
    return gstr(key) + u32(ARRAY) + u32(elem_ty) + u64(len(items)) + b"".join(
        scalar(elem_ty, v) for v in items
    )


def tinfo(name, dims, type_name, offset):
    """One tensor info; `dims` in ggml order (innermost first), `offset` relative to the data."""
    type_id = GGML[type_name][0] if isinstance(type_name, str) else type_name
    return (
        gstr(name)
        + u32(len(dims))
        + b"".join(u64(d) for d in dims)
        + u32(type_id)
        + u64(offset)
    )


def nbytes(type_name, dims):
    _, block, size = GGML[type_name]
    n = 1
    for d in dims:
        n *= d
    assert dims[0] % block == 0
    return n // block * size


def pad(n, alignment):
    return (-n) % alignment


def header(n_tensors, n_kv, version=3):
    return b"GGUF" + u32(version) + u64(n_tensors) + u64(n_kv)


def gguf(kvs, tinfos, data=b"", version=3, n_tensors=None, n_kv=None, alignment=None):
    """A whole file: header, metadata, tensor infos, padding to the alignment, data."""
    head = header(
        len(tinfos) if n_tensors is None else n_tensors,
        len(kvs) if n_kv is None else n_kv,
        version,
    )
    head += b"".join(kvs) + b"".join(tinfos)
    head += b"\0" * pad(len(head), alignment or DEFAULT_ALIGNMENT)
    return head + data


def pattern(n, seed):
    """Deterministic tensor bytes."""
    return bytes((i * 7 + seed * 31 + 1) & 0xFF for i in range(n))


ARCH = kv("general.architecture", STRING, "llama")
W = tinfo("w", [4], "F32", 0)
W_DATA = pattern(16, 0)


def base(**kw):
    """The valid file every defect is made from: one string key, one F32 tensor of 4."""
    return gguf(kw.pop("kvs", [ARCH]), kw.pop("tinfos", [W]), kw.pop("data", W_DATA), **kw)


def malformed():
    """(short name, defect, message fragment, bytes) for every defect."""
    out = []

    def add(name, defect, message, data):
        out.append((name, defect, message, data))

    ok = base()
    add("empty", "an empty file", "file is truncated: the magic number needs 4 bytes", b"")
    add("bad-magic", "magic GGML instead of GGUF", 'bad magic "GGML"', b"GGML" + ok[4:])
    add("version-1", "GGUF version 1", "GGUF version 1 is not supported", base(version=1))
    add("version-4", "a future version 4", "unsupported GGUF version 4", base(version=4))
    big = (
        b"GGUF" + struct.pack(">I", 3) + struct.pack(">Q", 1) + struct.pack(">Q", 1) + ok[24:]
    )
    add("big-endian", "a big-endian file (version 3 byte-swapped)", "the file is big-endian", big)
    add(
        "truncated-counts",
        "the file ends inside n_tensors",
        "file is truncated: the tensor count needs 8 bytes but only 4 remain",
        ok[:12],
    )
    add(
        "huge-n-tensors",
        "n_tensors = 2^63",
        "n_tensors is 9223372036854775808 but the",
        base(n_tensors=1 << 63),
    )
    add(
        "huge-n-kv",
        "n_kv = 2^64 - 1",
        "n_kv is 18446744073709551615 but the",
        base(n_kv=2**64 - 1),
    )
    # Each count alone fits in what follows the header, both together do not.
    rest = len(ok) - 24
    add(
        "counts-exceed-file-together",
        "n_tensors and n_kv each possible alone, not together",
        "together need at least",
        base(n_kv=rest // 14),
    )

    add(
        "key-length-over-limit",
        "a key whose length is 2^64 - 1",
        "metadata key #0 has string length 18446744073709551615, above the limit",
        base(kvs=[u64(2**64 - 1) + b"general.architecture" + u32(STRING) + gstr("llama")]),
    )
    add(
        "key-length-past-eof",
        "a key length within the cap but past the end of the file",
        "metadata key #0 has string length 100000 but only",
        base(kvs=[u64(100000) + b"general.architecture" + u32(STRING) + gstr("llama")]),
    )
    add("empty-key", "an empty key", "metadata key #0 is empty", base(kvs=[kv("", STRING, "x")]))
    add(
        "key-not-utf8",
        "a key that is not UTF-8",
        "metadata key #0 is not valid UTF-8",
        base(kvs=[kv(b"general.\xff", STRING, "llama")]),
    )
    add(
        "value-not-utf8",
        "a string value that is not UTF-8 (a lone continuation byte)",
        "the value of metadata 'general.architecture' is not valid UTF-8",
        base(kvs=[kv("general.architecture", STRING, b"lla\x80ma")]),
    )
    add(
        "unknown-value-type",
        "a metadata value type 13",
        "metadata 'general.architecture' has unknown value type 13",
        base(kvs=[gstr("general.architecture") + u32(13) + gstr("llama")]),
    )
    add(
        "invalid-bool",
        "a bool stored as 2",
        "the value of metadata 'test.flag' is a bool stored as 2",
        base(kvs=[ARCH, gstr("test.flag") + u32(BOOL) + b"\x02"]),
    )
    add(
        "array-length-over-limit",
        "a uint8 array of length 2^62",
        "metadata 'test.bytes' has array length 4611686018427387904, above the limit",
        base(kvs=[ARCH, gstr("test.bytes") + u32(ARRAY) + u32(U8) + u64(1 << 62) + b"\0" * 8]),
    )
    add(
        "array-length-past-eof",
        "a uint32 array longer than the rest of the file",
        "metadata 'test.ids' has array length 1000 but the",
        base(kvs=[ARCH, gstr("test.ids") + u32(ARRAY) + u32(U32) + u64(1000) + u32(7)]),
    )
    add(
        "nested-array",
        "an array of arrays",
        "metadata 'test.nested' is a nested array",
        base(
            kvs=[
                ARCH,
                gstr("test.nested") + u32(ARRAY) + u32(ARRAY) + u64(1) + u32(U8) + u64(1) + b"\1",
            ]
        ),
    )
    add(
        "array-unknown-element-type",
        "an array whose element type is 99",
        "metadata 'test.odd' has unknown array element type 99",
        base(kvs=[ARCH, gstr("test.odd") + u32(ARRAY) + u32(99) + u64(1) + b"\0" * 8]),
    )
    add(
        "array-string-length-overflow",
        "a string array whose second element claims 2^63 bytes",
        "element 1 of metadata 'tokenizer.ggml.tokens' has string length 9223372036854775808",
        base(
            kvs=[
                ARCH,
                gstr("tokenizer.ggml.tokens") + u32(ARRAY) + u32(STRING) + u64(2) + gstr("a")
                + u64(1 << 63) + b"b",
            ]
        ),
    )
    add(
        "duplicate-key",
        "general.architecture twice",
        "duplicate metadata key 'general.architecture'",
        base(kvs=[ARCH, kv("general.architecture", STRING, "qwen3")]),
    )
    add(
        "alignment-zero",
        "general.alignment = 0",
        "metadata 'general.alignment' is 0; it must be a power of two",
        base(kvs=[ARCH, kv("general.alignment", U32, 0)]),
    )
    add(
        "alignment-not-power-of-two",
        "general.alignment = 48",
        "metadata 'general.alignment' is 48; it must be a power of two",
        base(kvs=[ARCH, kv("general.alignment", U32, 48)], alignment=48),
    )
    add(
        "alignment-wrong-type",
        "general.alignment stored as uint64",
        "metadata 'general.alignment' must be uint32, found uint64",
        base(kvs=[ARCH, kv("general.alignment", U64, 32)]),
    )
    # Cut inside an 8-byte value. (No tensors, so the counts still fit what remains: a cut
    # that breaks them is caught by the count bounds instead.)
    u64_file = base(kvs=[ARCH, kv("test.u64", U64, 7)], tinfos=[], data=b"")
    cut = 24 + len(ARCH) + len(gstr("test.u64")) + 4 + 4
    add(
        "truncated-in-metadata",
        "the file ends inside a uint64 metadata value",
        "file is truncated: the value of metadata 'test.u64' needs 8 bytes but only 4 remain",
        u64_file[:cut],
    )
    # Cut just before the tensor's offset field.
    cut = 24 + len(ARCH) + len(W) - 8
    add(
        "truncated-in-tensor-info",
        "the file ends inside a tensor info, before its offset",
        "file is truncated: the offset of tensor 'w' needs 8 bytes but only 0 remain",
        ok[:cut],
    )
    add(
        "empty-tensor-name",
        "a tensor with an empty name",
        "tensor #0 has an empty name",
        base(tinfos=[tinfo("", [4], "F32", 0)]),
    )
    add(
        "tensor-name-not-utf8",
        "a tensor name that is not UTF-8 (a truncated 2-byte sequence)",
        "the name of tensor #0 is not valid UTF-8",
        base(tinfos=[tinfo(b"w\xc3", [4], "F32", 0)]),
    )
    add(
        "duplicate-tensor",
        "two tensors named w",
        "duplicate tensor name 'w' (tensors #0 and #1)",
        base(tinfos=[W, tinfo("w", [4], "F32", 32)], data=W_DATA + b"\0" * 16 + W_DATA),
    )
    add(
        "n-dims-0",
        "a tensor with no dimensions",
        "tensor 'w' has n_dims 0",
        base(tinfos=[tinfo("w", [], "F32", 0)]),
    )
    add(
        "n-dims-5",
        "a tensor with 5 dimensions",
        "tensor 'w' has n_dims 5; it must be 1 to 4",
        base(tinfos=[tinfo("w", [1, 1, 1, 1, 4], "F32", 0)]),
    )
    add(
        "dim-zero",
        "a tensor with a dimension of 0",
        "tensor 'w' has dimension 1 equal to 0",
        base(tinfos=[tinfo("w", [4, 0], "F32", 0)]),
    )
    add(
        "element-count-overflow",
        "dims 2^32 x 2^32 x 2: the element count overflows 64 bits",
        "tensor 'w' has dims [4294967296, 4294967296, 2] whose element count overflows",
        base(tinfos=[tinfo("w", [1 << 32, 1 << 32, 2], "F32", 0)]),
    )
    add(
        "byte-size-overflow",
        "an F32 tensor of 2^62 elements: the element count fits, the byte size does not",
        "tensor 'w' of type F32 with dims [4611686018427387904] has a byte size that overflows",
        base(tinfos=[tinfo("w", [1 << 62], "F32", 0)]),
    )
    add(
        "removed-tensor-type",
        "tensor type id 4 (Q4_2, removed from ggml)",
        "tensor 'w' has unknown tensor type id 4",
        base(tinfos=[tinfo("w", [32], 4, 0)]),
    )
    add(
        "unknown-tensor-type",
        "tensor type id 1000",
        "tensor 'w' has unknown tensor type id 1000",
        base(tinfos=[tinfo("w", [4], 1000, 0)]),
    )
    add(
        "row-not-multiple-of-block",
        "a Q4_0 tensor whose rows hold 48 elements (blocks are 32)",
        "tensor 'w' of type Q4_0 has rows of 48 elements, not a multiple of the block size 32",
        base(tinfos=[tinfo("w", [48, 1], "Q4_0", 0)], data=b"\0" * 64),
    )
    add(
        "misaligned-offset",
        "a second tensor at offset 16 with alignment 32",
        "tensor 'v' has offset 16, not a multiple of the alignment 32",
        base(tinfos=[W, tinfo("v", [4], "F32", 16)], data=W_DATA + W_DATA),
    )
    ok_start = len(ok) - len(W_DATA)
    far = ok_start + (1 << 20)
    add(
        "offset-beyond-eof",
        "a tensor at offset 2^20 in a small file",
        f"tensor 'w' data [{far}, {far + 16}) lies outside the file",
        base(tinfos=[tinfo("w", [4], "F32", 1 << 20)]),
    )
    add(
        "data-truncated",
        "the last tensor's data is one byte short",
        f"tensor 'w' data [{ok_start}, {ok_start + 16}) lies outside the file "
        f"({len(ok) - 1} bytes)",
        ok[:-1],
    )
    add(
        "offset-plus-size-overflow",
        "offset 2^64 - 32: data start + offset + size overflows",
        "tensor 'w' has offset 18446744073709551584 and size 16",
        base(tinfos=[tinfo("w", [4], "F32", 2**64 - 32)]),
    )
    overlap = base(
        tinfos=[tinfo("a", [16], "F32", 0), tinfo("b", [4], "F32", 32)], data=pattern(64, 1)
    )
    s = len(overlap) - 64
    add(
        "overlapping-tensors",
        "a tensor of 64 bytes at offset 0 and one at offset 32",
        f"tensors 'a' [{s}, {s + 64}) and 'b' [{s + 32}, {s + 48}) overlap",
        overlap,
    )
    # Tensors present, but the file stops at the end of the tensor infos (no padding, no data).
    head = header(1, 1) + ARCH + W
    assert len(head) % DEFAULT_ALIGNMENT != 0
    add(
        "data-section-past-eof",
        "the file ends before the padding that starts the data section",
        "the data section would start at the header end rounded up to the alignment 32, "
        "past the end of the file",
        head,
    )
    return out


def hexdata(b):
    return b.hex()


def meta_json(key, ty, v, elem_ty=None):
    if ty == ARRAY:
        return {"key": key, "type": "array", "element_type": TYPE_NAMES[elem_ty], "value": v}
    return {"key": key, "type": TYPE_NAMES[ty], "value": v}


def build_valid(name, description, version, alignment, metas, tensors, pad_end=True):
    """`metas`: (key, type, value[, element type]); `tensors`: (name, type, dims, relative
    offset) in file order. Returns (bytes, manifest entry)."""
    kvs = []
    meta_out = []
    if alignment != DEFAULT_ALIGNMENT:
        metas = metas + [("general.alignment", U32, alignment)]
    for m in metas:
        key, ty, v = m[:3]
        if ty == ARRAY:
            kvs.append(kv_array(key, m[3], v))
            meta_out.append(meta_json(key, ty, v, m[3]))
        else:
            kvs.append(kv(key, ty, v))
            meta_out.append(meta_json(key, ty, v))
    tinfos = [tinfo(n, dims, t, off) for n, t, dims, off in tensors]
    head = header(len(tinfos), len(kvs), version) + b"".join(kvs) + b"".join(tinfos)
    if pad_end:
        head += b"\0" * pad(len(head), alignment)
    data_start = len(head)
    end = max((off + nbytes(t, dims) for _, t, dims, off in tensors), default=0)
    data = bytearray(end)
    tensors_out = []
    for i, (n, t, dims, off) in enumerate(tensors):
        assert off % alignment == 0
        size = nbytes(t, dims)
        blob = pattern(size, i + 1)
        data[off : off + size] = blob
        tensors_out.append(
            {
                "name": n,
                "type": t,
                "dims": dims,
                "offset": data_start + off,
                "size": size,
                "data_hex": hexdata(blob),
            }
        )
    body = head + bytes(data)
    entry = {
        "file": name,
        "description": description,
        "version": version,
        "alignment": alignment,
        "data_start": data_start,
        "file_size": len(body),
        "metadata": meta_out,
        "tensors": tensors_out,
    }
    return body, entry


def valid():
    files = []
    files.append(
        build_valid(
            "valid-v3.gguf",
            "GGUF v3, default alignment, every metadata type, tensors stored out of offset order, "
            "an IQ4_NL tensor (read here, rejected by the loader)",
            3,
            32,
            [
                ("general.architecture", STRING, "tallow-test"),
                ("test.u8", U8, 200),
                ("test.i8", I8, -5),
                ("test.u16", U16, 60000),
                ("test.i16", I16, -30000),
                ("test.u32", U32, 4000000000),
                ("test.i32", I32, -2000000000),
                ("test.u64", U64, 1099511627777),
                ("test.i64", I64, -1099511627777),
                ("test.f32", F32, 0.5),
                ("test.f64", F64, -2.25),
                ("test.bool", BOOL, True),
                ("test.string", STRING, "h\u00e9llo \u2713"),
                ("test.empty_string", STRING, ""),
                ("test.array_u32", ARRAY, [1, 2, 3], U32),
                ("test.array_string", ARRAY, ["a", "", "\u00fc"], STRING),
                ("test.array_empty", ARRAY, [], F32),
                ("test.array_bool", ARRAY, [True, False], BOOL),
            ],
            [
                ("token_embd.weight", "F32", [4, 2], 0),
                ("output_norm.weight", "F16", [3], 128),
                ("blk.0.attn_q.weight", "Q8_0", [32, 2], 32),
                ("blk.0.ffn_up.weight", "IQ4_NL", [32], 160),
            ],
        )
    )
    files.append(
        build_valid(
            "valid-v2-align64.gguf",
            "GGUF v2 with general.alignment 64, a Q4_0 matrix and a 4-dimensional BF16 tensor",
            2,
            64,
            [("general.architecture", STRING, "llama")],
            [
                ("blk.0.attn_k.weight", "Q4_0", [32, 3], 0),
                ("blk.0.attn_v.weight", "BF16", [2, 2, 2, 2], 64),
            ],
        )
    )
    files.append(
        build_valid(
            "valid-vocab-only.gguf",
            "GGUF v3 with metadata only (a vocabulary file): no tensors, no padding at the end",
            3,
            32,
            [
                ("general.architecture", STRING, "llama"),
                ("tokenizer.ggml.model", STRING, "gpt2"),
                ("tokenizer.ggml.tokens", ARRAY, ["<s>", "</s>", "hello", " world"], STRING),
                ("tokenizer.ggml.token_type", ARRAY, [3, 3, 1, 1], I32),
            ],
            [],
            pad_end=False,
        )
    )
    return files


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.gguf"):
        old.unlink()
    manifest = {
        "generator": "scripts/make_malformed_gguf.py",
        "malformed": [],
        "valid": [],
    }
    for i, (name, defect, message, data) in enumerate(malformed(), start=1):
        file = f"{i:02d}-{name}.gguf"
        assert len(data) <= 512, (file, len(data))
        (OUT / file).write_bytes(data)
        manifest["malformed"].append({"file": file, "defect": defect, "message": message})
    for data, entry in valid():
        assert entry["file_size"] <= 1024, entry["file"]
        (OUT / entry["file"]).write_bytes(data)
        manifest["valid"].append(entry)
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    counts = f"{len(manifest['malformed'])} malformed and {len(manifest['valid'])} valid files"
    print(f"wrote {counts} to {OUT}")


if __name__ == "__main__":
    main()
