//! `crossdock check`.

use std::path::Path;
use std::process::ExitCode;

use super::{report, CheckFormat};
use crate::config::env::EnvLookup;
use crate::flow::{load, CompileOptions};

pub fn run(dir: &Path, strict: bool, format: CheckFormat, env: EnvLookup<'_>) -> ExitCode {
    let opts = CompileOptions {
        strict_env: strict,
        for_run: false,
    };
    let loaded = load(dir, env, opts);
    if format != CheckFormat::Text {
        let (diags, ok) = match &loaded {
            Ok((_, warnings)) => (warnings, true),
            Err(diags) => (diags, false),
        };
        let doc = match format {
            CheckFormat::Sarif => report::check_sarif(dir, diags),
            _ => report::check_json(dir, diags, ok),
        };
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
    match loaded {
        Ok((project, warnings)) => {
            super::print_diagnostics(&warnings);
            let c = &project.connectors;
            println!(
                "ok: {} pipelines, {} connectors (version {}){}",
                project.pipelines.len(),
                c.len(),
                project.version,
                if warnings.is_empty() {
                    String::new()
                } else {
                    format!("; {}", warnings.summary())
                }
            );
            ExitCode::SUCCESS
        }
        Err(diags) => {
            super::print_diagnostics(&diags);
            eprintln!("{}", diags.summary());
            ExitCode::from(1)
        }
    }
}
