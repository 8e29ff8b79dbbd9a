//! `sluice decode`: reads captured XDR frames (raw bytes, or `label hex` lines
//! like the test vectors) and prints each record in an outbound format: text
//! formats one record per line, binary formats as one hex line per record.
//!
//! It runs the same codec as the connector (frame cutting, parsing, the
//! encoders), so it answers "what would sluice send for this capture?" and
//! points at the first frame it cannot read.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use sluice_codec::encode::{avro, BinPolicy, Encoder};
use sluice_codec::wire::{self, frame};

/// The outbound format to print.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    FlatJson,
    MessagePack,
    Avro,
    Xdr,
}

#[derive(clap::Args, Debug)]
pub struct DecodeArgs {
    /// File holding the frames; standard input when absent or `-`.
    pub file: Option<PathBuf>,
    /// The input is text: one `label hex` line per capture (as in the test
    /// vectors); `#` starts a comment line, blank lines are ignored.
    #[arg(long)]
    pub hex: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
    /// flat-json: the property that holds the metadata.
    #[arg(long, default_value = "metadata")]
    pub metadata_key: String,
    /// avro: the schema file (JSON); the default schema when absent.
    #[arg(long)]
    pub schema_file: Option<PathBuf>,
    /// avro: write non-string map keys as strings.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub stringify_map_keys: bool,
    /// Largest frame body accepted, in bytes.
    #[arg(long, default_value_t = 8 << 20)]
    pub max_body: usize,
}

/// Why decoding stopped.
#[derive(Debug, thiserror::Error)]
enum DecodeError {
    #[error("cannot read {what}: {source}")]
    Read {
        what: String,
        source: std::io::Error,
    },
    #[error("avro schema {path}: {why}")]
    Schema { path: String, why: String },
    #[error("{place}: {what}")]
    Frame { place: String, what: String },
    #[error("cannot write the output: {0}")]
    Write(std::io::Error),
}

pub fn run(args: DecodeArgs) -> ExitCode {
    match decode(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice decode: {e}");
            ExitCode::from(1)
        }
    }
}

fn encoder(args: &DecodeArgs) -> Result<Encoder, DecodeError> {
    Ok(match args.format {
        Format::Json => Encoder::json(),
        Format::FlatJson => Encoder::flat_json(&args.metadata_key),
        Format::MessagePack => Encoder::message_pack(),
        Format::Xdr => Encoder::xdr(),
        Format::Avro => {
            let (path, text) = match &args.schema_file {
                Some(p) => {
                    let text = std::fs::read_to_string(p).map_err(|source| DecodeError::Read {
                        what: p.display().to_string(),
                        source,
                    })?;
                    (p.display().to_string(), text)
                }
                None => ("(default)".to_string(), avro::DEFAULT_SCHEMA.to_string()),
            };
            Encoder::avro(&text, args.stringify_map_keys).map_err(|e| DecodeError::Schema {
                path,
                why: e.to_string(),
            })?
        }
    })
}

fn read_input(args: &DecodeArgs) -> Result<Vec<u8>, DecodeError> {
    let mut buf = Vec::new();
    match &args.file {
        Some(p) if p.as_os_str() != "-" => {
            buf = std::fs::read(p).map_err(|source| DecodeError::Read {
                what: p.display().to_string(),
                source,
            })?;
        }
        _ => {
            std::io::stdin()
                .lock()
                .read_to_end(&mut buf)
                .map_err(|source| DecodeError::Read {
                    what: "standard input".to_string(),
                    source,
                })?;
        }
    }
    Ok(buf)
}

/// One capture to decode: its bytes and how to name it in errors.
struct Capture {
    name: String,
    bytes: Vec<u8>,
}

/// Splits `label hex` lines into captures.
fn hex_captures(text: &[u8]) -> Result<Vec<Capture>, DecodeError> {
    let text = String::from_utf8_lossy(text);
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (label, hex) = match line.split_once(char::is_whitespace) {
            Some((l, h)) => (l, h.trim()),
            None => ("", line),
        };
        let name = if label.is_empty() {
            format!("line {}", i + 1)
        } else {
            format!("line {} ({label})", i + 1)
        };
        let bytes = parse_hex(hex).map_err(|what| DecodeError::Frame {
            place: name.clone(),
            what,
        })?;
        out.push(Capture { name, bytes });
    }
    Ok(out)
}

fn parse_hex(hex: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits ({})", digits.len()));
    }
    let val = |d: u8| -> Result<u8, String> {
        char::from(d)
            .to_digit(16)
            .map(|v| v as u8)
            .ok_or_else(|| format!("{:?} is not a hex digit", char::from(d)))
    };
    digits
        .chunks_exact(2)
        .map(|p| Ok((val(p[0])? << 4) | val(p[1])?))
        .collect()
}

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0x0f)]);
    }
}

fn decode(args: &DecodeArgs) -> Result<(), DecodeError> {
    let enc = encoder(args)?;
    let input = read_input(args)?;
    let captures = if args.hex {
        hex_captures(&input)?
    } else {
        vec![Capture {
            name: "input".to_string(),
            bytes: input,
        }]
    };
    let received_ms = sluice_shards::unix_ms();
    let policy = BinPolicy::all();
    let binary = matches!(
        args.format,
        Format::MessagePack | Format::Avro | Format::Xdr
    );
    let stdout = std::io::stdout();
    let mut stdout = stdout.lock();
    let mut body = Vec::new();
    let mut line = Vec::new();
    let mut scratch = Vec::new();
    let mut index = 0usize;
    for cap in &captures {
        let mut off = 0;
        while off < cap.bytes.len() {
            let place = || format!("{}, frame {index} at byte {off}", cap.name);
            let fail = |what: String| DecodeError::Frame {
                place: place(),
                what,
            };
            let Some(f) =
                frame::cut(&cap.bytes[off..], args.max_body).map_err(|e| fail(e.to_string()))?
            else {
                return Err(fail(format!(
                    "truncated frame: {} bytes left, not a whole frame",
                    cap.bytes.len() - off
                )));
            };
            let len = f.bytes.len();
            if matches!(
                f.ty,
                frame::FrameType::Message | frame::FrameType::Compressed
            ) {
                let rec = wire::parse(f.bytes, &mut scratch, args.max_body)
                    .map_err(|e| fail(e.to_string()))?;
                body.clear();
                enc.encode(&rec, &policy, received_ms, &mut body)
                    .map_err(|e| fail(e.to_string()))?;
                line.clear();
                if binary {
                    push_hex(&mut line, &body);
                } else {
                    line.extend_from_slice(&body);
                }
                line.push(b'\n');
                stdout.write_all(&line).map_err(DecodeError::Write)?;
            } else {
                eprintln!(
                    "sluice decode: {}: skipped a {:?} frame (not a record)",
                    place(),
                    f.ty
                );
            }
            off += len;
            index += 1;
        }
    }
    stdout.flush().map_err(DecodeError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_lines_with_labels_comments_and_blanks() {
        let caps = hex_captures(b"# comment\n\nput_int 0203 ff\nbare 00\n  \n").unwrap();
        assert_eq!(caps.len(), 2);
        assert_eq!(caps[0].name, "line 3 (put_int)");
        assert_eq!(caps[0].bytes, [0x02, 0x03, 0xff]);
        assert_eq!(caps[1].bytes, [0x00]);
    }

    #[test]
    fn bad_hex_names_the_line() {
        let err = hex_captures(b"a 0g\n").err().unwrap().to_string();
        assert_eq!(err, "line 1 (a): 'g' is not a hex digit");
        let err = hex_captures(b"\nb 123\n").err().unwrap().to_string();
        assert_eq!(err, "line 2 (b): odd number of hex digits (3)");
    }
}
