//! `sluice decode` on the official clients' wire vectors: every vector
//! decodes, a few are checked value by value, and malformed input fails with
//! exit code 1 and a message naming the frame.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors")
}

fn sluice(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("decode")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// The labels of a vector file, in order.
fn labels(file: &str) -> Vec<String> {
    std::fs::read_to_string(vectors().join(file))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

/// Each vector of `file` decoded to json, by label.
fn decode_json(file: &str, extra: &[&str]) -> HashMap<String, Value> {
    let path = vectors().join(file);
    let mut args = vec!["--hex", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = sluice(&args, b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "decode {file} failed: {stderr}");
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let labels = labels(file);
    assert_eq!(lines.len(), labels.len(), "one record per vector");
    labels.into_iter().zip(lines).collect()
}

const DIGEST: &str = "t0f1hU0LMyWZKNDPq3+tgdar+/Y=";

#[test]
fn every_python_vector_decodes_with_the_expected_values() {
    let v = decode_json("python-aerospike-19.3.0.hex.txt", &[]);
    assert_eq!(v["put_int"]["key"], json!(["test", "demo", DIGEST, null]));
    assert_eq!(
        v["put_int"]["bins"],
        json!([{"name": "i", "type": "int", "value": 42}])
    );
    assert_eq!(v["put_int"]["msg"], json!("write"));
    assert_eq!(v["put_int"]["lut"], json!(0));
    assert_eq!(v["put_int"]["exp"], json!(0), "ttl 0: never expires");
    assert_eq!(v["put_float"]["bins"][0]["value"], json!(1.5));
    assert_eq!(
        v["put_bytes"]["bins"][0],
        json!({"name": "b", "type": "blob", "value": "AAH+/w=="})
    );
    assert_eq!(
        v["put_list"]["bins"][0],
        json!({"name": "l", "type": "list", "value": [1, "two", 3.0, "BA=="], "ordered": false})
    );
    assert_eq!(v["put_map"]["bins"][0]["value"], json!({"a": 1, "b": "x"}));
    assert_eq!(
        v["put_nested_map"]["bins"][0]["value"],
        json!({"outer": {"inner": [1, {"deep": true}]}, "n": null})
    );
    assert_eq!(v["put_geojson"]["bins"][0]["type"], json!("geojson"));
    assert_eq!(v["put_geojson"]["bins"][0]["value"]["type"], json!("Point"));
    assert_eq!(
        v["put_bin_delete_none"]["bins"],
        json!([{"name": "gone", "type": "null", "value": null}])
    );
    assert_eq!(v["put_sendkey_int"]["key"][3], json!(123456789));
    assert_eq!(v["put_sendkey_string"]["key"][3], json!("userkey"));
    assert_eq!(v["put_sendkey_bytes"]["key"][3], json!("3q0="));
    assert_eq!(v["put_no_set"]["key"][1], json!(null));
    assert_eq!(v["put_gen_eq"]["gen"], json!(5));
    assert_eq!(
        v["remove"],
        json!({"msg": "delete", "key": ["test", "demo", DIGEST, null], "gen": 0, "lut": 0, "durable": false})
    );
    assert_eq!(v["remove_durable"]["durable"], json!(true));
    assert_eq!(v["remove_durable_sendkey_int"]["key"][3], json!(7));
    let big = &v["put_compressed_large_string"]["bins"][0]["value"];
    assert!(
        big.as_str().is_some_and(|s| s.len() > 500),
        "compressed vector inflates: {big}"
    );
    assert_eq!(
        v["put_big_bin_count"]["bins"].as_array().map(Vec::len),
        Some(20)
    );
    // ttl 300 without a LUT: exp is counted from the time of decoding.
    let exp = v["put_ttl_300"]["exp"].as_u64().unwrap();
    assert!(exp > 1_700_000_000, "exp {exp} is in Unix seconds");
}

#[test]
fn every_rust_vector_decodes_in_every_format() {
    let v = decode_json("rust-aerospike-3.0.0.hex.txt", &[]);
    assert_eq!(v["put_int"]["key"], json!(["test", "demo", DIGEST, null]));
    assert_eq!(v["put_map_unordered_hash"]["bins"][0]["type"], json!("map"));
    let flat = decode_json(
        "rust-aerospike-3.0.0.hex.txt",
        &["--format", "flat-json", "--metadata-key", "md"],
    );
    assert_eq!(flat["put_int"]["i"], json!(42));
    assert_eq!(flat["put_int"]["md"]["digest"], json!(DIGEST));
    let path = vectors().join("rust-aerospike-3.0.0.hex.txt");
    let n = labels("rust-aerospike-3.0.0.hex.txt").len();
    for format in ["message-pack", "avro", "xdr"] {
        let out = sluice(&["--hex", path.to_str().unwrap(), "--format", format], b"");
        assert!(
            out.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text.lines().count(), n, "{format}: one hex line per record");
        assert!(text
            .lines()
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_hexdigit())));
    }
}

#[test]
fn xdr_format_prints_the_frame_as_it_arrived() {
    let file = std::fs::read_to_string(vectors().join("python-aerospike-19.3.0.hex.txt")).unwrap();
    let line = file.lines().find(|l| l.starts_with("put_string ")).unwrap();
    let out = sluice(&["--hex", "--format", "xdr"], line.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        line.split_whitespace().nth(1).unwrap()
    );
}

fn vector_bytes(label: &str) -> Vec<u8> {
    let file = std::fs::read_to_string(vectors().join("python-aerospike-19.3.0.hex.txt")).unwrap();
    let hex = file
        .lines()
        .find(|l| l.starts_with(&format!("{label} ")))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn raw_input_with_a_truncated_last_frame() {
    let mut raw = vector_bytes("put_int");
    raw.extend_from_slice(&vector_bytes("put_string"));
    let second = vector_bytes("put_float");
    raw.extend_from_slice(&second[..second.len() - 3]);
    let out = sluice(&[], &raw);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let good: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        good.len(),
        2,
        "the records before the bad frame are printed"
    );
    assert_eq!(good[1]["bins"][0]["value"], json!("hello"));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let offset = vector_bytes("put_int").len() + vector_bytes("put_string").len();
    assert!(
        stderr.contains(&format!("frame 2 at byte {offset}")),
        "{stderr}"
    );
    assert!(stderr.contains("truncated"), "{stderr}");
}

#[test]
fn garbage_fails_with_exit_code_1_naming_the_line() {
    let out = sluice(
        &["--hex"],
        b"# two captures\ngood 020300\nbad 0909090909090909\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("line 2 (good)"), "{stderr}");

    let out = sluice(&["--hex"], b"junk 0909090909090909\n");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("line 1 (junk), frame 0 at byte 0"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
