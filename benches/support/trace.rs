//! Readers for the recorded traces in `shared/traces` (formats described in
//! its README). Decompression is in-process: zstd by `ruzstd`, gzip by
//! `flate2`, so a run needs no external tools.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// `<crate root>/../shared/traces`, where the traces live next to the checkout.
pub fn traces_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/traces")
}

/// How the lines of a trace map to keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// ARC `.lis`: `start_block n_blocks ignored request_no`; the line stands
    /// for keys `start_block .. start_block + n_blocks`, in order.
    Arc,
    /// LIRS `.trace` and key-per-line: one decimal key per line. Empty lines
    /// and `*` checkpoint lines are skipped, a trailing CR is ignored.
    KeyPerLine,
}

impl Format {
    /// The format implied by a file name such as `OLTP.lis.zst`.
    pub fn of(path: &Path) -> Format {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.contains(".lis") {
            Format::Arc
        } else {
            Format::KeyPerLine
        }
    }
}

/// Reads, decompresses and parses a whole trace into its access sequence.
pub fn load(path: &Path) -> io::Result<Vec<u64>> {
    let text = decompress(path)?;
    parse(&text, Format::of(path)).map_err(|msg| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {msg}", path.display()),
        )
    })
}

/// The file's bytes, decompressed according to its extension (`.zst`, `.gz`,
/// anything else is read as is).
pub fn decompress(path: &Path) -> io::Result<Vec<u8>> {
    let raw = fs::read(path)?;
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let mut out = Vec::with_capacity(raw.len() * 4);
    match extension {
        "zst" => {
            // A zstd file may hold several concatenated frames; decode until
            // the input is used up.
            let mut input: &[u8] = &raw;
            while !input.is_empty() {
                let mut frame = ruzstd::decoding::StreamingDecoder::new(&mut input)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                frame.read_to_end(&mut out)?;
            }
        }
        "gz" => {
            flate2::read::MultiGzDecoder::new(raw.as_slice()).read_to_end(&mut out)?;
        }
        _ => out = raw,
    }
    Ok(out)
}

/// Parses decompressed trace text.
pub fn parse(text: &[u8], format: Format) -> Result<Vec<u64>, String> {
    let mut keys = Vec::with_capacity(text.len() / 8);
    for (number, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line =
            std::str::from_utf8(line).map_err(|_| format!("line {}: not ASCII", number + 1))?;
        let line = line.trim();
        if line.is_empty() || line == "*" {
            continue;
        }
        let bad = |what: &str| format!("line {}: {what}: {line:?}", number + 1);
        match format {
            Format::KeyPerLine => {
                keys.push(line.parse::<u64>().map_err(|_| bad("not a u64 key"))?);
            }
            Format::Arc => {
                let mut fields = line.split_ascii_whitespace();
                let start: u64 = fields
                    .next()
                    .and_then(|f| f.parse().ok())
                    .ok_or_else(|| bad("bad start_block"))?;
                let blocks: u64 = fields
                    .next()
                    .and_then(|f| f.parse().ok())
                    .ok_or_else(|| bad("bad n_blocks"))?;
                keys.extend((0..blocks).map(|offset| start + offset));
            }
        }
    }
    Ok(keys)
}
