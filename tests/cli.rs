//! CLI cases as files: each `tests/cmd/*.toml` runs the real binary in an input project
//! (`*.in/`) and compares its exit code, stdout and stderr with the files beside it.
//! Regenerate expected output after a deliberate change with `TRYCMD=overwrite cargo test --test cli`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn cli_cases() {
    trycmd::TestCases::new().case("tests/cmd/*.toml");
}
