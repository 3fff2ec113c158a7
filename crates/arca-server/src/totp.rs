//! Time-based one-time passwords (RFC 6238: HMAC-SHA1, 30-second steps, 6 digits), the second
//! factor of sign-in, as every authenticator app computes them.
//!
//! Written here rather than pulled in: it is thirty lines over `ring`'s HMAC, which the workspace
//! already trusts, and the replay rule (a code is accepted once) needs the matched time step.

use ring::hmac;

/// Seconds per step.
pub const STEP: u64 = 30;
/// Steps of clock difference tolerated either way.
const WINDOW: i64 = 1;

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A new random 160-bit secret, in base32 (what authenticator apps take).
pub fn new_secret() -> String {
    base32(&rand::random::<[u8; 20]>())
}

/// RFC 4648 base32 without padding.
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::new();
    let (mut buf, mut bits) = (0u32, 0);
    for &b in bytes {
        buf = (buf << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            out.push(ALPHABET[((buf >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Decodes [`base32`] (case and spaces ignored).
pub fn unbase32(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c.to_ascii_uppercase())? as u32;
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            out.push((buf >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    Some(out)
}

/// The code for time step `counter`.
pub fn code_at(secret: &[u8], counter: u64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let h = tag.as_ref();
    let offset = (h[h.len() - 1] & 0x0f) as usize;
    let value = u32::from_be_bytes([h[offset] & 0x7f, h[offset + 1], h[offset + 2], h[offset + 3]]);
    format!("{:06}", value % 1_000_000)
}

/// The time step a `code` matches at Unix time `now`, if any, later than `last_used` (a code is
/// accepted only once).
pub fn verify(secret_b32: &str, code: &str, now: u64, last_used: u64) -> Option<u64> {
    let secret = unbase32(secret_b32)?;
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = (now / STEP) as i64;
    (-WINDOW..=WINDOW).map(|d| (current + d) as u64).filter(|c| *c > last_used).find(|c| {
        // BLAKE3 hashes compare in constant time.
        blake3::hash(code_at(&secret, *c).as_bytes()) == blake3::hash(code.as_bytes())
    })
}

/// The `otpauth://` URI authenticator apps scan.
pub fn uri(secret_b32: &str, user: &str, issuer: &str) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    format!(
        "otpauth://totp/{}:{}?secret={secret_b32}&issuer={}&algorithm=SHA1&digits=6&period=30",
        enc(issuer),
        enc(user),
        enc(issuer)
    )
}

/// The URI as a QR code in SVG, drawn on the server.
pub fn qr_svg(uri: &str) -> String {
    match qrcode::QrCode::new(uri.as_bytes()) {
        Ok(code) => code.render::<qrcode::render::svg::Color>().min_dimensions(200, 200).build(),
        Err(e) => format!("<p>QR code unavailable: {}</p>", minijinja::HtmlEscape(&e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B (SHA-1 rows, truncated to 6 digits).
    #[test]
    fn rfc6238_vectors() {
        let secret = b"12345678901234567890";
        for (t, code) in [
            (59u64, "287082"),
            (1111111109, "081804"),
            (1111111111, "050471"),
            (1234567890, "005924"),
            (2000000000, "279037"),
        ] {
            assert_eq!(code_at(secret, t / STEP), code, "t={t}");
        }
    }

    #[test]
    fn base32_round_trips_and_verification_rejects_replays() {
        let s = new_secret();
        assert_eq!(s.len(), 32);
        assert_eq!(base32(&unbase32(&s).unwrap()), s);
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        let now = 1_800_000_000;
        let code = code_at(&unbase32(&s).unwrap(), now / STEP);
        let step = verify(&s, &code, now, 0).unwrap();
        assert_eq!(step, now / STEP);
        assert_eq!(verify(&s, &code, now, step), None, "a code works once");
        assert!(verify(&s, &code, now + 31, 0).is_some(), "one step of clock difference is fine");
        assert_eq!(verify(&s, &code, now + 120, 0), None, "an old code is refused");
        assert_eq!(verify(&s, "12345", now, 0), None);
        assert!(uri(&s, "a b", "arca").starts_with("otpauth://totp/arca:a%20b?secret="));
        assert!(qr_svg(&uri(&s, "admin", "arca")).contains("<svg"));
    }
}
