//! The GGUF reader against hand-made files (fixtures/gguf/malformed, written by
//! scripts/make_malformed_gguf.py): every malformed file fails with INVALID_MODEL_FILE and a
//! message that names the file and the defect; every valid file parses to exactly the metadata,
//! tensors and bytes the script wrote. Then every truncation and thousands of seeded random
//! mutations of the valid files: the reader returns (Ok or Err), it never panics, and what it
//! accepts is consistent.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use tallow_core::gguf::file::GgufFile;
use tallow_core::gguf::metadata::MetaValue;
use tallow_core::gguf::tensor_type::TensorType;
use tallow_core::ErrorCode;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/gguf/malformed")
}

fn manifest() -> Value {
    let path = dir().join("manifest.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn entries<'a>(manifest: &'a Value, section: &str) -> &'a [Value] {
    manifest[section].as_array().expect(section)
}

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {v}"))
}

fn usize_of(v: &Value, field: &str) -> usize {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {v}")) as usize
}

#[test]
fn malformed_files_are_rejected_with_a_precise_message() {
    let manifest = manifest();
    let malformed = entries(&manifest, "malformed");
    assert!(
        malformed.len() >= 20,
        "the corpus shrank to {}",
        malformed.len()
    );
    let mut failures = Vec::new();
    for entry in malformed {
        let file = str_of(entry, "file");
        let fragment = str_of(entry, "message");
        let path = dir().join(file);
        match GgufFile::open(&path) {
            Ok(_) => failures.push(format!(
                "{file}: parsed, expected an error with {fragment:?}"
            )),
            Err(e) => {
                if e.code != ErrorCode::InvalidModelFile {
                    failures.push(format!("{file}: code {:?}: {}", e.code, e.message));
                } else if !e.message.contains(fragment) {
                    failures.push(format!("{file}: {:?} lacks {fragment:?}", e.message));
                } else if !e.message.contains(&path.display().to_string()) {
                    failures.push(format!("{file}: {:?} does not name the file", e.message));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn manifest_lists_every_fixture() {
    let manifest = manifest();
    let mut listed: Vec<String> = ["malformed", "valid"]
        .iter()
        .flat_map(|s| entries(&manifest, s))
        .map(|e| str_of(e, "file").to_string())
        .collect();
    let mut present: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".gguf"))
        .collect();
    listed.sort();
    present.sort();
    assert_eq!(listed, present);
    let mut messages: Vec<&str> = entries(&manifest, "malformed")
        .iter()
        .map(|e| str_of(e, "message"))
        .collect();
    messages.sort();
    messages.dedup();
    assert_eq!(
        messages.len(),
        entries(&manifest, "malformed").len(),
        "two defects expect the same message"
    );
}

/// The value a manifest metadata entry describes.
fn expected_value(ty: &str, v: &Value, entry: &Value) -> MetaValue {
    let int = || v.as_i64().unwrap_or_else(|| panic!("{entry}"));
    match ty {
        "uint8" => MetaValue::U8(int() as u8),
        "int8" => MetaValue::I8(int() as i8),
        "uint16" => MetaValue::U16(int() as u16),
        "int16" => MetaValue::I16(int() as i16),
        "uint32" => MetaValue::U32(int() as u32),
        "int32" => MetaValue::I32(int() as i32),
        "uint64" => MetaValue::U64(v.as_u64().unwrap()),
        "int64" => MetaValue::I64(int()),
        "float32" => MetaValue::F32(v.as_f64().unwrap() as f32),
        "float64" => MetaValue::F64(v.as_f64().unwrap()),
        "bool" => MetaValue::Bool(v.as_bool().unwrap()),
        "string" => MetaValue::String(v.as_str().unwrap().to_string()),
        "array" => MetaValue::Array(
            v.as_array()
                .unwrap()
                .iter()
                .map(|item| expected_value(str_of(entry, "element_type"), item, entry))
                .collect(),
        ),
        other => panic!("unknown type {other} in {entry}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn valid_files_parse_to_what_the_script_wrote() {
    let manifest = manifest();
    let valid = entries(&manifest, "valid");
    assert!(!valid.is_empty());
    for entry in valid {
        let file = str_of(entry, "file");
        let path = dir().join(file);
        let gguf = GgufFile::open(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(
            gguf.version() as usize,
            usize_of(entry, "version"),
            "{file}"
        );
        assert_eq!(gguf.alignment(), usize_of(entry, "alignment"), "{file}");
        assert_eq!(gguf.data_start(), usize_of(entry, "data_start"), "{file}");
        assert_eq!(gguf.file_size(), usize_of(entry, "file_size"), "{file}");
        assert_eq!(gguf.mmap().len(), gguf.file_size());

        let expected: Vec<(String, MetaValue)> = entry["metadata"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let value = expected_value(str_of(m, "type"), &m["value"], m);
                (str_of(m, "key").to_string(), value)
            })
            .collect();
        let actual: Vec<(String, MetaValue)> = gguf
            .metadata()
            .entries()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        assert_eq!(actual, expected, "{file}");

        let tensors = entry["tensors"].as_array().unwrap();
        assert_eq!(gguf.tensors().len(), tensors.len(), "{file}");
        for (info, want) in gguf.tensors().iter().zip(tensors) {
            let name = str_of(want, "name");
            let dims: Vec<usize> = want["dims"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(info.name, name, "{file}");
            assert_eq!(
                info.tensor_type.name(),
                str_of(want, "type"),
                "{file} {name}"
            );
            assert_eq!(info.dims, dims, "{file} {name}");
            let mut shape = dims.clone();
            shape.reverse();
            assert_eq!(info.shape(), shape, "{file} {name}");
            assert_eq!(info.element_count(), dims.iter().product::<usize>());
            assert_eq!(info.offset, usize_of(want, "offset"), "{file} {name}");
            assert_eq!(info.size, usize_of(want, "size"), "{file} {name}");
            assert_eq!(
                hex(gguf.data(info)),
                str_of(want, "data_hex"),
                "{file} {name}"
            );
            assert_eq!(gguf.tensor(name), Some(info), "{file} {name}");
        }
        assert_eq!(gguf.tensor("no.such.tensor"), None);

        // The in-memory path parses the same bytes to the same result.
        let bytes = std::fs::read(&path).unwrap();
        let copy = GgufFile::from_bytes(&bytes, &path).unwrap();
        assert_eq!(copy.tensors(), gguf.tensors(), "{file}");
        assert_eq!(copy.metadata().len(), gguf.metadata().len(), "{file}");
    }
}

#[test]
fn unsupported_tensor_types_are_read() {
    let gguf = GgufFile::open(&dir().join("valid-v3.gguf")).unwrap();
    let info = gguf.tensor("blk.0.ffn_up.weight").unwrap();
    assert_eq!(info.tensor_type, TensorType::IQ4NL);
    assert_eq!(info.size, 18);
}

#[test]
fn missing_file_and_directory() {
    let e = GgufFile::open(&dir().join("no-such-file.gguf")).unwrap_err();
    assert_eq!(e.code, ErrorCode::ModelNotFound);
    let e = GgufFile::open(&dir()).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidModelFile);
}

/// Parses `bytes` under catch_unwind. A panic fails the test with `label`; an error must be
/// INVALID_MODEL_FILE; an accepted file must be self-consistent.
fn parse_without_panic(bytes: &[u8], label: &str) -> Option<GgufFile> {
    let path = Path::new("mutated.gguf");
    let result = catch_unwind(AssertUnwindSafe(|| GgufFile::from_bytes(bytes, path)))
        .unwrap_or_else(|_| panic!("the reader panicked on {label}"));
    match result {
        Err(e) => {
            assert_eq!(e.code, ErrorCode::InvalidModelFile, "{label}: {e}");
            assert!(e.message.contains("mutated.gguf"), "{label}: {e}");
            None
        }
        Ok(gguf) => {
            assert!(matches!(gguf.version(), 2 | 3), "{label}");
            assert!(gguf.alignment().is_power_of_two(), "{label}");
            assert!(gguf.data_start() <= bytes.len(), "{label}");
            for info in gguf.tensors() {
                assert_eq!(gguf.data(info).len(), info.size, "{label}: {}", info.name);
                assert!(info.offset >= gguf.data_start(), "{label}: {}", info.name);
                assert!(
                    (1..=4).contains(&info.dims.len()) && info.dims.iter().all(|&d| d > 0),
                    "{label}: {}",
                    info.name
                );
            }
            Some(gguf)
        }
    }
}

fn valid_files() -> Vec<(String, Vec<u8>)> {
    entries(&manifest(), "valid")
        .iter()
        .map(|e| {
            let file = str_of(e, "file").to_string();
            let bytes = std::fs::read(dir().join(&file)).unwrap();
            (file, bytes)
        })
        .collect()
}

#[test]
fn every_truncation_is_an_error() {
    for (file, bytes) in valid_files() {
        for len in 0..bytes.len() {
            let parsed = parse_without_panic(&bytes[..len], &format!("{file}[..{len}]"));
            assert!(parsed.is_none(), "{file} truncated to {len} bytes parsed");
        }
        assert!(parse_without_panic(&bytes, &file).is_some(), "{file}");
    }
}

/// 64-bit values that break parsers: zero, one, sign bits, all ones, values near a power of two.
const INTERESTING: [u64; 10] = [
    0,
    1,
    0x7f,
    0xff,
    0x8000_0000,
    0xffff_ffff,
    1 << 32,
    1 << 62,
    1 << 63,
    u64::MAX,
];

#[test]
fn random_mutations_never_panic() {
    let files = valid_files();
    let mut rng = ChaCha8Rng::seed_from_u64(0x6767_7566);
    let mut accepted = 0;
    let rounds = 4000;
    for round in 0..rounds {
        let (file, original) = &files[round % files.len()];
        let mut bytes = original.clone();
        let n_edits = rng.random_range(1..=3);
        for _ in 0..n_edits {
            let at = rng.random_range(0..bytes.len());
            match rng.random_range(0..4) {
                // Flip one bit.
                0 => bytes[at] ^= 1 << rng.random_range(0..8),
                // Replace one byte.
                1 => bytes[at] = rng.random(),
                // Overwrite a (possibly partial) little-endian u64 with an interesting value,
                // or the value minus a small delta.
                2 => {
                    let v = INTERESTING[rng.random_range(0..INTERESTING.len())]
                        .wrapping_sub(rng.random_range(0..3));
                    let end = (at + 8).min(bytes.len());
                    bytes[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
                }
                // Cut the file.
                _ => bytes.truncate(at.max(1)),
            }
        }
        let label = format!("{file}, mutation round {round}");
        if parse_without_panic(&bytes, &label).is_some() {
            accepted += 1;
        }
    }
    // Mutations inside tensor data or metadata values are accepted; the test means something
    // only if both outcomes occur.
    assert!(accepted > 0 && accepted < rounds, "accepted {accepted}");
}
