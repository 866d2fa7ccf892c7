//! Operation paths and `sign:` / `auth.refresh` templates split once, at build, into literal
//! text and `{name}` placeholders. It must not fill them (the connector and the signers do).

use crate::connectors::PathProblem;

/// A piece of an operation's path: literal text, or a `{name}` filled from the payload.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Piece {
    Text(String),
    Field(String),
}

/// Splits `/v2/orders/{id}/products` once, at build, into text and placeholders.
pub(super) fn parse_path(path: &str) -> Result<Vec<Piece>, PathProblem> {
    let mut pieces = Vec::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            pieces.push(Piece::Text(rest[..open].to_string()));
        }
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or(PathProblem::Unclosed)?;
        let name = &after[..close];
        if name.is_empty() || name.contains('{') {
            return Err(PathProblem::NotPlaceholder(name.to_string()));
        }
        pieces.push(Piece::Field(name.to_string()));
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_string()));
    }
    Ok(pieces)
}

/// A `sign:` or `auth.refresh` template split like a path, except that `${NAME}` stays text:
/// it is a `${VAR}` left unset (`check` says so on its own), not a placeholder.
pub(super) fn parse_template(text: &str) -> Result<Vec<Piece>, PathProblem> {
    let mut out: Vec<Piece> = Vec::new();
    for piece in parse_path(text)? {
        let piece = match (out.last(), piece) {
            (Some(Piece::Text(t)), Piece::Field(f)) if t.ends_with('$') => {
                Piece::Text(format!("{{{f}}}"))
            }
            (_, p) => p,
        };
        match (out.last_mut(), piece) {
            (Some(Piece::Text(prev)), Piece::Text(t)) => prev.push_str(&t),
            (_, p) => out.push(p),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::BuildError;

    #[test]
    fn paths_split_into_text_and_placeholders() {
        assert_eq!(
            parse_path("/v2/orders/{id}/products").unwrap(),
            vec![
                Piece::Text("/v2/orders/".into()),
                Piece::Field("id".into()),
                Piece::Text("/products".into())
            ]
        );
        assert_eq!(
            parse_path("{a}{b}").unwrap(),
            vec![Piece::Field("a".into()), Piece::Field("b".into())]
        );
        assert_eq!(parse_path("/x/{id").unwrap_err(), PathProblem::Unclosed);
        assert_eq!(
            parse_path("/x/{}").unwrap_err(),
            PathProblem::NotPlaceholder(String::new())
        );
        let e = BuildError::Path {
            op: "get".into(),
            path: "/x/{id".into(),
            problem: PathProblem::Unclosed,
        };
        assert_eq!(
            e.to_string(),
            "operation `get`: path `/x/{id`: `{` is not closed by `}`"
        );
    }
}
