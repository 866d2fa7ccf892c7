//! The project templates of `crossdock init`, embedded in the binary, and writing one into a
//! folder. A template is a `crossdock.yaml` of its own (`templates/NAME/`) and the files of the
//! repository's example project it needs.
//!
//! Owns the list of templates and the rule that nothing is overwritten: every file is checked
//! before the first one is written, so a refused init leaves the folder as it was. Each new
//! project also gets the JSON Schemas its files name on their first line, from [`crate::schema`].
//! Must not print: the CLI reports what [`create`] returns. That every template checks clean and
//! passes its own tests is `tests/init.rs`'s job, through the real binary.

use std::path::{Path, PathBuf};

/// One template: its name for `--template` and its files, by path in the new project.
#[derive(Debug, Clone, Copy)]
pub struct Template {
    pub name: &'static str,
    pub about: &'static str,
    pub files: &'static [(&'static str, &'static str)],
    /// How many folders below the repository's root the files sit (2 for `examples/NAME/`):
    /// their `$schema=` lines climb that much higher than the new project's do.
    pub depth: usize,
}

/// A file of the repository's example project, embedded under the same path: the templates
/// are made of the shipped, tested example files, so they cannot drift from them.
macro_rules! example {
    ($path:literal) => {
        ($path, include_str!(concat!("../", $path)))
    };
}

/// A file of the example project `examples/$project/`, embedded under its path there.
macro_rules! from_example {
    ($project:literal, $path:literal) => {
        (
            $path,
            include_str!(concat!("../examples/", $project, "/", $path)),
        )
    };
}

pub const TEMPLATES: &[Template] = &[
    Template {
        name: "bigcommerce-salesforce",
        about: "BigCommerce abandoned carts become Salesforce Opportunities or Leads, with a follow-up Task",
        files: &[
            (
                "crossdock.yaml",
                include_str!("../templates/bigcommerce-salesforce/crossdock.yaml"),
            ),
            example!("pipelines/bigcommerce-carts.yaml"),
            example!("mappings/bigcommerce-cart.yaml"),
            example!("scripts/cart-opportunity-or-lead.rhai"),
            example!("tests/pipelines/bigcommerce-carts.yaml"),
            example!("tests/fixtures/bigcommerce/cart-high-value.json"),
            example!("tests/fixtures/bigcommerce/cart-low-value.json"),
            example!("tests/fixtures/bigcommerce/webhook-cart-abandoned.json"),
            example!("tests/fixtures/bigcommerce/customers-11.json"),
        ],
        depth: 0,
    },
    Template {
        name: "shopify-erp-stock",
        about: "Shopify orders reserve, release and commit stock; shortfalls go to an ERP as backorders",
        files: &[
            (
                "crossdock.yaml",
                include_str!("../templates/shopify-erp-stock/crossdock.yaml"),
            ),
            example!("pipelines/shopify-stock.yaml"),
            example!("mappings/shopify-order-lines.yaml"),
            example!("scripts/stock-reserve.rhai"),
            example!("scripts/stock-release.rhai"),
            example!("scripts/stock-commit.rhai"),
            example!("tests/pipelines/shopify-stock.yaml"),
            example!("tests/fixtures/shopify/orders-create.json"),
            example!("tests/fixtures/shopify/orders-create-twice.jsonl"),
            example!("tests/fixtures/shopify/orders-cancelled.json"),
            example!("tests/fixtures/shopify/orders-fulfilled.json"),
        ],
        depth: 0,
    },
    Template {
        name: "marketplace-erp",
        about: "Shopee, TikTok Shop and Lazada orders (signed polls) and Tokopedia pushes into one ERP order format, stock reserved",
        files: &[
            from_example!("marketplace-polls", "crossdock.yaml"),
            from_example!("marketplace-polls", "pipelines/shopee-orders.yaml"),
            from_example!("marketplace-polls", "pipelines/tiktok-orders.yaml"),
            from_example!("marketplace-polls", "pipelines/lazada-orders.yaml"),
            from_example!("marketplace-polls", "pipelines/tokopedia-orders.yaml"),
            from_example!("marketplace-polls", "mappings/shopee-order.yaml"),
            from_example!("marketplace-polls", "mappings/tiktok-order.yaml"),
            from_example!("marketplace-polls", "mappings/lazada-order.yaml"),
            from_example!("marketplace-polls", "mappings/tokopedia-order.yaml"),
            from_example!("marketplace-polls", "scripts/reserve-stock.rhai"),
            from_example!("marketplace-polls", "scripts/release-stock.rhai"),
            from_example!("marketplace-polls", "tests/pipelines/shopee-orders.yaml"),
            from_example!("marketplace-polls", "tests/pipelines/tiktok-orders.yaml"),
            from_example!("marketplace-polls", "tests/pipelines/lazada-orders.yaml"),
            from_example!("marketplace-polls", "tests/pipelines/tokopedia-orders.yaml"),
            from_example!("marketplace-polls", "tests/fixtures/README.md"),
            from_example!("marketplace-polls", "tests/fixtures/shopee/order.json"),
            from_example!("marketplace-polls", "tests/fixtures/shopee/order-detail.json"),
            from_example!("marketplace-polls", "tests/fixtures/tiktok/order.json"),
            from_example!("marketplace-polls", "tests/fixtures/lazada/order.json"),
            from_example!("marketplace-polls", "tests/fixtures/lazada/order-items.json"),
            from_example!(
                "marketplace-polls",
                "tests/fixtures/tokopedia/order-notification.json"
            ),
        ],
        depth: 2,
    },
];

/// What every new project ignores: the engine's state and outputs.
const GITIGNORE: &str = "# crossdock's state (sled) and file outputs\n.crossdock/\n";

pub fn template(name: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.name == name)
}

/// Why a project could not be created.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{} already exists; crossdock init does not overwrite files (choose an empty folder)", .0.display())]
    Exists(PathBuf),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Every file of a new project from `template`, by path relative to its root.
pub fn files(template: &Template) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = template
        .files
        .iter()
        .map(|(p, text)| (p.to_string(), schema_line_for_root(text, template.depth)))
        .collect();
    for kind in crate::schema::Kind::ALL {
        out.push((format!("schemas/{}", kind.file_name()), kind.schema_text()));
    }
    out.push((".gitignore".into(), GITIGNORE.into()));
    out
}

/// `text` with its `$schema=` line pointing at the new project's schemas/ rather than at the
/// repository's, `depth` folders higher.
fn schema_line_for_root(text: &str, depth: usize) -> String {
    const MODELINE: &str = "# yaml-language-server: $schema=";
    let climb = "../".repeat(depth);
    match text.strip_prefix(MODELINE) {
        Some(rest) if depth > 0 && rest.starts_with(&climb) => {
            format!("{MODELINE}{}", &rest[climb.len()..])
        }
        _ => text.to_string(),
    }
}

/// Writes a new project from `template` into `dir` (created if missing) and returns the files
/// written. Refuses, writing nothing, when any of them exists.
pub fn create(dir: &Path, template: &Template) -> Result<Vec<PathBuf>, InitError> {
    let files = files(template);
    if let Some((p, _)) = files.iter().find(|(p, _)| dir.join(p).exists()) {
        return Err(InitError::Exists(dir.join(p)));
    }
    let mut written = Vec::with_capacity(files.len());
    for (p, text) in files {
        let path = dir.join(&p);
        let write = || -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            // `create_new`: a file that appeared since the check above is not overwritten.
            use std::io::Write;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?
                .write_all(text.as_bytes())
        };
        match write() {
            Ok(()) => written.push(PathBuf::from(p)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(InitError::Exists(path))
            }
            Err(source) => return Err(InitError::Write { path, source }),
        }
    }
    Ok(written)
}
