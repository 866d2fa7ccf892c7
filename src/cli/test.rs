//! `crossdock test`.

use std::path::Path;
use std::process::ExitCode;

use super::{report, TestFormat};
use crate::config::env::EnvLookup;
use crate::flow::{load, CompileOptions};
use crate::testing::run_all;

pub fn run(dir: &Path, filter: Option<&str>, format: TestFormat, env: EnvLookup<'_>) -> ExitCode {
    let project = match load(dir, env, CompileOptions::default()) {
        Ok((project, _warnings)) => project,
        Err(diags) => {
            match format {
                TestFormat::Text => super::print_diagnostics(&diags),
                // A project that does not compile runs no case: the tool gets its problems.
                TestFormat::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&report::test_json(dir, &[], &diags))
                        .unwrap_or_default()
                ),
                TestFormat::Junit => print!("{}", report::test_junit(dir, &[], &diags)),
            }
            eprintln!(
                "{}; fix the project before testing it (see `crossdock check`)",
                diags.summary()
            );
            return ExitCode::from(1);
        }
    };
    let (results, diags) = run_all(&project, env, filter);
    let failed = results.iter().filter(|r| !r.passed()).count();
    match format {
        TestFormat::Text => print_text(&results, &diags),
        TestFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report::test_json(dir, &results, &diags))
                .unwrap_or_default()
        ),
        TestFormat::Junit => print!("{}", report::test_junit(dir, &results, &diags)),
    }
    if failed > 0 || diags.has_errors() || results.is_empty() {
        if results.is_empty() {
            eprintln!(
                "no test cases ran (looked in {}/tests/pipelines/)",
                dir.display()
            );
        }
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn print_text(results: &[crate::testing::CaseResult], diags: &crate::config::diag::Diagnostics) {
    super::print_diagnostics(diags);
    let mut failed = 0;
    for r in results {
        if r.passed() {
            println!("PASS {} › {}", r.pipeline, r.name);
        } else {
            failed += 1;
            println!("FAIL {} › {}  ({})", r.pipeline, r.name, r.file.display());
            for f in &r.failures {
                println!("     {f}");
            }
        }
    }
    let passed = results.len() - failed;
    if !diags.is_empty() {
        println!("{} in test files", diags.summary());
    }
    println!("{passed} passed, {failed} failed");
}
