//! Content codings (RFC 9110 §8.4.1) for bodies the rewriter changes: streaming decoders for
//! what a backend sent and encoders for what the client accepted. gzip and deflate through
//! flate2 (the `deflate` coding is the zlib format; raw deflate streams, which some servers
//! send under that name, are recognized too), br through the brotli crate. Pure: bytes in,
//! bytes out, no I/O.

use std::io::{self, Write};

/// A content coding force-https can decode and encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// No coding.
    Identity,
    /// `gzip` (and `x-gzip`), RFC 1952.
    Gzip,
    /// `deflate`: the zlib format, RFC 1950.
    Deflate,
    /// `br`, RFC 7932.
    Br,
}

impl Coding {
    /// The coding of a `Content-Encoding` field value: `None` for one force-https cannot
    /// decode (an unknown token, or several codings stacked).
    pub fn from_content_encoding(value: &str) -> Option<Coding> {
        let mut codings = value
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("identity"));
        let first = codings.next();
        if codings.next().is_some() {
            return None;
        }
        match first {
            None => Some(Coding::Identity),
            Some(t) if t.eq_ignore_ascii_case("gzip") || t.eq_ignore_ascii_case("x-gzip") => {
                Some(Coding::Gzip)
            }
            Some(t) if t.eq_ignore_ascii_case("deflate") => Some(Coding::Deflate),
            Some(t) if t.eq_ignore_ascii_case("br") => Some(Coding::Br),
            Some(_) => None,
        }
    }

    /// The `Content-Encoding` token (`None` for identity).
    pub fn token(self) -> Option<&'static str> {
        match self {
            Coding::Identity => None,
            Coding::Gzip => Some("gzip"),
            Coding::Deflate => Some("deflate"),
            Coding::Br => Some("br"),
        }
    }

    /// Whether an `Accept-Encoding` field value (RFC 9110 §12.5.3) accepts this coding:
    /// named (or `*`) with a non-zero weight. Identity is always acceptable unless refused
    /// explicitly.
    pub fn accepted_by(self, accept_encoding: &str) -> bool {
        let mut star = None;
        for item in accept_encoding.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let q = parts
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("q").then(|| v.trim())
                })
                .next()
                .map(|v| v.parse::<f32>().is_ok_and(|q| q > 0.0))
                .unwrap_or(true);
            let named = match self {
                Coding::Identity => name.eq_ignore_ascii_case("identity"),
                Coding::Gzip => {
                    name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip")
                }
                Coding::Deflate => name.eq_ignore_ascii_case("deflate"),
                Coding::Br => name.eq_ignore_ascii_case("br"),
            };
            if named {
                return q;
            }
            if name == "*" {
                star = Some(q);
            }
        }
        star.unwrap_or(self == Coding::Identity)
    }

    /// What to send a client that sent `accept_encoding` for a body the backend sent in
    /// `backend`: the backend's coding when the client takes it, else gzip when it takes
    /// that, else identity.
    pub fn for_client(backend: Coding, accept_encoding: Option<&str>) -> Coding {
        let Some(ae) = accept_encoding else {
            return Coding::Identity;
        };
        if backend == Coding::Identity {
            return Coding::Identity;
        }
        if backend.accepted_by(ae) {
            backend
        } else if Coding::Gzip.accepted_by(ae) {
            Coding::Gzip
        } else {
            Coding::Identity
        }
    }
}

/// Brotli quality and window for re-encoding: fast, and a 256 KiB window keeps each
/// encoder's memory near 1 MiB.
const BR_QUALITY: u32 = 4;
const BR_LGWIN: u32 = 18;
/// gzip/deflate level for re-encoding (zlib's default).
const ZLIB_LEVEL: u32 = 6;

/// A streaming decoder.
pub enum Decoder {
    /// Bytes pass as they are.
    Identity,
    /// gzip.
    Gzip(Box<flate2::write::MultiGzDecoder<Vec<u8>>>),
    /// Until the first two bytes tell zlib from raw deflate.
    DeflateSniff(Vec<u8>),
    /// zlib.
    Zlib(Box<flate2::write::ZlibDecoder<Vec<u8>>>),
    /// Raw deflate.
    RawDeflate(Box<flate2::write::DeflateDecoder<Vec<u8>>>),
    /// brotli.
    Br(Box<brotli::DecompressorWriter<Vec<u8>>>),
}

impl Decoder {
    /// A decoder of `coding`.
    pub fn new(coding: Coding) -> Decoder {
        match coding {
            Coding::Identity => Decoder::Identity,
            Coding::Gzip => Decoder::Gzip(Box::new(flate2::write::MultiGzDecoder::new(Vec::new()))),
            Coding::Deflate => Decoder::DeflateSniff(Vec::new()),
            Coding::Br => Decoder::Br(Box::new(brotli::DecompressorWriter::new(Vec::new(), 4096))),
        }
    }

    /// Decodes one chunk; returns the bytes decoded so far and not yet returned.
    ///
    /// # Errors
    /// The input is not valid in this coding.
    pub fn write(&mut self, chunk: &[u8]) -> io::Result<Vec<u8>> {
        match self {
            Decoder::Identity => Ok(chunk.to_vec()),
            Decoder::Gzip(d) => {
                d.write_all(chunk)?;
                Ok(std::mem::take(d.get_mut()))
            }
            Decoder::DeflateSniff(held) => {
                held.extend_from_slice(chunk);
                if held.len() < 2 {
                    return Ok(Vec::new());
                }
                let held = std::mem::take(held);
                // RFC 1950: CM = 8, CINFO ≤ 7, and the first two bytes a multiple of 31.
                let zlib = held[0] & 0x0f == 8
                    && held[0] >> 4 <= 7
                    && (u16::from(held[0]) << 8 | u16::from(held[1])) % 31 == 0;
                *self = if zlib {
                    Decoder::Zlib(Box::new(flate2::write::ZlibDecoder::new(Vec::new())))
                } else {
                    Decoder::RawDeflate(Box::new(flate2::write::DeflateDecoder::new(Vec::new())))
                };
                self.write(&held)
            }
            Decoder::Zlib(d) => {
                d.write_all(chunk)?;
                Ok(std::mem::take(d.get_mut()))
            }
            Decoder::RawDeflate(d) => {
                d.write_all(chunk)?;
                Ok(std::mem::take(d.get_mut()))
            }
            Decoder::Br(d) => {
                d.write_all(chunk)?;
                Ok(std::mem::take(d.get_mut()))
            }
        }
    }

    /// The end of the input: the last decoded bytes.
    ///
    /// # Errors
    /// The input ended before its coding's end.
    pub fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            Decoder::Identity => Ok(Vec::new()),
            Decoder::Gzip(d) => d.finish(),
            Decoder::DeflateSniff(held) if held.is_empty() => Ok(Vec::new()),
            Decoder::DeflateSniff(held) => {
                let mut d = flate2::write::ZlibDecoder::new(Vec::new());
                d.write_all(&held)?;
                d.finish()
            }
            Decoder::Zlib(d) => d.finish(),
            Decoder::RawDeflate(d) => d.finish(),
            Decoder::Br(d) => d.into_inner().map_err(|_| {
                io::Error::new(io::ErrorKind::UnexpectedEof, "truncated brotli stream")
            }),
        }
    }
}

/// A streaming encoder.
pub enum Encoder {
    /// Bytes pass as they are.
    Identity,
    /// gzip.
    Gzip(Box<flate2::write::GzEncoder<Vec<u8>>>),
    /// deflate (zlib format).
    Deflate(Box<flate2::write::ZlibEncoder<Vec<u8>>>),
    /// brotli.
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
}

impl Encoder {
    /// An encoder to `coding`.
    pub fn new(coding: Coding) -> Encoder {
        let level = flate2::Compression::new(ZLIB_LEVEL);
        match coding {
            Coding::Identity => Encoder::Identity,
            Coding::Gzip => {
                Encoder::Gzip(Box::new(flate2::write::GzEncoder::new(Vec::new(), level)))
            }
            Coding::Deflate => {
                Encoder::Deflate(Box::new(flate2::write::ZlibEncoder::new(Vec::new(), level)))
            }
            Coding::Br => Encoder::Br(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                BR_QUALITY,
                BR_LGWIN,
            ))),
        }
    }

    /// Encodes one chunk; returns the encoded bytes ready so far (an encoder holds input
    /// back until it has a block).
    pub fn write(&mut self, chunk: &[u8]) -> Vec<u8> {
        // Writing into a Vec cannot fail.
        match self {
            Encoder::Identity => chunk.to_vec(),
            Encoder::Gzip(e) => {
                let _ = e.write_all(chunk);
                std::mem::take(e.get_mut())
            }
            Encoder::Deflate(e) => {
                let _ = e.write_all(chunk);
                std::mem::take(e.get_mut())
            }
            Encoder::Br(e) => {
                let _ = e.write_all(chunk);
                std::mem::take(e.get_mut())
            }
        }
    }

    /// The end of the stream: the encoder's last bytes.
    pub fn finish(self) -> Vec<u8> {
        match self {
            Encoder::Identity => Vec::new(),
            Encoder::Gzip(e) => e.finish().unwrap_or_default(),
            Encoder::Deflate(e) => e.finish().unwrap_or_default(),
            Encoder::Br(e) => e.into_inner(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(c: Coding, split: usize) {
        let text: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("line {i} http://a.example/\n").into_bytes())
            .collect();
        let mut e = Encoder::new(c);
        let mut enc = Vec::new();
        for ch in text.chunks(split) {
            enc.extend(e.write(ch));
        }
        enc.extend(e.finish());
        let mut d = Decoder::new(c);
        let mut dec = Vec::new();
        for ch in enc.chunks(split) {
            dec.extend(d.write(ch).unwrap());
        }
        dec.extend(d.finish().unwrap());
        assert!(dec == text, "{c:?} split {split}");
    }

    #[test]
    fn every_coding_round_trips_in_any_chunking() {
        for c in [Coding::Identity, Coding::Gzip, Coding::Deflate, Coding::Br] {
            for split in [1 << 20, 1000, 1] {
                if split == 1 && c == Coding::Br {
                    continue; // slow in debug builds; 1000 covers the boundaries
                }
                roundtrip(c, split);
            }
        }
    }

    #[test]
    fn raw_deflate_is_recognized() {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b"<p>hello</p>").unwrap();
        let raw = e.finish().unwrap();
        let mut d = Decoder::new(Coding::Deflate);
        let mut out = d.write(&raw).unwrap();
        out.extend(d.finish().unwrap());
        assert_eq!(out, b"<p>hello</p>");
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        let mut d = Decoder::new(Coding::Gzip);
        assert!(d.write(b"not gzip at all").is_err());
        let mut e = Encoder::new(Coding::Br);
        let mut enc = e.write(&[b'x'; 10000]);
        enc.extend(e.finish());
        let mut d = Decoder::new(Coding::Br);
        let _ = d.write(&enc[..enc.len() / 2]);
        assert!(d.finish().is_err());
    }

    #[test]
    fn header_values() {
        assert_eq!(Coding::from_content_encoding("GZIP"), Some(Coding::Gzip));
        assert_eq!(Coding::from_content_encoding("x-gzip"), Some(Coding::Gzip));
        assert_eq!(Coding::from_content_encoding(""), Some(Coding::Identity));
        assert_eq!(
            Coding::from_content_encoding("identity"),
            Some(Coding::Identity)
        );
        assert_eq!(Coding::from_content_encoding("br"), Some(Coding::Br));
        assert_eq!(Coding::from_content_encoding("zstd"), None);
        assert_eq!(Coding::from_content_encoding("gzip, br"), None);
        assert!(Coding::Gzip.accepted_by("gzip, deflate, br"));
        assert!(!Coding::Br.accepted_by("gzip, br;q=0"));
        assert!(Coding::Br.accepted_by("*"));
        assert!(!Coding::Br.accepted_by("gzip"));
        assert!(Coding::Identity.accepted_by("gzip"));
        assert!(!Coding::Identity.accepted_by("identity;q=0"));
        assert_eq!(Coding::for_client(Coding::Br, Some("gzip, br")), Coding::Br);
        assert_eq!(Coding::for_client(Coding::Br, Some("gzip")), Coding::Gzip);
        assert_eq!(
            Coding::for_client(Coding::Br, Some("deflate")),
            Coding::Identity
        );
        assert_eq!(Coding::for_client(Coding::Gzip, None), Coding::Identity);
        assert_eq!(
            Coding::for_client(Coding::Identity, Some("gzip")),
            Coding::Identity
        );
    }
}
