//! A GGUF v2/v3 reader that validates the whole header before anything trusts it.
//!
//! A GGUF file is a little-endian header followed by an aligned data section:
//!
//! ```text
//! magic "GGUF" | version u32 | n_tensors u64 | n_kv u64
//! n_kv x      (key: string, value_type u32, value)
//! n_tensors x (name: string, n_dims u32, dims u64 x n_dims, ggml_type u32, offset u64)
//! padding to `general.alignment` (default 32)
//! data section: tensor i at data_start + offset_i, size from its type and dims
//! ```
//!
//! where a string is a u64 byte length and UTF-8 bytes, and an array value is an element type
//! u32, a u64 length and the elements. Files come from the internet, so every count, length and
//! offset is checked against what the remaining bytes could possibly hold before it sizes an
//! allocation or indexes the map; the reader never panics on any input (a test feeds it every
//! truncation and thousands of mutations of valid files). Every failure is
//! `INVALID_MODEL_FILE` with a message naming the file, what is wrong, where (byte offset, key
//! or tensor) and, when useful, how to fix it.
//!
//! What is validated, in file order:
//! * magic `GGUF`; version 2 or 3 (v1 used 32-bit counts and is rejected by name; a version
//!   that reads as byte-swapped 2 or 3 is reported as a big-endian file, which we do not read).
//! * `n_tensors` and `n_kv` against the smallest possible encoding of one entry
//!   ([`MIN_TENSOR_INFO_BYTES`], [`MIN_KV_BYTES`]): a file of N bytes cannot declare more
//!   entries than N could hold, so a forged count fails at once instead of in a loop or an
//!   allocation.
//! * strings (keys, names, values): length within the remaining bytes and [`MAX_STRING_BYTES`],
//!   valid UTF-8; keys and tensor names non-empty.
//! * metadata values: known type; bools are 0 or 1; arrays have a known element type, a length
//!   within [`MAX_ARRAY_LEN`] and within what the remaining bytes hold at the element's minimum
//!   size, and are never nested (arrays of arrays are rejected, as llama.cpp does: no GGUF
//!   writer produces them, and refusing them keeps parsing non-recursive). Duplicate keys are
//!   rejected: which value wins would be a guess.
//! * `general.alignment`, if present: a uint32 power of two (a non-zero one).
//! * tensor infos: non-empty unique names; 1 to 4 dimensions, each at least 1; element count
//!   and byte size with checked arithmetic; a known ggml type id (types tallow cannot run, such
//!   as IQ*, TQ*, MXFP4 and the integer types, are accepted here and rejected by the loader by
//!   name); the row length (`dims[0]`) a whole number of the type's blocks.
//! * layout: the data section starts at the header end rounded up to the alignment, inside the
//!   file; every tensor offset is a multiple of the alignment; every tensor's bytes lie inside
//!   the file, and no two tensors overlap. (llama.cpp additionally requires tensors to be
//!   packed in file order; we do not need that, so we do not demand it.) A file with no tensors
//!   (a vocabulary-only file) may end before the padding.
//!
//! After [`GgufFile::parse`] succeeds, [`GgufFile::data`] is a plain slice of the map.

use super::metadata::{MetaValue, Metadata};
use super::tensor_type::TensorType;
use crate::error::{Error, ErrorCode, Result};
use memmap2::{Mmap, MmapMut};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The first four bytes of every GGUF file.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: usize = 32;
/// The longest string (key, tensor name or value) we accept. Real files hold at most chat
/// templates of some tens of KiB in one string.
pub const MAX_STRING_BYTES: u64 = 64 << 20;
/// The longest array we accept. The largest real arrays are vocabularies and merge lists of a
/// few hundred thousand entries.
pub const MAX_ARRAY_LEN: u64 = 1 << 24;
/// The most dimensions a tensor may have (`GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;
/// The smallest metadata entry: key length u64, a 1-byte key, type u32, a 1-byte value.
pub const MIN_KV_BYTES: usize = 8 + 1 + 4 + 1;
/// The smallest tensor info: name length u64, a 1-byte name, n_dims u32, one dim u64, type u32,
/// offset u64.
pub const MIN_TENSOR_INFO_BYTES: usize = 8 + 1 + 4 + 8 + 4 + 8;

/// Capacity reserved up front for an array; more grows as elements are actually read, so a
/// forged length cannot reserve memory the file does not back.
const ARRAY_PREALLOC: usize = 4096;

/// GGUF metadata value types (`enum gguf_type`).
mod value_type {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;

    /// The smallest encoding of one value of scalar type `ty` (a string is at least its
    /// length); None for arrays and unknown types.
    pub fn min_scalar_bytes(ty: u32) -> Option<usize> {
        match ty {
            U8 | I8 | BOOL => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 | STRING => Some(8),
            _ => None,
        }
    }

    pub fn name(ty: u32) -> &'static str {
        match ty {
            U8 => "uint8",
            I8 => "int8",
            U16 => "uint16",
            I16 => "int16",
            U32 => "uint32",
            I32 => "int32",
            F32 => "float32",
            BOOL => "bool",
            STRING => "string",
            ARRAY => "array",
            U64 => "uint64",
            I64 => "int64",
            F64 => "float64",
            _ => "unknown",
        }
    }
}

/// One tensor as the header describes it, validated against the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub tensor_type: TensorType,
    /// ggml order: `dims[0]` is the innermost dimension (the row length).
    pub dims: Vec<usize>,
    /// Absolute byte offset of the tensor's data in the file.
    pub offset: usize,
    /// Bytes of data.
    pub size: usize,
}

impl TensorInfo {
    /// The dimensions outermost first, as torch and candle write shapes.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }

    pub fn element_count(&self) -> usize {
        // Cannot overflow for an info the reader produced; saturate for hand-made ones.
        self.dims.iter().fold(1usize, |n, &d| n.saturating_mul(d))
    }
}

/// A memory-mapped GGUF file whose header has been parsed and validated.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    version: u32,
    alignment: usize,
    metadata: Metadata,
    /// In file order.
    tensors: Vec<TensorInfo>,
    /// name → index in `tensors`.
    index: HashMap<String, usize>,
    data_start: usize,
    mmap: Arc<Mmap>,
}

impl GgufFile {
    /// Maps `path` read-only and parses it.
    pub fn open(path: &Path) -> Result<GgufFile> {
        let file = std::fs::File::open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::new(
                    ErrorCode::ModelNotFound,
                    format!("GGUF file {} does not exist", path.display()),
                )
            } else {
                Error::new(
                    ErrorCode::Io,
                    format!("cannot open GGUF file {}: {e}", path.display()),
                )
            }
        })?;
        let is_file = file.metadata().map(|m| m.is_file()).unwrap_or(false);
        if !is_file {
            return Err(Error::new(
                ErrorCode::InvalidModelFile,
                format!("{} is not a regular file", path.display()),
            ));
        }
        // SAFETY: the map is read-only; like every mmap-based loader we assume the file is not
        // truncated or rewritten by another process while it is mapped.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| {
            Error::new(
                ErrorCode::Io,
                format!("cannot map GGUF file {}: {e}", path.display()),
            )
        })?;
        GgufFile::parse(Arc::new(mmap), path)
    }

    /// Parses and validates a mapped file; `path` is only used in messages.
    pub fn parse(mmap: Arc<Mmap>, path: &Path) -> Result<GgufFile> {
        let header = parse_header(&mmap, path)?;
        let index = header
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(GgufFile {
            path: path.to_path_buf(),
            version: header.version,
            alignment: header.alignment,
            metadata: header.metadata,
            tensors: header.tensors,
            index,
            data_start: header.data_start,
            mmap,
        })
    }

    /// Parses a file held in memory (copied into an anonymous map); `path` is only used in
    /// messages. For tests and for files built in memory.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<GgufFile> {
        let map = MmapMut::map_anon(bytes.len())
            .and_then(|mut map| {
                map.copy_from_slice(bytes);
                map.make_read_only()
            })
            .map_err(|e| {
                Error::new(
                    ErrorCode::Io,
                    format!(
                        "cannot map {} bytes for {}: {e}",
                        bytes.len(),
                        path.display()
                    ),
                )
            })?;
        GgufFile::parse(Arc::new(map), path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The GGUF version: 2 or 3.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The data alignment in bytes (a power of two).
    pub fn alignment(&self) -> usize {
        self.alignment
    }

    pub fn file_size(&self) -> usize {
        self.mmap.len()
    }

    /// Absolute offset of the data section (tensor offsets in the header are relative to it).
    pub fn data_start(&self) -> usize {
        self.data_start
    }

    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The metadata, moved out: the file keeps an empty one. For a loader that is done with it
    /// before it reads the weights, so that the two are not in memory at once.
    pub fn take_metadata(&mut self) -> Metadata {
        std::mem::take(&mut self.metadata)
    }

    /// Every tensor, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of `info`, which must come from this file (its range was checked at parse).
    /// An info from elsewhere that does not lie inside this file gets an empty slice.
    pub fn data(&self, info: &TensorInfo) -> &[u8] {
        info.offset
            .checked_add(info.size)
            .and_then(|end| self.mmap.get(info.offset..end))
            .unwrap_or(&[])
    }

    pub fn mmap(&self) -> &Arc<Mmap> {
        &self.mmap
    }
}

/// What the header says, validated against the file's length.
struct Header {
    version: u32,
    alignment: usize,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    data_start: usize,
}

fn invalid(path: &Path, at: usize, message: impl fmt::Display) -> Error {
    Error::new(
        ErrorCode::InvalidModelFile,
        format!(
            "invalid GGUF file {}: {message} (at byte offset {at})",
            path.display()
        ),
    )
}

/// A cursor over the file's bytes whose every read is bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn error(&self, at: usize, message: impl fmt::Display) -> Error {
        invalid(self.path, at, message)
    }

    /// The next `n` bytes; `what` names them for the message if the file ends first.
    fn take(&mut self, n: usize, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.error(
                self.pos,
                format_args!(
                    "file is truncated: {} needs {n} bytes but only {} remain",
                    what(),
                    self.remaining()
                ),
            ));
        }
        let bytes = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A length-prefixed UTF-8 string.
    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String> {
        let at = self.pos;
        let len = self.u64(&|| format!("the length of {}", what()))?;
        if len > MAX_STRING_BYTES {
            return Err(self.error(
                at,
                format_args!(
                    "{} has string length {len}, above the limit of {MAX_STRING_BYTES} bytes",
                    what()
                ),
            ));
        }
        let remaining = self.remaining();
        let len = match usize::try_from(len) {
            Ok(len) if len <= remaining => len,
            _ => {
                return Err(self.error(
                    at,
                    format_args!(
                        "{} has string length {len} but only {remaining} bytes remain in the file",
                        what()
                    ),
                ))
            }
        };
        let bytes = self.take(len, what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(self.error(
                at,
                format_args!(
                    "{} is not valid UTF-8 (bad byte at position {} of {len})",
                    what(),
                    e.valid_up_to()
                ),
            )),
        }
    }

    /// One scalar value of type `ty` (already known not to be an array or unknown).
    fn scalar(&mut self, ty: u32, what: &dyn Fn() -> String) -> Result<MetaValue> {
        use value_type as t;
        Ok(match ty {
            t::U8 => MetaValue::U8(u8::from_le_bytes(self.array(what)?)),
            t::I8 => MetaValue::I8(i8::from_le_bytes(self.array(what)?)),
            t::U16 => MetaValue::U16(u16::from_le_bytes(self.array(what)?)),
            t::I16 => MetaValue::I16(i16::from_le_bytes(self.array(what)?)),
            t::U32 => MetaValue::U32(u32::from_le_bytes(self.array(what)?)),
            t::I32 => MetaValue::I32(i32::from_le_bytes(self.array(what)?)),
            t::F32 => MetaValue::F32(f32::from_le_bytes(self.array(what)?)),
            t::U64 => MetaValue::U64(u64::from_le_bytes(self.array(what)?)),
            t::I64 => MetaValue::I64(i64::from_le_bytes(self.array(what)?)),
            t::F64 => MetaValue::F64(f64::from_le_bytes(self.array(what)?)),
            t::BOOL => {
                let at = self.pos;
                match self.array::<1>(what)?[0] {
                    0 => MetaValue::Bool(false),
                    1 => MetaValue::Bool(true),
                    b => {
                        return Err(self.error(
                            at,
                            format_args!("{} is a bool stored as {b}; must be 0 or 1", what()),
                        ))
                    }
                }
            }
            t::STRING => MetaValue::String(self.string(what)?),
            _ => {
                return Err(self.error(
                    self.pos,
                    format_args!("{} has unknown value type {ty}", what()),
                ))
            }
        })
    }

    /// The value of metadata `key`, whose type id was read at `type_at`.
    fn value(&mut self, ty: u32, key: &str, type_at: usize) -> Result<MetaValue> {
        if ty != value_type::ARRAY {
            if value_type::min_scalar_bytes(ty).is_none() {
                return Err(self.error(
                    type_at,
                    format_args!("metadata '{key}' has unknown value type {ty}"),
                ));
            }
            return self.scalar(ty, &|| format!("the value of metadata '{key}'"));
        }
        let elem_at = self.pos;
        let elem = self.u32(&|| format!("the element type of metadata array '{key}'"))?;
        if elem == value_type::ARRAY {
            return Err(self.error(
                elem_at,
                format_args!(
                    "metadata '{key}' is a nested array (arrays of arrays are not supported)"
                ),
            ));
        }
        let Some(min_bytes) = value_type::min_scalar_bytes(elem) else {
            return Err(self.error(
                elem_at,
                format_args!("metadata '{key}' has unknown array element type {elem}"),
            ));
        };
        let len_at = self.pos;
        let len = self.u64(&|| format!("the length of metadata array '{key}'"))?;
        if len > MAX_ARRAY_LEN {
            return Err(self.error(
                len_at,
                format_args!(
                    "metadata '{key}' has array length {len}, above the limit of {MAX_ARRAY_LEN}"
                ),
            ));
        }
        let fits = self.remaining() / min_bytes;
        if len > fits as u64 {
            return Err(self.error(
                len_at,
                format_args!(
                    "metadata '{key}' has array length {len} but the {} remaining bytes hold at most {fits} {} elements",
                    self.remaining(),
                    value_type::name(elem)
                ),
            ));
        }
        // Bounded by MAX_ARRAY_LEN and by the remaining bytes, so it fits a usize.
        let len = len as usize;
        let mut items = Vec::with_capacity(len.min(ARRAY_PREALLOC));
        for i in 0..len {
            items.push(self.scalar(elem, &|| format!("element {i} of metadata '{key}'"))?);
        }
        Ok(MetaValue::Array(items))
    }
}

/// A tensor info as read, before its offset is checked against the data section.
struct RawTensor {
    info: TensorInfo,
    /// The offset as stored: relative to the data section.
    relative_offset: u64,
    /// Where the offset field sits in the file, for messages.
    offset_at: usize,
}

/// Parses and validates the header of `bytes`, a whole GGUF file. `path` names it in messages.
fn parse_header(bytes: &[u8], path: &Path) -> Result<Header> {
    let mut r = Reader {
        bytes,
        pos: 0,
        path,
    };

    let magic = r.array::<4>(&|| "the magic number".to_string())?;
    if magic != MAGIC {
        return Err(r.error(
            0,
            format_args!(
                "bad magic {:?} (expected \"GGUF\"); this is not a GGUF file",
                String::from_utf8_lossy(&magic)
            ),
        ));
    }

    let version = r.u32(&|| "the version".to_string())?;
    match version {
        2 | 3 => {}
        1 => {
            return Err(r.error(
                4,
                "GGUF version 1 is not supported (v1 used 32-bit counts and lengths); \
                 convert the model again with a current llama.cpp",
            ))
        }
        v if v & 0xffff == 0 && matches!(v.swap_bytes(), 1..=3) => {
            return Err(r.error(
                4,
                format_args!(
                    "the file is big-endian (version reads as {v:#010x}, byte-swapped {}); \
                     only little-endian GGUF files are supported",
                    v.swap_bytes()
                ),
            ))
        }
        v => {
            return Err(r.error(
                4,
                format_args!("unsupported GGUF version {v} (tallow reads versions 2 and 3)"),
            ))
        }
    }

    let n_tensors = r.u64(&|| "the tensor count".to_string())?;
    let n_kv = r.u64(&|| "the metadata count".to_string())?;
    let remaining = r.remaining();
    let max_tensors = remaining / MIN_TENSOR_INFO_BYTES;
    if n_tensors > max_tensors as u64 {
        return Err(r.error(
            8,
            format_args!(
                "n_tensors is {n_tensors} but the {remaining} bytes after the counts have room \
                 for at most {max_tensors} tensor infos ({MIN_TENSOR_INFO_BYTES} bytes each at least)"
            ),
        ));
    }
    let max_kv = remaining / MIN_KV_BYTES;
    if n_kv > max_kv as u64 {
        return Err(r.error(
            16,
            format_args!(
                "n_kv is {n_kv} but the {remaining} bytes after the counts have room for at \
                 most {max_kv} metadata entries ({MIN_KV_BYTES} bytes each at least)"
            ),
        ));
    }
    // Both now fit a usize, and neither product exceeds `remaining`.
    let (n_tensors, n_kv) = (n_tensors as usize, n_kv as usize);
    let needed = n_tensors * MIN_TENSOR_INFO_BYTES + n_kv * MIN_KV_BYTES;
    if needed > remaining {
        return Err(r.error(
            8,
            format_args!(
                "n_tensors ({n_tensors}) and n_kv ({n_kv}) together need at least {needed} bytes \
                 but only {remaining} remain"
            ),
        ));
    }

    let mut metadata = Metadata::default();
    let mut alignment_at = 0;
    for i in 0..n_kv {
        let at = r.pos;
        let key = r.string(&|| format!("metadata key #{i}"))?;
        if key.is_empty() {
            return Err(r.error(at, format_args!("metadata key #{i} is empty")));
        }
        if metadata.contains(&key) {
            return Err(r.error(at, format_args!("duplicate metadata key '{key}'")));
        }
        if key == "general.alignment" {
            alignment_at = at;
        }
        let type_at = r.pos;
        let ty = r.u32(&|| format!("the value type of metadata '{key}'"))?;
        let value = r.value(ty, &key, type_at)?;
        metadata.insert(key, value);
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(&MetaValue::U32(a)) if a.is_power_of_two() => a as usize,
        Some(&MetaValue::U32(a)) => {
            return Err(r.error(
                alignment_at,
                format_args!("metadata 'general.alignment' is {a}; it must be a power of two"),
            ))
        }
        Some(v) => {
            return Err(r.error(
                alignment_at,
                format_args!(
                    "metadata 'general.alignment' must be uint32, found {}",
                    v.type_name()
                ),
            ))
        }
    };

    let mut raw: Vec<RawTensor> = Vec::with_capacity(n_tensors);
    let mut names: HashMap<String, usize> = HashMap::with_capacity(n_tensors);
    for i in 0..n_tensors {
        raw.push(read_tensor_info(&mut r, i, &mut names)?);
    }

    // The data section starts at the header end rounded up to the alignment.
    let header_end = r.pos;
    let aligned = header_end
        .checked_next_multiple_of(alignment)
        .filter(|&start| start <= bytes.len());
    let data_start = match aligned {
        Some(start) => start,
        // Nothing is read from the data section of a file without tensors.
        None if raw.is_empty() => bytes.len(),
        None => {
            return Err(r.error(
                header_end,
                format_args!(
                    "the data section would start at the header end rounded up to the \
                     alignment {alignment}, past the end of the file ({} bytes); the file is truncated",
                    bytes.len()
                ),
            ))
        }
    };

    let mut tensors = Vec::with_capacity(raw.len());
    for t in raw {
        tensors.push(place_tensor(&r, t, data_start, alignment)?);
    }
    check_overlaps(&r, &tensors)?;

    Ok(Header {
        version,
        alignment,
        metadata,
        tensors,
        data_start,
    })
}

/// Reads tensor info #`i`, validating everything but its offset.
fn read_tensor_info(
    r: &mut Reader<'_>,
    i: usize,
    names: &mut HashMap<String, usize>,
) -> Result<RawTensor> {
    let at = r.pos;
    let name = r.string(&|| format!("the name of tensor #{i}"))?;
    if name.is_empty() {
        return Err(r.error(at, format_args!("tensor #{i} has an empty name")));
    }
    if let Some(first) = names.get(&name) {
        return Err(r.error(
            at,
            format_args!("duplicate tensor name '{name}' (tensors #{first} and #{i})"),
        ));
    }

    let dims_at = r.pos;
    let n_dims = r.u32(&|| format!("the dimension count of tensor '{name}'"))?;
    if !(1..=MAX_DIMS).contains(&n_dims) {
        return Err(r.error(
            dims_at,
            format_args!("tensor '{name}' has n_dims {n_dims}; it must be 1 to {MAX_DIMS}"),
        ));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for d in 0..n_dims {
        let dim_at = r.pos;
        let dim = r.u64(&|| format!("dimension {d} of tensor '{name}'"))?;
        if dim == 0 {
            return Err(r.error(
                dim_at,
                format_args!("tensor '{name}' has dimension {d} equal to 0"),
            ));
        }
        let dim = usize::try_from(dim).map_err(|_| {
            r.error(
                dim_at,
                format_args!("tensor '{name}' dimension {d} ({dim}) does not fit in memory"),
            )
        })?;
        dims.push(dim);
    }
    let elements = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| {
            r.error(
                dims_at,
                format_args!("tensor '{name}' has dims {dims:?} whose element count overflows"),
            )
        })?;

    let type_at = r.pos;
    let type_id = r.u32(&|| format!("the type of tensor '{name}'"))?;
    let tensor_type = TensorType::from_id(type_id).ok_or_else(|| {
        r.error(
            type_at,
            format_args!("tensor '{name}' has unknown tensor type id {type_id}"),
        )
    })?;
    let block = tensor_type.block_size();
    if !dims[0].is_multiple_of(block) {
        return Err(r.error(
            dims_at,
            format_args!(
                "tensor '{name}' of type {tensor_type} has rows of {} elements, not a multiple \
                 of the block size {block}",
                dims[0]
            ),
        ));
    }
    let size = tensor_type
        .row_bytes(dims[0])
        .and_then(|row| row.checked_mul(elements / dims[0]))
        .ok_or_else(|| {
            r.error(
                dims_at,
                format_args!(
                    "tensor '{name}' of type {tensor_type} with dims {dims:?} has a byte size \
                     that overflows"
                ),
            )
        })?;

    let offset_at = r.pos;
    let relative_offset = r.u64(&|| format!("the offset of tensor '{name}'"))?;
    names.insert(name.clone(), i);
    Ok(RawTensor {
        info: TensorInfo {
            name,
            tensor_type,
            dims,
            offset: 0,
            size,
        },
        relative_offset,
        offset_at,
    })
}

/// Checks a tensor's offset and range against the data section and the file.
fn place_tensor(
    r: &Reader<'_>,
    raw: RawTensor,
    data_start: usize,
    alignment: usize,
) -> Result<TensorInfo> {
    let RawTensor {
        mut info,
        relative_offset: offset,
        offset_at,
    } = raw;
    let name = &info.name;
    if !offset.is_multiple_of(alignment as u64) {
        return Err(r.error(
            offset_at,
            format_args!(
                "tensor '{name}' has offset {offset}, not a multiple of the alignment {alignment}"
            ),
        ));
    }
    let file_size = r.bytes.len();
    let start = usize::try_from(offset)
        .ok()
        .and_then(|o| data_start.checked_add(o));
    let end = start.and_then(|s| s.checked_add(info.size));
    let Some((start, end)) = start.zip(end) else {
        return Err(r.error(
            offset_at,
            format_args!(
                "tensor '{name}' has offset {offset} and size {}: the data section start {data_start} \
                 plus offset plus size overflows",
                info.size
            ),
        ));
    };
    if end > file_size {
        return Err(r.error(
            offset_at,
            format_args!(
                "tensor '{name}' data [{start}, {end}) lies outside the file ({file_size} bytes); \
                 the file is truncated or the offset is wrong"
            ),
        ));
    }
    info.offset = start;
    Ok(info)
}

/// No byte of the data section belongs to two tensors.
fn check_overlaps(r: &Reader<'_>, tensors: &[TensorInfo]) -> Result<()> {
    let mut order: Vec<&TensorInfo> = tensors.iter().collect();
    order.sort_by_key(|t| t.offset);
    for pair in order.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        // Both ranges were checked to lie inside the file, so the sums cannot overflow.
        if a.offset + a.size > b.offset {
            return Err(r.error(
                a.offset,
                format_args!(
                    "tensors '{}' [{}, {}) and '{}' [{}, {}) overlap",
                    a.name,
                    a.offset,
                    a.offset + a.size,
                    b.name,
                    b.offset,
                    b.offset + b.size
                ),
            ));
        }
    }
    Ok(())
}
