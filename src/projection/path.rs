//! The steps of a JSONPath that a [`Need`](super::Need) can follow, as the mapping's JSONPath
//! parser reads them.

use super::PathStep;
use crate::jsonpath::{JsonPath, Segment};

/// `$.a.b`, `$['a']`, `$.items[*].sku`, `$.items[0]` as steps; `None` for anything else
/// (filters, slices, descendants, unions, text that is not a JSONPath), which the caller
/// treats as "needs everything". An index reads one element, but arrays are projected
/// element-wise, so it is [`PathStep::Elements`] like a wildcard.
pub fn simple_path(src: &str) -> Option<Vec<PathStep>> {
    steps_of(&JsonPath::parse(src).ok()?)
}

/// [`simple_path`] of a path already parsed.
fn steps_of(path: &JsonPath) -> Option<Vec<PathStep>> {
    let steps = path.simple_steps()?;
    Some(
        steps
            .into_iter()
            .map(|step| match step {
                Some(Segment::Name(name)) => PathStep::Name(name.clone()),
                Some(Segment::Index(_)) | None => PathStep::Elements,
            })
            .collect(),
    )
}
