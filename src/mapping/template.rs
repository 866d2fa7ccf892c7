//! Templates: `"BC order {{ $.id }}"`, split once at load into literal text and JSONPaths.
//!
//! Owns the placeholder syntax and rendering. Rendering does no parsing: it walks the
//! prepared parts and appends text. `{{` always opens a placeholder (there is no escape); a
//! lone `}}` is literal text.

use serde_json::Value;

use super::access::Access;
use super::convert::render_into;
use crate::jsonpath::JsonPath;

#[derive(Clone, Debug)]
pub(crate) struct Template {
    parts: Vec<Part>,
    /// Literal bytes, to size the output once.
    literal_len: usize,
}

#[derive(Clone, Debug)]
enum Part {
    Text(String),
    Path(Access),
}

/// A problem in a template, at a byte offset into its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TemplateProblem {
    pub message: String,
    pub offset: usize,
}

impl Template {
    /// Splits `src` into parts, reporting every bad placeholder.
    pub(crate) fn parse(src: &str) -> Result<Template, Vec<TemplateProblem>> {
        let mut parts = Vec::new();
        let mut problems = Vec::new();
        let mut rest = src;
        let mut base = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let inner_start = open + 2;
            let Some(close) = rest[inner_start..].find("}}") else {
                problems.push(TemplateProblem {
                    message: "`{{` without a closing `}}`".into(),
                    offset: base + open,
                });
                rest = "";
                break;
            };
            let raw = &rest[inner_start..inner_start + close];
            let lead = raw.len() - raw.trim_start().len();
            let path_src = raw.trim();
            let at = base + inner_start + lead;
            if path_src.is_empty() {
                problems.push(TemplateProblem {
                    message: "empty placeholder: write a JSONPath such as `{{ $.id }}`".into(),
                    offset: base + open,
                });
            } else {
                match JsonPath::parse(path_src) {
                    Ok(p) if !p.is_singular() => problems.push(TemplateProblem {
                        message: format!("placeholder `{path_src}` may select several values; a template needs a singular path"),
                        offset: at,
                    }),
                    Ok(p) => parts.push(Part::Path(Access::new(p))),
                    Err(e) => problems.push(TemplateProblem {
                        message: format!("bad JSONPath in placeholder: {}", e.message),
                        offset: at + e.offset,
                    }),
                }
            }
            let next = inner_start + close + 2;
            base += next;
            rest = &rest[next..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let literal_len = parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.len(),
                Part::Path(_) => 0,
            })
            .sum();
        Ok(Template { parts, literal_len })
    }

    /// Missing and null values render as nothing; see `render_into` for the rest.
    pub(crate) fn render(&self, root: &Value) -> String {
        let mut out = String::with_capacity(self.literal_len + 16);
        self.render_into(&mut out, root);
        out
    }

    /// [`Template::render`], appended to `out`.
    pub(crate) fn render_into(&self, out: &mut String, root: &Value) {
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Path(a) => render_into(out, a.get_one(root)),
            }
        }
    }

    pub(crate) fn paths(&self) -> impl Iterator<Item = &JsonPath> {
        self.parts.iter().filter_map(|p| match p {
            Part::Path(a) => Some(a.path()),
            Part::Text(_) => None,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders() {
        let rec: Value = serde_json::from_str(
            r#"{"id": 820982911946154508, "n": {"x": "A"}, "t": 1.50, "nil": null, "l": [1, 2]}"#,
        )
        .unwrap();
        let cases = [
            ("BC order {{ $.id }}", "BC order 820982911946154508"),
            ("{{$.n.x}}{{ $.t }}", "A1.50"),
            ("[{{ $.missing }}][{{ $.nil }}]", "[][]"),
            ("{{ $.l }} }} done", "[1,2] }} done"),
            ("no placeholders", "no placeholders"),
            ("", ""),
        ];
        for (src, want) in cases {
            assert_eq!(Template::parse(src).unwrap().render(&rec), want, "{src}");
        }
        let t = Template::parse("{{ $.a }}-{{ $.b }}").unwrap();
        assert_eq!(t.render(&json!({"a": true})), "true-");
        assert_eq!(
            t.paths().map(|p| p.as_str()).collect::<Vec<_>>(),
            ["$.a", "$.b"]
        );
    }

    #[test]
    fn reports_every_bad_placeholder_with_its_offset() {
        let src = "a {{ }} b {{ $.x[ }} c {{ $.items[*] }} d {{ $.y";
        let problems = Template::parse(src).unwrap_err();
        let offsets: Vec<usize> = problems.iter().map(|p| p.offset).collect();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert_eq!(offsets[0], 2);
        assert!(
            problems[1].message.starts_with("bad JSONPath"),
            "{problems:?}"
        );
        assert!(offsets[1] >= src.find("$.x[").unwrap(), "{problems:?}");
        assert_eq!(offsets[2], src.find("$.items").unwrap());
        assert!(problems[2].message.contains("singular"));
        assert_eq!(offsets[3], src.rfind("{{").unwrap());
    }
}
