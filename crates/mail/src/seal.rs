//! Queued mails hold one-time codes, so the outbox stores them encrypted (XChaCha20-Poly1305,
//! a key derived from the configured OTP key) and erases them once delivered.
//!
//! What is sealed is a compact frame, LZ4-compressed: a marker byte [`FRAME`], then the
//! compressed `from`, recipients and message, each length-prefixed. A rendered mail (HTML and
//! text, quoted-printable) of about 7.7 KB becomes a payload of about 4 KB instead of the
//! 11 KB its JSON form took: less to encrypt, encode, write to the outbox and read back.
//! Compressing before encrypting reveals the compressed length; it cannot be turned into an
//! oracle for the code, because every mail carries a fresh code and nobody gets to add chosen
//! text next to the same code twice.
//!
//! Mails queued by earlier releases hold the envelope as JSON (its first byte is `{`); they
//! still open.

use authd_domain::sealed::{OpenError, SecretBox};
use serde::{Deserialize, Serialize};

/// What the delivery loop needs to send one mail.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Envelope {
    pub from: String,
    pub to: Vec<String>,
    /// The whole RFC 5322 message.
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("queued mail cannot be decrypted (wrong key or damaged row)")]
    Open,
    #[error("queued mail is malformed: {0}")]
    Format(String),
}

#[derive(Debug, Clone)]
pub struct Sealer {
    key: SecretBox,
}

impl Sealer {
    /// Derives the outbox key from the master key, so one configured secret serves several
    /// purposes without any two sharing a key.
    pub fn new(master_key: &[u8]) -> Self {
        Self {
            key: SecretBox::new(master_key, b"authd/outbox/v1"),
        }
    }

    pub fn seal(&self, envelope: &Envelope) -> String {
        let mut frame = Vec::with_capacity(envelope.message.len() + 256);
        put(&mut frame, envelope.from.as_bytes());
        put_len(&mut frame, envelope.to.len());
        for to in &envelope.to {
            put(&mut frame, to.as_bytes());
        }
        put(&mut frame, envelope.message.as_bytes());
        let compressed = lz4_flex::block::compress_prepend_size(&frame);
        let mut plain = Vec::with_capacity(compressed.len() + 1);
        plain.push(FRAME);
        plain.extend_from_slice(&compressed);
        self.key.seal(&plain, b"")
    }

    pub fn open(&self, payload: &str) -> Result<Envelope, SealError> {
        let plain = self.key.open(payload, b"").map_err(|e| match e {
            OpenError::Tampered => SealError::Open,
            OpenError::Format => SealError::Format(e.to_string()),
        })?;
        match plain.split_first() {
            Some((&FRAME, compressed)) => unframe(compressed),
            // Queued by a release before the frame: the envelope as JSON.
            _ => serde_json::from_slice(&plain).map_err(|e| SealError::Format(e.to_string())),
        }
    }
}

/// The first byte of a framed payload; a JSON envelope starts with `{`.
const FRAME: u8 = 1;

/// The largest message a frame may unpack to. The payload is authenticated, so only the key's
/// holder can write one; the bound keeps even a bug from asking for gigabytes.
const MAX_FRAME: usize = 32 << 20;

fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn unframe(compressed: &[u8]) -> Result<Envelope, SealError> {
    let bad = |what: &str| SealError::Format(format!("mail frame: {what}"));
    let declared = compressed
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| bad("too short"))?;
    if declared > MAX_FRAME {
        return Err(bad("too large"));
    }
    let frame = lz4_flex::block::decompress_size_prepended(compressed)
        .map_err(|e| SealError::Format(format!("mail frame: {e}")))?;
    let mut rest = frame.as_slice();
    let take = |rest: &mut &[u8]| -> Result<String, SealError> {
        let len = rest
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| bad("truncated"))?;
        let bytes = rest.get(4..4 + len).ok_or_else(|| bad("truncated"))?;
        *rest = &rest[4 + len..];
        String::from_utf8(bytes.to_vec()).map_err(|_| bad("not UTF-8"))
    };
    let from = take(&mut rest)?;
    let count = rest
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| bad("truncated"))?;
    rest = &rest[4..];
    if count > 1024 {
        return Err(bad("too many recipients"));
    }
    let to = (0..count)
        .map(|_| take(&mut rest))
        .collect::<Result<Vec<_>, _>>()?;
    let message = take(&mut rest)?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok(Envelope { from, to, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_mail_opens_with_the_same_key_only() {
        let env = Envelope {
            from: "a@x.org".into(),
            to: vec!["b@y.org".into()],
            message: "Subject: 123456\r\n\r\nhi".into(),
        };
        let sealer = Sealer::new(b"k1k1k1k1k1k1k1k1k1k1k1k1k1k1k1k1");
        let payload = sealer.seal(&env);
        assert!(!payload.contains("123456"));
        assert_eq!(sealer.open(&payload).unwrap(), env);
        assert!(matches!(
            Sealer::new(b"other").open(&payload),
            Err(SealError::Open)
        ));
        assert!(sealer.open("not base64!").is_err());
    }

    #[test]
    fn a_large_mail_is_compressed_and_opens_whole() {
        let env = Envelope {
            from: "Example <no-reply@example.org>".into(),
            to: vec!["b@y.org".into(), "c@z.org".into()],
            message: format!(
                "Subject: 123456\r\n\r\n{}é\r\n",
                "<p style=3D\"margin:0\">Hello</p>\r\n".repeat(200)
            ),
        };
        let sealer = Sealer::new(b"k1k1k1k1k1k1k1k1k1k1k1k1k1k1k1k1");
        let payload = sealer.seal(&env);
        assert!(
            payload.len() < env.message.len() / 4,
            "{} bytes sealed for a {} byte message",
            payload.len(),
            env.message.len()
        );
        assert_eq!(sealer.open(&payload).unwrap(), env);
    }

    #[test]
    fn a_mail_queued_as_json_before_the_frame_still_opens() {
        let env = Envelope {
            from: "a@x.org".into(),
            to: vec!["b@y.org".into()],
            message: "Subject: 123456\r\n\r\nhi".into(),
        };
        let sealer = Sealer::new(b"k1k1k1k1k1k1k1k1k1k1k1k1k1k1k1k1");
        let queued_before = sealer.key.seal(&serde_json::to_vec(&env).unwrap(), b"");
        assert_eq!(sealer.open(&queued_before).unwrap(), env);
    }

    #[test]
    fn a_damaged_frame_is_a_format_error_not_a_panic() {
        let good = {
            let mut f = Vec::new();
            put(&mut f, b"a@x.org");
            put_len(&mut f, 1);
            put(&mut f, b"b@y.org");
            put(&mut f, b"hi");
            f
        };
        let pack = |frame: &[u8]| lz4_flex::block::compress_prepend_size(frame);
        assert!(unframe(&pack(&good)).is_ok());
        // Cut anywhere, or with bytes after the message.
        for cut in 0..good.len() {
            assert!(unframe(&pack(&good[..cut])).is_err(), "cut at {cut}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(unframe(&pack(&longer)).is_err());
        // A declared length beyond the bound, and garbage.
        assert!(unframe(&[0xff, 0xff, 0xff, 0x7f, 0]).is_err());
        assert!(unframe(&[1, 2]).is_err());
        assert!(unframe(&[10, 0, 0, 0, 0xf0, 1, 2]).is_err());
    }

    /// An outbox payload sealed by the first releases (HMAC-derived key, no `v2.` prefix),
    /// with the key above: mails queued before an upgrade are still delivered after it.
    const QUEUED_BY_THE_FIRST_RELEASES: &str = "mBkxForWrZwpmSD+kIIQZ1HFymfpfexeibBrMJ79GU4PkQW14C3OmvnM1I0B1da74JTDVyFnCCFxpNglcrXERtj89bJqjfEqSHCvsubehAtf0BlhnbS/3DzE4RZfHdfmQ9twF3Jpj9A7gkPE7i/t6Ac=";

    #[test]
    fn mail_queued_by_the_first_releases_still_opens() {
        let sealer = Sealer::new(b"k1k1k1k1k1k1k1k1k1k1k1k1k1k1k1k1");
        let env = sealer.open(QUEUED_BY_THE_FIRST_RELEASES).unwrap();
        assert_eq!(
            env,
            Envelope {
                from: "a@x.org".into(),
                to: vec!["b@y.org".into()],
                message: "Subject: 123456\r\n\r\nhi".into(),
            }
        );
        assert!(
            sealer.seal(&env).starts_with("v2."),
            "new payloads use the new key"
        );
        assert!(matches!(
            Sealer::new(b"other").open(QUEUED_BY_THE_FIRST_RELEASES),
            Err(SealError::Open)
        ));
    }
}
