//! `crossdock init` and `crossdock schema --write`: print what `scaffold` and `schema` did.

use std::path::Path;
use std::process::ExitCode;

use crate::scaffold;

pub fn run(dir: &Path, template: &str) -> ExitCode {
    let Some(t) = scaffold::template(template) else {
        eprintln!("no template `{template}`");
        return ExitCode::from(2);
    };
    match scaffold::create(dir, t) {
        Ok(files) => {
            for f in &files {
                println!("  created {}", f.display());
            }
            let cd = if dir == Path::new(".") {
                String::new()
            } else {
                format!("cd {} && ", dir.display())
            };
            println!(
                "new {} project in {}; next: {cd}crossdock check && crossdock test",
                t.name,
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

pub fn list() {
    for t in scaffold::TEMPLATES {
        println!("{:<24} {}", t.name, t.about);
    }
}

/// Writes every schema into `dir`, replacing the files there: they are generated.
pub fn write_schemas(dir: &Path) -> ExitCode {
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        return ExitCode::from(1);
    }
    for kind in crate::schema::Kind::ALL {
        let path = dir.join(kind.file_name());
        if let Err(e) = std::fs::write(&path, kind.schema_text()) {
            eprintln!("cannot write {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}
