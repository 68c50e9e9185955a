//! A reader for SentencePiece `tokenizer.model` files (a serialized
//! `sentencepiece.ModelProto`, protobuf wire format, proto2).
//!
//! Only the fields a converter needs are decoded; every other field is
//! skipped by wire type, as protobuf requires. The input is treated as
//! hostile: every length is checked against the bytes that remain, varints
//! longer than 10 bytes are refused, and pieces must be valid UTF-8.
//!
//! Field numbers (from sentencepiece's `sentencepiece_model.proto`):
//! - `ModelProto`: 1 = repeated `SentencePiece pieces`, 2 = `TrainerSpec`,
//!   3 = `NormalizerSpec`, 5 = denormalizer `NormalizerSpec` (skipped).
//! - `SentencePiece`: 1 = `piece` (string), 2 = `score` (float),
//!   3 = `type` (enum, default NORMAL).
//! - `TrainerSpec`: 3 = `model_type`, 4 = `vocab_size`, 24 =
//!   `treat_whitespace_as_suffix`, 25 = `split_digits`, 35 = `byte_fallback`,
//!   40..43 = `unk_id`, `bos_id`, `eos_id`, `pad_id`, 45..48 = the
//!   unk/bos/eos/pad piece strings.
//! - `NormalizerSpec`: 1 = `name`, 2 = `precompiled_charsmap` (bytes),
//!   3 = `add_dummy_prefix`, 4 = `remove_extra_whitespaces`,
//!   5 = `escape_whitespaces`.

use std::fmt;

/// The kind of a piece (`SentencePiece.Type`). The numbering is the proto's,
/// and it is also GGUF's `tokenizer.ggml.token_type` numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceType {
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

impl PieceType {
    fn from_proto(v: u64) -> Option<Self> {
        Some(match v {
            1 => PieceType::Normal,
            2 => PieceType::Unknown,
            3 => PieceType::Control,
            4 => PieceType::UserDefined,
            5 => PieceType::Unused,
            6 => PieceType::Byte,
            _ => return None,
        })
    }
}

/// One vocabulary entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub piece: String,
    pub score: f32,
    pub kind: PieceType,
}

/// `TrainerSpec.ModelType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelType {
    Unigram,
    Bpe,
    Word,
    Char,
}

/// The training settings that matter when using the model.
/// Defaults are the proto's declared defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerSpec {
    pub model_type: ModelType,
    pub vocab_size: i32,
    pub treat_whitespace_as_suffix: bool,
    pub split_digits: bool,
    pub byte_fallback: bool,
    pub unk_id: i32,
    pub bos_id: i32,
    pub eos_id: i32,
    pub pad_id: i32,
    pub unk_piece: String,
    pub bos_piece: String,
    pub eos_piece: String,
    pub pad_piece: String,
}

impl Default for TrainerSpec {
    fn default() -> Self {
        TrainerSpec {
            model_type: ModelType::Unigram,
            vocab_size: 8000,
            treat_whitespace_as_suffix: false,
            split_digits: false,
            byte_fallback: false,
            unk_id: 0,
            bos_id: 1,
            eos_id: 2,
            pad_id: -1,
            unk_piece: "<unk>".into(),
            bos_piece: "<s>".into(),
            eos_piece: "</s>".into(),
            pad_piece: "<pad>".into(),
        }
    }
}

/// Text normalization settings.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizerSpec {
    pub name: String,
    /// Length of the precompiled normalization map (its content is not kept).
    pub precompiled_charsmap_len: usize,
    pub add_dummy_prefix: bool,
    pub remove_extra_whitespaces: bool,
    pub escape_whitespaces: bool,
}

impl Default for NormalizerSpec {
    fn default() -> Self {
        NormalizerSpec {
            name: String::new(),
            precompiled_charsmap_len: 0,
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            escape_whitespaces: true,
        }
    }
}

/// A decoded `ModelProto`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpmModel {
    pub pieces: Vec<Piece>,
    pub trainer: TrainerSpec,
    pub normalizer: NormalizerSpec,
}

/// Why a `tokenizer.model` could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct SpmError {
    /// Byte offset in the file where the problem was found.
    pub offset: usize,
    pub detail: String,
}

impl fmt::Display for SpmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad SentencePiece model at byte {}: {}", self.offset, self.detail)
    }
}

impl std::error::Error for SpmError {}

type Res<T> = Result<T, SpmError>;

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// A bounds-checked cursor over one message's bytes. `base` is the
/// message's offset in the whole file, for error messages.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    fn err(&self, detail: impl Into<String>) -> SpmError {
        SpmError { offset: self.base + self.pos, detail: detail.into() }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Res<u64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err("varint runs past the end of the data"));
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(self.err("varint longer than 64 bits"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    /// Reads a field key: (field number, wire type).
    fn key(&mut self) -> Res<(u64, u8)> {
        let k = self.varint()?;
        let field = k >> 3;
        if field == 0 {
            return Err(self.err("field number 0"));
        }
        Ok((field, (k & 7) as u8))
    }

    fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        let remaining = self.buf.len() - self.pos;
        if n > remaining {
            return Err(self.err(format!("field needs {n} bytes but only {remaining} remain")));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// A length-delimited payload, with the file offset where it starts.
    fn bytes(&mut self) -> Res<(&'a [u8], usize)> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| self.err("absurd length"))?;
        let start = self.base + self.pos;
        Ok((self.take(n)?, start))
    }

    fn fixed32(&mut self) -> Res<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self, what: &str) -> Res<String> {
        let (b, at) = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|e| SpmError {
            offset: at + e.utf8_error().valid_up_to(),
            detail: format!("{what} is not valid UTF-8"),
        })
    }

    /// Skips a field of the given wire type (unknown fields are legal).
    fn skip(&mut self, wire: u8) -> Res<()> {
        match wire {
            VARINT => self.varint().map(|_| ()),
            FIXED64 => self.take(8).map(|_| ()),
            LEN => self.bytes().map(|_| ()),
            FIXED32 => self.take(4).map(|_| ()),
            w => Err(self.err(format!("unsupported wire type {w}"))),
        }
    }

    /// Checks that a known field has the expected wire type.
    fn expect(&self, field: u64, wire: u8, want: u8, msg: &str) -> Res<()> {
        if wire == want {
            Ok(())
        } else {
            Err(self.err(format!("{msg} field {field} has wire type {wire}, expected {want}")))
        }
    }
}

/// proto int32 fields are encoded as sign-extended 64-bit varints.
fn as_i32(v: u64) -> i32 {
    v as i64 as i32
}

fn parse_piece(buf: &[u8], base: usize, index: usize) -> Res<Piece> {
    let mut r = Reader::new(buf, base);
    let mut piece = None;
    let mut score = 0.0f32;
    let mut kind = PieceType::Normal;
    while !r.done() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.expect(field, wire, LEN, "SentencePiece")?;
                piece = Some(r.string(&format!("piece {index}"))?);
            }
            2 => {
                r.expect(field, wire, FIXED32, "SentencePiece")?;
                score = f32::from_bits(r.fixed32()?);
            }
            3 => {
                r.expect(field, wire, VARINT, "SentencePiece")?;
                let v = r.varint()?;
                kind = PieceType::from_proto(v).ok_or_else(|| r.err(format!("piece {index} has unknown type {v}")))?;
            }
            _ => r.skip(wire)?,
        }
    }
    let piece = piece.ok_or_else(|| SpmError { offset: base, detail: format!("piece {index} has no string") })?;
    Ok(Piece { piece, score, kind })
}

fn parse_trainer(buf: &[u8], base: usize) -> Res<TrainerSpec> {
    let mut r = Reader::new(buf, base);
    let mut t = TrainerSpec::default();
    while !r.done() {
        let (field, wire) = r.key()?;
        match field {
            3 | 4 | 24 | 25 | 35 | 40 | 41 | 42 | 43 => {
                r.expect(field, wire, VARINT, "TrainerSpec")?;
                let v = r.varint()?;
                match field {
                    3 => {
                        t.model_type = match v {
                            1 => ModelType::Unigram,
                            2 => ModelType::Bpe,
                            3 => ModelType::Word,
                            4 => ModelType::Char,
                            _ => return Err(r.err(format!("unknown model_type {v}"))),
                        }
                    }
                    4 => t.vocab_size = as_i32(v),
                    24 => t.treat_whitespace_as_suffix = v != 0,
                    25 => t.split_digits = v != 0,
                    35 => t.byte_fallback = v != 0,
                    40 => t.unk_id = as_i32(v),
                    41 => t.bos_id = as_i32(v),
                    42 => t.eos_id = as_i32(v),
                    _ => t.pad_id = as_i32(v),
                }
            }
            45..=48 => {
                r.expect(field, wire, LEN, "TrainerSpec")?;
                let s = r.string("special piece")?;
                match field {
                    45 => t.unk_piece = s,
                    46 => t.bos_piece = s,
                    47 => t.eos_piece = s,
                    _ => t.pad_piece = s,
                }
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(t)
}

fn parse_normalizer(buf: &[u8], base: usize) -> Res<NormalizerSpec> {
    let mut r = Reader::new(buf, base);
    let mut n = NormalizerSpec::default();
    while !r.done() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.expect(field, wire, LEN, "NormalizerSpec")?;
                n.name = r.string("normalizer name")?;
            }
            2 => {
                r.expect(field, wire, LEN, "NormalizerSpec")?;
                n.precompiled_charsmap_len = r.bytes()?.0.len();
            }
            3..=5 => {
                r.expect(field, wire, VARINT, "NormalizerSpec")?;
                let v = r.varint()? != 0;
                match field {
                    3 => n.add_dummy_prefix = v,
                    4 => n.remove_extra_whitespaces = v,
                    _ => n.escape_whitespaces = v,
                }
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(n)
}

impl SpmModel {
    /// Decodes a `tokenizer.model` file.
    pub fn parse(bytes: &[u8]) -> Result<SpmModel, SpmError> {
        let mut r = Reader::new(bytes, 0);
        let mut m = SpmModel::default();
        while !r.done() {
            let (field, wire) = r.key()?;
            match field {
                1 => {
                    r.expect(field, wire, LEN, "ModelProto")?;
                    let (b, at) = r.bytes()?;
                    let index = m.pieces.len();
                    m.pieces.push(parse_piece(b, at, index)?);
                }
                2 => {
                    r.expect(field, wire, LEN, "ModelProto")?;
                    let (b, at) = r.bytes()?;
                    m.trainer = parse_trainer(b, at)?;
                }
                3 => {
                    r.expect(field, wire, LEN, "ModelProto")?;
                    let (b, at) = r.bytes()?;
                    m.normalizer = parse_normalizer(b, at)?;
                }
                _ => r.skip(wire)?,
            }
        }
        if m.pieces.is_empty() {
            return Err(SpmError { offset: 0, detail: "the model has no pieces".into() });
        }
        Ok(m)
    }

    /// The id of a special token from the trainer spec, if it names a piece.
    /// SentencePiece uses -1 for "none".
    pub fn special_id(&self, id: i32) -> Option<u32> {
        u32::try_from(id).ok().filter(|&i| (i as usize) < self.pieces.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn len_field(field: u64, payload: &[u8], out: &mut Vec<u8>) {
        varint(field << 3 | 2, out);
        varint(payload.len() as u64, out);
        out.extend_from_slice(payload);
    }

    fn piece(s: &str, score: f32, ty: Option<u64>) -> Vec<u8> {
        let mut p = Vec::new();
        len_field(1, s.as_bytes(), &mut p);
        varint(2 << 3 | 5, &mut p);
        p.extend_from_slice(&score.to_le_bytes());
        if let Some(t) = ty {
            varint(3 << 3, &mut p);
            varint(t, &mut p);
        }
        p
    }

    #[test]
    fn decodes_hand_built_model_and_skips_unknown_fields() {
        let mut m = Vec::new();
        len_field(1, &piece("<unk>", 0.0, Some(2)), &mut m);
        len_field(1, &piece("\u{2581}a", -1.5, None), &mut m);
        len_field(1, &piece("<0x41>", 0.0, Some(6)), &mut m);
        // An unknown fixed64 field and an unknown varint field at top level.
        varint(9 << 3 | 1, &mut m);
        m.extend_from_slice(&[0; 8]);
        varint(10 << 3, &mut m);
        varint(300, &mut m);
        let mut t = Vec::new();
        varint(3 << 3, &mut t);
        varint(2, &mut t); // BPE
        varint(35 << 3, &mut t);
        varint(1, &mut t); // byte_fallback
        varint(43 << 3, &mut t);
        varint(u64::MAX, &mut t); // pad_id = -1 as a sign-extended varint
        len_field(46, b"<bos>", &mut t);
        len_field(2, &t, &mut m);
        let mut n = Vec::new();
        varint(3 << 3, &mut n);
        varint(0, &mut n); // add_dummy_prefix = false
        len_field(2, &[1, 2, 3], &mut n);
        len_field(3, &n, &mut m);

        let got = SpmModel::parse(&m).unwrap();
        assert_eq!(got.pieces.len(), 3);
        assert_eq!(got.pieces[0].kind, PieceType::Unknown);
        assert_eq!(got.pieces[1], Piece { piece: "\u{2581}a".into(), score: -1.5, kind: PieceType::Normal });
        assert_eq!(got.pieces[2].kind, PieceType::Byte);
        assert_eq!(got.trainer.model_type, ModelType::Bpe);
        assert!(got.trainer.byte_fallback);
        assert_eq!(got.trainer.pad_id, -1);
        assert_eq!(got.trainer.bos_piece, "<bos>");
        assert_eq!(got.trainer.unk_id, 0); // default kept
        assert!(!got.normalizer.add_dummy_prefix);
        assert!(got.normalizer.remove_extra_whitespaces); // default kept
        assert_eq!(got.normalizer.precompiled_charsmap_len, 3);
        assert_eq!(got.special_id(got.trainer.pad_id), None);
        assert_eq!(got.special_id(got.trainer.unk_id), Some(0));
    }

    #[test]
    fn rejects_truncation_bad_utf8_bad_types() {
        let mut m = Vec::new();
        len_field(1, &piece("ab", 0.0, None), &mut m);
        for cut in 1..m.len() {
            assert!(SpmModel::parse(&m[..cut]).is_err(), "cut at {cut} accepted");
        }
        let mut bad = Vec::new();
        len_field(1, &piece("\u{e9}", 0.0, None), &mut bad);
        let i = bad.iter().position(|&b| b == 0xc3).unwrap();
        bad[i] = 0xff;
        let e = SpmModel::parse(&bad).unwrap_err();
        assert!(e.detail.contains("UTF-8"), "{e}");

        let mut badty = Vec::new();
        len_field(1, &piece("x", 0.0, Some(9)), &mut badty);
        assert!(SpmModel::parse(&badty).unwrap_err().detail.contains("unknown type 9"));

        // field 1 declared as varint instead of length-delimited
        assert!(SpmModel::parse(&[1 << 3, 5]).unwrap_err().detail.contains("wire type"));
        // an endless varint
        assert!(SpmModel::parse(&[0x50, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
        assert!(SpmModel::parse(&[]).is_err());
    }
}
