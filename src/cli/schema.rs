//! `crossdock schema pull`: fetch a target's describe answers into `schemas/<connector>/`, for
//! `check` to verify against offline.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::env::EnvLookup;
use crate::connectors::salesforce::describe;
use crate::connectors::{BuildContext, ConnectorConfig};

/// Writes `schemas/<connector>/<Object>.json` under the project for each object, named as
/// Salesforce spells it; an object that fails is reported and the others are still written.
pub fn pull(project: &Path, connector: &str, objects: &[String], env: EnvLookup<'_>) -> ExitCode {
    let config = match crate::flow::connector_config(project, env, connector) {
        Ok(c) => c,
        Err(diags) => {
            super::print_diagnostics(&diags);
            eprintln!("{}", diags.summary());
            return ExitCode::from(1);
        }
    };
    let ConnectorConfig::Salesforce(sf) = &config else {
        eprintln!(
            "`{connector}` is a {} connector: only salesforce connectors have describe answers \
             to pull (an http operation names its body's JSON Schema with `body_schema`)",
            config.as_kind().kind()
        );
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    let cx = BuildContext {
        root: project.to_path_buf(),
        http: reqwest::Client::new(),
        state: None,
    };
    let answers = match runtime.block_on(sf.describe(&cx, objects)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("connector `{connector}`: {e}");
            return ExitCode::from(1);
        }
    };
    let dir = PathBuf::from("schemas").join(connector);
    let mut failed = false;
    for (object, answer) in objects.iter().zip(answers) {
        let trimmed = match answer {
            Ok(body) => describe::trim(&body),
            Err(e) => {
                eprintln!("{object}: {e}");
                failed = true;
                continue;
            }
        };
        // The answer's own spelling (`order` asks for `Order`), which `send`s name.
        let name = trimmed
            .get("name")
            .and_then(|n| n.as_str())
            .filter(|n| n.eq_ignore_ascii_case(object))
            .unwrap_or(object);
        let fields = trimmed
            .get("fields")
            .and_then(|f| f.as_array())
            .map_or(0, Vec::len);
        let path = dir.join(format!("{name}.json"));
        let text = match serde_json::to_string_pretty(&trimmed) {
            Ok(t) => t + "\n",
            Err(e) => {
                eprintln!("{object}: {e}");
                failed = true;
                continue;
            }
        };
        let written = std::fs::create_dir_all(project.join(&dir))
            .and_then(|()| std::fs::write(project.join(&path), text));
        match written {
            Ok(()) => println!("wrote {} ({fields} fields)", path.display()),
            Err(e) => {
                eprintln!("cannot write {}: {e}", project.join(&path).display());
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
