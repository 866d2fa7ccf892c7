//! The `cluster:` block of crossdock.yaml: its values checked where they are written, so a
//! node never reaches NATS with a setting that cannot work. Connecting is the runtime's
//! business (`crate::cluster`); nothing here does IO beyond seeing that named files exist.

use std::path::Path;

use crate::config::diag::Diagnostics;
use crate::config::model::ClusterConfig;
use crate::config::span::PathSeg;
use crate::config::YamlFile;

fn key(name: &str) -> PathSeg {
    PathSeg::Key(name.to_string())
}

/// Reports every problem of `cluster:`, located at the value that has it.
pub(super) fn check_cluster(
    root: &Path,
    cluster: &ClusterConfig,
    file: &YamlFile,
    diags: &mut Diagnostics,
) {
    let nats = &cluster.nats;
    let at = |path: &[&str]| {
        let segs: Vec<PathSeg> = ["cluster", "nats"]
            .iter()
            .chain(path)
            .map(|p| key(p))
            .collect();
        file.doc.spans.value_pos(&segs)
    };
    let urls: Vec<&str> = nats.url.split(',').map(str::trim).collect();
    for url in &urls {
        let scheme_ok = ["nats://", "tls://"].iter().any(|s| url.starts_with(s));
        if url.is_empty() || !scheme_ok {
            diags.push(
                file.error(at(&["url"]), format!("`{url}` is not a NATS URL"))
                    .with_help("write e.g. nats://127.0.0.1:4222 (several separated by commas)"),
            );
        }
    }
    if let Some(prefix) = &nats.prefix {
        let ok = !prefix.is_empty()
            && prefix.len() <= 32
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            diags.push(
                file.error(
                    at(&["prefix"]),
                    format!("`{prefix}` cannot begin a stream name"),
                )
                .with_help("use 1 to 32 letters, digits, `-` or `_`"),
            );
        }
    }
    if let Some(n) = nats.replicas {
        // JetStream's own limit: a stream is stored on at most 5 servers.
        if !(1..=5).contains(&n) {
            diags.push(file.error(
                at(&["replicas"]),
                format!("`replicas` must be 1 to 5, not {n}"),
            ));
        }
    }
    if nats.max_inflight == Some(0) {
        diags.push(file.error(at(&["max_inflight"]), "`max_inflight` must be at least 1"));
    }
    for (name, value) in [("ack_wait", &nats.ack_wait), ("timeout", &nats.timeout)] {
        let Some(text) = value else { continue };
        match humantime::parse_duration(text) {
            Err(e) => diags.push(
                file.error(at(&[name]), format!("`{text}` is not a duration: {e}"))
                    .with_help("write e.g. 500ms, 5s or 1m"),
            ),
            Ok(d) if d.is_zero() => {
                diags.push(file.error(at(&[name]), format!("`{name}` must be longer than 0")))
            }
            Ok(_) => {}
        }
    }
    let ways: Vec<&str> = [
        ("token", nats.token.is_some()),
        ("user", nats.user.is_some() || nats.password.is_some()),
        ("nkey", nats.nkey.is_some()),
        ("credentials", nats.credentials.is_some()),
    ]
    .iter()
    .filter(|(_, set)| *set)
    .map(|(name, _)| *name)
    .collect();
    if ways.len() > 1 {
        diags.push(
            file.error(
                at(&[ways[1]]),
                format!(
                    "`{}` and `{}` both set: NATS takes one way to log in",
                    ways[0], ways[1]
                ),
            )
            .with_help("keep one of token, user/password, nkey and credentials"),
        );
    }
    if nats.user.is_some() != nats.password.is_some() {
        let (set, missing) = if nats.user.is_some() {
            ("user", "password")
        } else {
            ("password", "user")
        };
        diags.push(file.error(at(&[set]), format!("`{set}` without `{missing}`")));
    }
    let mut files: Vec<(Vec<&str>, &String)> = Vec::new();
    if let Some(c) = &nats.credentials {
        files.push((vec!["credentials"], c));
    }
    if let Some(tls) = &nats.tls {
        for (name, value) in [("ca", &tls.ca), ("cert", &tls.cert), ("key", &tls.key)] {
            if let Some(v) = value {
                files.push((vec!["tls", name], v));
            }
        }
        if tls.cert.is_some() != tls.key.is_some() {
            diags.push(file.error(
                at(&["tls"]),
                "a client certificate needs both `cert` and `key`",
            ));
        }
    }
    for (path, name) in files {
        if !root.join(name).is_file() {
            diags.push(file.error(at(&path), format!("no file `{name}` in the project folder")));
        }
    }
    if let Some(node) = &cluster.node {
        let ok = !node.is_empty()
            && node.len() <= 64
            && node
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !ok {
            let pos = file.doc.spans.value_pos(&[key("cluster"), key("node")]);
            diags.push(
                file.error(pos, format!("`{node}` cannot name a node"))
                    .with_help("use 1 to 64 letters, digits, `-`, `_` or `.`"),
            );
        }
    }
}
