//! Script functions for signing what no connector foresaw: SHA-256, HMAC-SHA256, hex and
//! base64, registered on the one engine by [`register`].
//!
//! - `sha256(x)` and `hmac_sha256(key, x)`: lowercase hex of the digest of a string's UTF-8
//!   bytes or of a BLOB.
//! - `hex_encode(x)` / `base64_encode(x)`: a string's UTF-8 bytes or a BLOB as lowercase hex /
//!   standard base64 with padding.
//! - `hex_decode(s)` / `base64_decode(s)`: the bytes as a BLOB (hex of either case; base64 with
//!   or without padding); `blob.as_string()` reads UTF-8 text back.
//!
//! Pure functions: no IO, no clock, no state. Each argument is bounded ([`MAX_INPUT`]) so a
//! script cannot spend the event's time hashing a huge value; anything that is not a string or
//! a BLOB, or does not decode, is an error naming the function, never an empty result.

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rhai::{Blob, Dynamic, Engine, EvalAltResult};
use sha2::{Digest, Sha256};

use super::functions::{describe, fail};

type FnResult<T> = Result<T, Box<EvalAltResult>>;

/// Largest argument, in bytes: far above any string a platform signs, far below what would
/// let one call hold the event up.
pub(crate) const MAX_INPUT: usize = 1024 * 1024;

/// Encodes with padding, decodes with or without it (proxies and SDKs strip it).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The bytes of a string or BLOB argument, within [`MAX_INPUT`].
fn bytes(fname: &str, x: &Dynamic) -> FnResult<Vec<u8>> {
    let bytes = if x.is_blob() {
        x.clone()
            .into_blob()
            .map_err(|t| fail(format!("{fname}: {t}")))?
    } else if let Ok(s) = x.as_immutable_string_ref() {
        s.as_bytes().to_vec()
    } else {
        return Err(fail(format!(
            "{fname}: expected a string or a BLOB, got {}",
            describe(x)
        )));
    };
    if bytes.len() > MAX_INPUT {
        return Err(fail(format!(
            "{fname}: the input is {} bytes, more than the {MAX_INPUT} allowed",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// A string argument that is to be decoded, within [`MAX_INPUT`].
fn text(fname: &str, x: &Dynamic) -> FnResult<String> {
    let s = x
        .as_immutable_string_ref()
        .map_err(|_| fail(format!("{fname}: expected a string, got {}", describe(x))))?;
    if s.len() > MAX_INPUT {
        return Err(fail(format!(
            "{fname}: the input is {} bytes, more than the {MAX_INPUT} allowed",
            s.len()
        )));
    }
    Ok(s.trim().to_owned())
}

fn sha256(x: Dynamic) -> FnResult<String> {
    Ok(hex::encode(Sha256::digest(bytes("sha256", &x)?)))
}

fn hmac_sha256(key: Dynamic, x: Dynamic) -> FnResult<String> {
    let key = bytes("hmac_sha256", &key)?;
    let message = bytes("hmac_sha256", &x)?;
    // HMAC takes keys of any length; the error arm cannot happen with this construction.
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)
        .map_err(|_| fail("hmac_sha256: the key cannot be used"))?;
    mac.update(&message);
    Ok(hex::encode(mac.finalize().into_bytes()))
}

fn hex_encode(x: Dynamic) -> FnResult<String> {
    Ok(hex::encode(bytes("hex_encode", &x)?))
}

fn hex_decode(x: Dynamic) -> FnResult<Blob> {
    let s = text("hex_decode", &x)?;
    hex::decode(&s).map_err(|e| fail(format!("hex_decode: not hex ({e})")))
}

fn base64_encode(x: Dynamic) -> FnResult<String> {
    Ok(BASE64.encode(bytes("base64_encode", &x)?))
}

fn base64_decode(x: Dynamic) -> FnResult<Blob> {
    let s = text("base64_decode", &x)?;
    BASE64
        .decode(&s)
        .map_err(|e| fail(format!("base64_decode: not base64 ({e})")))
}

/// Register the functions above on `engine`.
pub(crate) fn register(engine: &mut Engine) {
    engine.register_fn("sha256", sha256);
    engine.register_fn("hmac_sha256", hmac_sha256);
    engine.register_fn("hex_encode", hex_encode);
    engine.register_fn("hex_decode", hex_decode);
    engine.register_fn("base64_encode", base64_encode);
    engine.register_fn("base64_decode", base64_decode);
}

#[cfg(test)]
mod tests {
    use super::super::engine::{build, Limits};

    fn eval(src: &str) -> Result<String, String> {
        build(&Limits::default())
            .eval::<rhai::Dynamic>(src)
            .map(|d| d.to_string())
            .map_err(|e| e.to_string())
    }

    /// FIPS 180-2 / RFC 4231 values, so the functions are checked against published numbers.
    #[test]
    fn published_vectors() {
        assert_eq!(
            eval(r#"sha256("abc")"#).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // RFC 4231 test case 2.
        assert_eq!(
            eval(r#"hmac_sha256("Jefe", "what do ya want for nothing?")"#).unwrap(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Lazada's documented request signature (uppercase in its docs).
        assert_eq!(
            eval(
                r#"hmac_sha256("helloworld", "/order/getaccess_tokentestapp_key123456order_id1234sign_methodsha256timestamp1517820392000").to_upper()"#
            )
            .unwrap(),
            "4190D32361CFB9581350222F345CB77F3B19F0E31D162316848A2C1FFD5FAB4A"
        );
    }

    #[test]
    fn encodings_round_trip_through_blobs() {
        assert_eq!(eval(r#"hex_encode("hi")"#).unwrap(), "6869");
        assert_eq!(eval(r#"base64_encode("hello")"#).unwrap(), "aGVsbG8=");
        assert_eq!(
            eval(r#"base64_decode("aGVsbG8").as_string()"#).unwrap(),
            "hello"
        );
        assert_eq!(eval(r#"hex_decode("6869").as_string()"#).unwrap(), "hi");
        // A base64 HMAC, as Shopify sends: the hex digest's bytes, re-encoded.
        assert_eq!(
            eval(
                r#"base64_encode(hex_decode(hmac_sha256("Jefe", "what do ya want for nothing?")))"#
            )
            .unwrap(),
            "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="
        );
        // A BLOB key, e.g. a secret given in hex.
        assert_eq!(
            eval(r#"hmac_sha256(hex_decode("4a656665"), "what do ya want for nothing?")"#).unwrap(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn bad_input_is_an_error_naming_the_function() {
        let err = eval(r#"hex_decode("zz")"#).unwrap_err();
        assert!(err.contains("hex_decode: not hex"), "{err}");
        let err = eval(r#"base64_decode("***")"#).unwrap_err();
        assert!(err.contains("base64_decode: not base64"), "{err}");
        let err = eval("sha256(42)").unwrap_err();
        assert!(
            err.contains("sha256: expected a string or a BLOB, got i64 42"),
            "{err}"
        );
        let err = eval(r#"hmac_sha256((), "x")"#).unwrap_err();
        assert!(
            err.contains("hmac_sha256: expected a string or a BLOB"),
            "{err}"
        );
    }

    #[test]
    fn inputs_are_bounded() {
        let err = eval(r#"let s = "a"; s.pad(1048577, "a"); sha256(s)"#).unwrap_err();
        assert!(
            err.contains("sha256: the input is 1048577 bytes, more than the 1048576"),
            "{err}"
        );
        assert_eq!(
            eval(r#"let s = "a"; s.pad(1048576, "a"); sha256(s).len()"#).unwrap(),
            "64"
        );
    }
}
