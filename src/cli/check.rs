//! `crossdock check`.

use std::path::Path;
use std::process::ExitCode;

use crate::config::env::EnvLookup;
use crate::flow::{load, CompileOptions};

pub fn run(dir: &Path, strict: bool, env: EnvLookup<'_>) -> ExitCode {
    let opts = CompileOptions {
        strict_env: strict,
        for_run: false,
    };
    match load(dir, env, opts) {
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
