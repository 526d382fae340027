//! Reading a GGUF header from an untrusted file. candle's reader bounds every length by the bytes
//! left in the file, but divides by `general.alignment` unchecked, so a file declaring an
//! alignment of 0 would panic it; [`read_content`] walks the metadata first (never allocating
//! more than one key) and refuses such a file with an error.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use candle_core::quantized::gguf_file::Content;

use crate::error::{ModelError, Result};

const ALIGNMENT_KEY: &[u8] = b"general.alignment";

/// Parses the GGUF header of `reader` (`path` labels errors).
pub fn read_content<R: Read + Seek>(reader: &mut R, path: &Path) -> Result<Content> {
    let bad = |problem: String| ModelError::Checkpoint {
        path: path.into(),
        problem,
    };
    let end = reader
        .seek(SeekFrom::End(0))
        .and_then(|end| reader.seek(SeekFrom::Start(0)).map(|_| end))
        .map_err(|e| bad(e.to_string()))?;
    let mut walker = Walker {
        r: std::io::BufReader::new(&mut *reader),
        pos: 0,
        end,
    };
    match walker.declared_alignment() {
        Ok(Some(0)) => return Err(bad("GGUF metadata `general.alignment` is 0".into())),
        Ok(_) => {}
        Err(e) => return Err(bad(format!("GGUF metadata cannot be read: {e}"))),
    }
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|e| bad(e.to_string()))?;
    Content::read(reader).map_err(|e| bad(format!("not a readable GGUF file: {e}")))
}

/// A forward-only reader over the metadata that knows its position and the file's end.
struct Walker<R> {
    r: R,
    pos: u64,
    end: u64,
}

impl<R: Read> Walker<R> {
    /// The integer value of `general.alignment`, if the metadata has one: the last one, as
    /// candle's map keeps the last of repeated keys. Errors (short or odd files) make the caller
    /// refuse the file.
    fn declared_alignment(&mut self) -> std::io::Result<Option<u64>> {
        let mut word = [0u8; 4];
        self.read(&mut word)?;
        if &word != b"GGUF" {
            return Ok(None);
        }
        self.read(&mut word)?;
        let wide = u32::from_le_bytes(word) >= 2;
        let _tensors = self.len(wide)?;
        let kvs = self.len(wide)?;
        let mut alignment = None;
        for _ in 0..kvs {
            let key_len = self.len(wide)?;
            let is_alignment = key_len == ALIGNMENT_KEY.len() as u64 && {
                let mut key = [0u8; ALIGNMENT_KEY.len()];
                self.read(&mut key)?;
                key == ALIGNMENT_KEY
            };
            if key_len != ALIGNMENT_KEY.len() as u64 {
                self.skip(key_len)?;
            }
            let ty = self.u32()?;
            match (is_alignment, scalar_size(ty).is_some()) {
                (true, true) => alignment = self.integer(ty)?,
                (true, false) => {
                    alignment = None;
                    self.skip_value(ty, wide, 0)?;
                }
                (false, _) => self.skip_value(ty, wide, 0)?,
            }
        }
        Ok(alignment)
    }

    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        self.r.read_exact(buf)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn u32(&mut self) -> std::io::Result<u32> {
        let mut b = [0u8; 4];
        self.read(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// A length or count: u64 from GGUF v2 on, u32 in v1.
    fn len(&mut self, wide: bool) -> std::io::Result<u64> {
        match wide {
            true => {
                let mut b = [0u8; 8];
                self.read(&mut b)?;
                Ok(u64::from_le_bytes(b))
            }
            false => self.u32().map(u64::from),
        }
    }

    /// Moves `n` bytes forward, failing past the end of the file.
    fn skip(&mut self, n: u64) -> std::io::Result<()> {
        if self.pos.checked_add(n).is_none_or(|to| to > self.end) {
            return Err(invalid());
        }
        let copied = std::io::copy(&mut (&mut self.r).take(n), &mut std::io::sink())?;
        self.pos += copied;
        match copied == n {
            true => Ok(()),
            false => Err(invalid()),
        }
    }

    /// Reads an integer value of type `ty` (other scalar types: None).
    fn integer(&mut self, ty: u32) -> std::io::Result<Option<u64>> {
        let size = scalar_size(ty).ok_or_else(invalid)?;
        let mut b = [0u8; 8];
        self.read(&mut b[..size as usize])?;
        Ok(matches!(ty, 0..=5 | 10 | 11).then(|| u64::from_le_bytes(b)))
    }

    fn skip_value(&mut self, ty: u32, wide: bool, depth: u32) -> std::io::Result<()> {
        if let Some(size) = scalar_size(ty) {
            return self.skip(size);
        }
        match ty {
            8 => {
                let n = self.len(wide)?;
                self.skip(n)
            }
            9 if depth < 4 => {
                let elem = self.u32()?;
                let n = self.len(wide)?;
                match scalar_size(elem) {
                    Some(size) => self.skip(n.checked_mul(size).ok_or_else(invalid)?),
                    None => (0..n).try_for_each(|_| self.skip_value(elem, wide, depth + 1)),
                }
            }
            _ => Err(invalid()),
        }
    }
}

fn invalid() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed GGUF metadata")
}

/// Fixed size of a scalar GGUF type.
fn scalar_size(ty: u32) -> Option<u64> {
    match ty {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gguf(alignment: u32) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend(2u64.to_le_bytes());
        for (key, ty, value) in [
            (
                "general.name",
                8u32,
                [5u64.to_le_bytes().to_vec(), b"tiny!".to_vec()].concat(),
            ),
            ("general.alignment", 4, alignment.to_le_bytes().to_vec()),
        ] {
            b.extend((key.len() as u64).to_le_bytes());
            b.extend(key.as_bytes());
            b.extend(ty.to_le_bytes());
            b.extend(value);
        }
        b
    }

    /// `gguf(first)` with a second `general.alignment` entry appended (the key count patched).
    fn gguf_with_repeat(first: u32, last: u32) -> Vec<u8> {
        let mut b = gguf(first);
        b[16..24].copy_from_slice(&3u64.to_le_bytes());
        let key = "general.alignment";
        b.extend((key.len() as u64).to_le_bytes());
        b.extend(key.as_bytes());
        b.extend(4u32.to_le_bytes());
        b.extend(last.to_le_bytes());
        b
    }

    #[test]
    fn a_repeated_alignment_key_counts_as_its_last_value() {
        let path = Path::new("m.gguf");
        // candle keeps the last of repeated keys: a zero there must be refused.
        let err =
            read_content(&mut std::io::Cursor::new(gguf_with_repeat(64, 0)), path).unwrap_err();
        assert!(err.to_string().contains("general.alignment` is 0"), "{err}");
        assert!(read_content(&mut std::io::Cursor::new(gguf_with_repeat(0, 32)), path).is_ok());
        // Metadata that cannot be walked is refused, not handed to candle.
        let mut cut = gguf(64);
        cut.truncate(cut.len() - 2);
        assert!(read_content(&mut std::io::Cursor::new(cut), path).is_err());
    }

    #[test]
    fn zero_alignment_is_an_error_and_others_parse() {
        let path = Path::new("m.gguf");
        let err = read_content(&mut std::io::Cursor::new(gguf(0)), path).unwrap_err();
        assert!(err.to_string().contains("general.alignment` is 0"), "{err}");
        let content = read_content(&mut std::io::Cursor::new(gguf(64)), path).unwrap();
        assert_eq!(content.metadata.len(), 2);
        assert_eq!(content.tensor_data_offset % 64, 0);
    }
}
