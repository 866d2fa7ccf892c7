//! A connector's `tls:` options: the private CA (`ca_file`) an on-premise system's certificate
//! is signed by, and the HTTP client that trusts it besides the built-in roots.
//!
//! Owns reading the CA file (PEM, one or more certificates), for `check` (a problem located at
//! the option) and for `build` (the client). The built-in roots are the Mozilla set compiled
//! into the binary (`webpki-roots`, reqwest's `rustls-tls`), not the system's store, so a
//! corporate CA installed on the machine is trusted only through `ca_file`.

use std::path::Path;

use serde::Deserialize;

use super::{BuildContext, BuildError};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of one or more CA certificates, relative to the project root.
    pub ca_file: String,
}

/// Why a `ca_file` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaFileError {
    #[error("cannot read it: {0}")]
    Read(String),
    #[error("no PEM certificate in it (`-----BEGIN CERTIFICATE-----`)")]
    NoCertificate,
    #[error("not a usable certificate: {0}")]
    Invalid(String),
}

/// A client that trusts the certificates of `ca_file` besides the built-in roots. Building it
/// is what proves each certificate usable, so `check` builds one too: a file that passes
/// `check` does not fail at `build`.
fn load(root: &Path, tls: &TlsConfig) -> Result<reqwest::Client, CaFileError> {
    let pem =
        std::fs::read(root.join(&tls.ca_file)).map_err(|e| CaFileError::Read(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| CaFileError::Invalid(e.to_string()))?;
    if certs.is_empty() {
        return Err(CaFileError::NoCertificate);
    }
    certs
        .into_iter()
        .fold(reqwest::Client::builder(), |b, cert| {
            b.add_root_certificate(cert)
        })
        .build()
        .map_err(|e| CaFileError::Invalid(e.to_string()))
}

/// For `check`: what is wrong with the connector's `tls`, if anything.
pub(crate) fn check(root: &Path, tls: &TlsConfig) -> Option<CaFileError> {
    load(root, tls).err()
}

/// The client a connector calls with: the shared one, or with `tls.ca_file` its own. Its own
/// client has no client-wide timeout: every call and token fetch sets its own, and the runtime
/// bounds each call as well.
pub(crate) fn client_for(
    cx: &BuildContext,
    tls: Option<&TlsConfig>,
) -> Result<reqwest::Client, BuildError> {
    let Some(tls) = tls else {
        return Ok(cx.http.clone());
    };
    load(&cx.root, tls).map_err(|problem| BuildError::CaFile {
        path: tls.ca_file.clone(),
        problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(text: Option<&[u8]>) -> Option<CaFileError> {
        let dir = tempfile::tempdir().unwrap();
        if let Some(text) = text {
            std::fs::write(dir.path().join("ca.pem"), text).unwrap();
        }
        let tls = TlsConfig {
            ca_file: "ca.pem".into(),
        };
        check(dir.path(), &tls)
    }

    #[test]
    fn a_missing_empty_or_broken_file_is_a_problem() {
        assert!(matches!(problem(None), Some(CaFileError::Read(_))));
        assert_eq!(problem(Some(b"")), Some(CaFileError::NoCertificate));
        assert_eq!(
            problem(Some(b"just some text\n")),
            Some(CaFileError::NoCertificate)
        );
        let broken = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(
            matches!(problem(Some(broken)), Some(CaFileError::Invalid(_))),
            "{:?}",
            problem(Some(broken))
        );
    }
}
