//! `tls.ca_file`: an HTTPS server on loopback whose certificate is signed by a CA made in the
//! test, as an on-premise system behind a corporate CA is. The connectors refuse it with the
//! built-in roots alone and reach it when `ca_file` names the CA.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use crossdock::connectors::{CallError, Connector, Reply, Request};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use serde_json::{json, Value};
use support::connector::{context_at, try_build};
use tokio_rustls::rustls;

/// A CA (its PEM written to `dir/ca.pem`) and a certificate it signed for 127.0.0.1.
fn certificates(dir: &Path) -> rustls::ServerConfig {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Crossdock Test Corporate CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();

    let key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    server
        .distinguished_name
        .push(DnType::CommonName, "erp.internal");
    let server = server.signed_by(&key, &ca, &ca_key).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![server.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap()
}

/// Serves HTTPS on 127.0.0.1:0. Every request is answered 200 with its method, path and the
/// bearer token it carried; `POST /token` answers as an OAuth 2.0 token endpoint.
async fn serve_https(tls: rustls::ServerConfig) -> String {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
    let instance = base.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let instance = instance.clone();
            tokio::spawn(async move {
                // A client that does not trust the certificate ends the handshake here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| answer(req, instance.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    base
}

async fn answer(
    req: hyper::Request<Incoming>,
    instance: String,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let _ = req.into_body().collect().await;
    let body = if path == "/token" {
        json!({"access_token": "tok-1", "instance_url": instance, "token_type": "Bearer"})
    } else {
        json!({"id": "001TLS", "success": true, "method": method, "path": path, "auth": token})
    };
    Ok(hyper::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap())
}

async fn call(c: &Arc<dyn Connector>, op: &str, object: Option<&str>) -> Result<Reply, CallError> {
    c.call(Request {
        connector: "erp",
        op,
        object,
        key: None,
        payload: &json!({"id": 7, "Name": "Acme"}),
        idempotency_key: None,
    })
    .await
}

fn http(base: &str, tls: Option<Value>) -> Value {
    let mut config = json!({
        "kind": "http",
        "base_url": base,
        "timeout": "5s",
        "operations": {"get_order": {"method": "GET", "path": "/orders/{id}"}},
    });
    if let Some(tls) = tls {
        config["tls"] = tls;
    }
    config
}

#[tokio::test]
async fn an_http_connector_reaches_a_server_signed_by_a_private_ca_only_with_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let base = serve_https(certificates(dir.path())).await;
    let cx = context_at(dir.path());

    let without = try_build("erp", http(&base, None), &cx).unwrap();
    let err = call(&without, "get_order", None).await.unwrap_err();
    // The handshake fails, which a retry cannot mend but the runtime cannot tell from a
    // network fault: it is classified like a refused connection.
    assert!(err.is_retryable(), "{err:?}");
    assert!(
        err.to_string()
            .contains("invalid peer certificate: UnknownIssuer"),
        "{err}"
    );

    let with = try_build("erp", http(&base, Some(json!({"ca_file": "ca.pem"}))), &cx).unwrap();
    let reply = call(&with, "get_order", None).await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["path"], "/orders/7");
    assert_eq!(reply.remote_id.as_deref(), Some("001TLS"));
}

#[tokio::test]
async fn a_salesforce_connector_fetches_its_token_and_calls_through_the_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let base = serve_https(certificates(dir.path())).await;
    let cx = context_at(dir.path());
    let config = |tls: Option<Value>| {
        let mut config = json!({
            "kind": "salesforce",
            "auth": {"oauth2": {"token_url": format!("{base}/token"),
                                "client_id": "id", "client_secret": "secret"}},
        });
        if let Some(tls) = tls {
            config["tls"] = tls;
        }
        config
    };

    let without = try_build("erp", config(None), &cx).unwrap();
    let err = call(&without, "create", Some("Account")).await.unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");

    let with = try_build("erp", config(Some(json!({"ca_file": "ca.pem"}))), &cx).unwrap();
    let reply = call(&with, "create", Some("Account")).await.unwrap();
    assert_eq!(reply.remote_id.as_deref(), Some("001TLS"));
    assert_eq!(reply.body["path"], "/services/data/v60.0/sobjects/Account");
    assert_eq!(reply.body["auth"], "Bearer tok-1");
}

#[tokio::test]
async fn a_missing_or_unusable_ca_file_is_a_build_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a certificate\n").unwrap();
    let cx = context_at(dir.path());
    let error = |file: &str| {
        let config = http("https://erp.internal", Some(json!({"ca_file": file})));
        match try_build("erp", config, &cx) {
            Ok(_) => panic!("built with {file}"),
            Err(e) => e.to_string(),
        }
    };
    let missing = error("missing.pem");
    assert!(
        missing.starts_with("tls.ca_file `missing.pem`: cannot read it"),
        "{missing}"
    );
    let text = error("notes.txt");
    assert_eq!(
        text,
        "tls.ca_file `notes.txt`: no PEM certificate in it (`-----BEGIN CERTIFICATE-----`)"
    );
}
