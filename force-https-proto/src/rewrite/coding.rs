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

/// Brotli quality and window for re-encoding. Quality 1 holds ~100 KiB per encoder (measured:
/// quality 4 with the same window holds 2.9 MiB, quality 2 and 3 0.9–1.4 MiB); on the bench
/// corpus's largest page its output is 14% larger than quality 4's (90 against 79 kB).
const BR_QUALITY: u32 = 1;
const BR_LGWIN: u32 = 18;
/// gzip/deflate level for re-encoding (zlib's default).
const ZLIB_LEVEL: u32 = 6;

/// The window a br stream declares in its first byte (RFC 7932 §9.1, WBITS), in bits: 10 to
/// 24; `None` for the reserved value (which brotli's non-standard large-window streams use).
pub fn br_window_bits(first: u8) -> Option<u32> {
    if first & 1 == 0 {
        return Some(16);
    }
    match (first >> 1) & 7 {
        0 => match (first >> 4) & 7 {
            0 => Some(17),
            1 => None,
            m => Some(8 + u32::from(m)),
        },
        n => Some(17 + u32::from(n)),
    }
}

/// The largest window a br stream may declare, in bits (RFC 7932 §9.1).
pub const BR_MAX_WINDOW_BITS: u32 = 24;

/// Peak memory of a gzip or deflate decoder, bytes (32 KiB window, inflate state, one pushed
/// chunk and one step of output; measured 74 KiB).
const INFLATE_MEMORY: usize = 96 * 1024;

/// Peak memory of a br decoder beyond its ring buffer, bytes: Huffman tables and context maps
/// (measured up to 620 KiB on the bench corpus), one pushed chunk and one step of output.
const BR_DECODER_TABLES: usize = 768 * 1024;

/// Peak memory of a gzip or deflate encoder, bytes (miniz_oxide's compressor at any level:
/// measured 388–399 KiB).
const DEFLATE_ENCODER_MEMORY: usize = 448 * 1024;

/// Peak memory of the br encoder ([`BR_QUALITY`], [`BR_LGWIN`]), bytes (measured 182 KiB).
const BR_ENCODER_MEMORY: usize = 256 * 1024;

impl Coding {
    /// An upper bound of the memory a [`Decoder`] of this coding holds at its peak, bytes, for
    /// a br stream of `br_window_bits` (ignored for the other codings): its ring buffer (which
    /// holds the window, and half again while it grows) and its tables. The unit tests check
    /// the bound against what the decoders allocate.
    pub fn decoder_memory(self, br_window_bits: u32) -> usize {
        match self {
            Coding::Identity => 0,
            Coding::Gzip | Coding::Deflate => INFLATE_MEMORY,
            Coding::Br => {
                let window = 1usize << br_window_bits.min(BR_MAX_WINDOW_BITS);
                window + window / 2 + BR_DECODER_TABLES
            }
        }
    }

    /// An upper bound of the memory an [`Encoder`] to this coding holds at its peak, bytes.
    pub fn encoder_memory(self) -> usize {
        match self {
            Coding::Identity => 0,
            Coding::Gzip | Coding::Deflate => DEFLATE_ENCODER_MEMORY,
            Coding::Br => BR_ENCODER_MEMORY,
        }
    }
}

/// What a pull decoder reads: the bytes pushed and not yet decoded. Reading past them is
/// `WouldBlock` until the end of the input is marked, then the end of the stream.
#[derive(Default)]
pub struct Input {
    buf: Vec<u8>,
    pos: usize,
    ended: bool,
    /// Some input came: an empty body is empty in every coding, not a truncated stream.
    pushed: bool,
}

impl Input {
    fn push(&mut self, bytes: &[u8]) {
        self.pushed |= !bytes.is_empty();
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    fn rest(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }
}

impl io::Read for Input {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = io::BufRead::fill_buf(self)?.len().min(out.len());
        out[..n].copy_from_slice(&self.rest()[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl io::BufRead for Input {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos >= self.buf.len() && !self.ended {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(self.rest())
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
    }
}

/// zlib or raw deflate through flate2's low-level inflater (its status tells a complete
/// stream from a truncated one).
pub struct Inflate {
    state: flate2::Decompress,
    input: Input,
    done: bool,
}

impl Inflate {
    fn new(zlib: bool, input: Input) -> Inflate {
        Inflate {
            state: flate2::Decompress::new(zlib),
            input,
            done: false,
        }
    }

    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < out.len() && !self.done {
            let (in0, out0) = (self.state.total_in(), self.state.total_out());
            // `None` even at the end: `Finish` wants room for all the rest at once.
            let status = self
                .state
                .decompress(
                    self.input.rest(),
                    &mut out[n..],
                    flate2::FlushDecompress::None,
                )
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let used = (self.state.total_in() - in0) as usize;
            let made = (self.state.total_out() - out0) as usize;
            self.input.pos += used;
            n += made;
            if status == flate2::Status::StreamEnd {
                self.done = true;
            } else if used == 0 && made == 0 {
                if self.input.ended {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "truncated deflate stream",
                    ));
                }
                if n == 0 {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                break;
            }
        }
        Ok(n)
    }
}

/// A streaming decoder that produces its output in bounded steps ([`Decoder::pull`]): a
/// small compressed chunk may expand a thousandfold (deflate) or more (br), so what one step
/// holds must not depend on the input's ratio.
pub enum Decoder {
    /// Bytes pass as they are.
    Identity,
    /// gzip (every member of a multi-member stream).
    Gzip(Box<flate2::bufread::MultiGzDecoder<Input>>),
    /// Until the first two bytes tell zlib from raw deflate.
    DeflateSniff(Input),
    /// zlib or raw deflate.
    Inflate(Box<Inflate>),
    /// brotli.
    Br(Box<brotli::Decompressor<Input>>),
}

impl Decoder {
    /// A decoder of `coding`.
    pub fn new(coding: Coding) -> Decoder {
        match coding {
            Coding::Identity => Decoder::Identity,
            Coding::Gzip => Decoder::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(
                Input::default(),
            ))),
            Coding::Deflate => Decoder::DeflateSniff(Input::default()),
            Coding::Br => Decoder::Br(Box::new(brotli::Decompressor::new(Input::default(), 4096))),
        }
    }

    fn input(&mut self) -> Option<&mut Input> {
        match self {
            Decoder::Identity => None,
            Decoder::Gzip(d) => Some(d.get_mut()),
            Decoder::DeflateSniff(i) => Some(i),
            Decoder::Inflate(d) => Some(&mut d.input),
            Decoder::Br(d) => Some(d.get_mut()),
        }
    }

    /// Queues `chunk` for decoding ([`Decoder::pull`] decodes it). Identity keeps nothing:
    /// its bytes need no decoding.
    pub fn push(&mut self, chunk: &[u8]) {
        if let Some(i) = self.input() {
            i.push(chunk);
        }
    }

    /// Marks the end of the input: [`Decoder::pull`] then decodes the rest, and fails when
    /// the stream is truncated.
    pub fn end_input(&mut self) {
        if let Some(i) = self.input() {
            i.ended = true;
        }
    }

    /// Decodes at most `max` bytes of what was pushed; empty once everything pushed so far is
    /// decoded (more input is needed, or the stream ended).
    ///
    /// # Errors
    /// The input is not valid in this coding, or (after [`Decoder::end_input`]) ends before
    /// its coding's end.
    pub fn pull(&mut self, max: usize) -> io::Result<Vec<u8>> {
        if self.input().is_some_and(|i| i.ended && !i.pushed) {
            return Ok(Vec::new());
        }
        if let Decoder::DeflateSniff(held) = self {
            let rest = held.rest();
            if rest.len() < 2 && !held.ended {
                return Ok(Vec::new());
            }
            // RFC 1950: CM = 8, CINFO ≤ 7, and the first two bytes a multiple of 31. An input
            // of fewer than two bytes in all is taken as zlib (and found truncated).
            let zlib = match rest {
                [a, b, ..] => {
                    a & 0x0f == 8 && a >> 4 <= 7 && (u16::from(*a) << 8 | u16::from(*b)) % 31 == 0
                }
                _ => true,
            };
            let input = std::mem::take(held);
            *self = Decoder::Inflate(Box::new(Inflate::new(zlib, input)));
        }
        let mut out = vec![0; max];
        let mut n = 0;
        while n < max {
            let r = match self {
                Decoder::Identity | Decoder::DeflateSniff(_) => Ok(0),
                Decoder::Gzip(d) => io::Read::read(d.as_mut(), &mut out[n..]),
                Decoder::Inflate(d) => d.read(&mut out[n..]),
                Decoder::Br(d) => io::Read::read(d.as_mut(), &mut out[n..]),
            };
            match r {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        out.truncate(n);
        Ok(out)
    }

    /// Decodes one chunk whole; returns the bytes decoded so far and not yet returned
    /// (unbounded: for tests and benchmarks; the proxy pulls in steps).
    ///
    /// # Errors
    /// The input is not valid in this coding.
    pub fn write(&mut self, chunk: &[u8]) -> io::Result<Vec<u8>> {
        if matches!(self, Decoder::Identity) {
            return Ok(chunk.to_vec());
        }
        self.push(chunk);
        self.drain()
    }

    /// The end of the input: the last decoded bytes.
    ///
    /// # Errors
    /// The input ended before its coding's end.
    pub fn finish(mut self) -> io::Result<Vec<u8>> {
        self.end_input();
        self.drain()
    }

    fn drain(&mut self) -> io::Result<Vec<u8>> {
        let mut all = Vec::new();
        loop {
            let step = self.pull(64 * 1024)?;
            if step.is_empty() {
                return Ok(all);
            }
            all.extend(step);
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

    pub(super) fn encode(c: Coding, data: &[u8]) -> Vec<u8> {
        let mut e = Encoder::new(c);
        let mut enc = e.write(data);
        enc.extend(e.finish());
        enc
    }

    #[test]
    fn truncation_is_an_error_in_every_coding() {
        let text: Vec<u8> = (0..5_000u32)
            .flat_map(|i| format!("<a href=\"http://h{i}.example/\">x</a>\n").into_bytes())
            .collect();
        let mut raw =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(&text).unwrap();
        let raw = raw.finish().unwrap();
        for (c, enc) in [
            (Coding::Gzip, encode(Coding::Gzip, &text)),
            (Coding::Deflate, encode(Coding::Deflate, &text)),
            (Coding::Deflate, raw),
            (Coding::Br, encode(Coding::Br, &text)),
        ] {
            let mut d = Decoder::new(c);
            let whole = d.write(&enc).unwrap();
            assert_eq!(whole.len() + d.finish().unwrap().len(), text.len(), "{c:?}");
            let mut d = Decoder::new(c);
            let _ = d.write(&enc[..enc.len() - 3]);
            assert!(
                d.finish().is_err(),
                "{c:?}: a truncated stream must be an error"
            );
        }
        let mut d = Decoder::new(Coding::Deflate);
        assert!(
            d.write(b"\xff\xff not deflate")
                .and_then(|_| d.finish())
                .is_err()
        );
    }

    /// An empty body (a `200` with `Content-Length: 0` and a `Content-Encoding`) decodes to
    /// nothing, without an error, in every coding.
    #[test]
    fn an_empty_body_is_empty() {
        for c in [Coding::Identity, Coding::Gzip, Coding::Deflate, Coding::Br] {
            let mut d = Decoder::new(c);
            assert!(d.write(b"").unwrap().is_empty(), "{c:?}");
            assert!(d.finish().unwrap().is_empty(), "{c:?}");
        }
    }

    /// A decompression bomb (10 MB of zeros in a few kB) comes out in steps of at most what
    /// was asked, whatever the ratio, in every coding.
    #[test]
    fn pull_bounds_each_step() {
        let zeros = vec![0u8; 10 << 20];
        for c in [Coding::Gzip, Coding::Deflate, Coding::Br] {
            let enc = encode(c, &zeros);
            assert!(enc.len() < 64 << 10, "{c:?}: {}", enc.len());
            let mut d = Decoder::new(c);
            d.push(&enc);
            d.end_input();
            let mut total = 0;
            loop {
                let step = d.pull(16 << 10).unwrap();
                assert!(step.len() <= 16 << 10);
                if step.is_empty() {
                    break;
                }
                total += step.len();
            }
            assert_eq!(total, zeros.len(), "{c:?}");
        }
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

#[cfg(test)]
mod memory {
    use super::tests::encode;
    use super::*;
    use crate::test_alloc::{peak_bytes, reset_peak};

    /// The bench corpus's largest page: real markup, 840 kB.
    fn page() -> Vec<u8> {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/corpus/core-slice-840k.html"
        ))
        .unwrap()
    }

    /// The peak bytes `f` allocated and held at once on this thread.
    fn peak(f: impl FnOnce()) -> usize {
        let base = reset_peak();
        f();
        (peak_bytes() - base) as usize
    }

    /// `enc` decoded as the proxy does: pushed in 16 KiB chunks, pulled in 16 KiB steps.
    fn decode(c: Coding, enc: &[u8]) -> usize {
        let mut d = Decoder::new(c);
        let mut n = 0;
        for chunk in enc.chunks(16 * 1024) {
            d.push(chunk);
            loop {
                let step = d.pull(16 * 1024).unwrap();
                if step.is_empty() {
                    break;
                }
                n += step.len();
            }
        }
        n
    }

    #[test]
    fn br_window_bits_follow_rfc_7932() {
        // The first byte of streams the brotli encoder wrote with each window (at quality 5:
        // qualities 0 and 1 use at least 18 bits).
        for lgwin in 10..=24 {
            let mut e = brotli::CompressorWriter::new(Vec::new(), 4096, 5, lgwin);
            e.write_all(b"<p>x</p>").unwrap();
            let enc = e.into_inner();
            assert_eq!(br_window_bits(enc[0]), Some(lgwin), "lgwin {lgwin}");
        }
        assert_eq!(br_window_bits(0b0000_0000), Some(16));
        assert_eq!(br_window_bits(0b0000_0001), Some(17));
        assert_eq!(br_window_bits(0b0001_0001), None);
        assert_eq!(br_window_bits(0b0111_0001), Some(15));
        assert_eq!(br_window_bits(0b0000_1111), Some(24));
    }

    /// What the budget reserves ([`Coding::decoder_memory`], [`Coding::encoder_memory`]) is
    /// at least what the codecs hold at their peak, on real markup, for the windows servers
    /// use (10 to 24 bits) and at brotli's mid and high qualities.
    #[test]
    fn memory_estimates_bound_what_the_codecs_hold() {
        let page = page();
        for c in [Coding::Gzip, Coding::Deflate] {
            let enc = encode(c, &page);
            let p = peak(|| assert_eq!(decode(c, &enc), page.len()));
            assert!(p <= c.decoder_memory(0), "{c:?} decoder: {p}");
        }
        for (q, lgwin) in [(5, 10), (5, 16), (5, 18), (9, 20), (5, 22), (9, 24)] {
            let mut e = brotli::CompressorWriter::new(Vec::new(), 4096, q, lgwin);
            e.write_all(&page).unwrap();
            let enc = e.into_inner();
            let bits = br_window_bits(enc[0]).unwrap();
            let p = peak(|| assert_eq!(decode(Coding::Br, &enc), page.len()));
            let bound = Coding::Br.decoder_memory(bits);
            assert!(p <= bound, "br q{q} lgwin {lgwin}: {p} > {bound}");
        }
        for c in [Coding::Gzip, Coding::Deflate, Coding::Br] {
            let p = peak(|| {
                let mut e = Encoder::new(c);
                for chunk in page.chunks(16 * 1024) {
                    drop(e.write(chunk));
                }
                drop(e.finish());
            });
            assert!(p <= c.encoder_memory(), "{c:?} encoder: {p}");
        }
    }
}
