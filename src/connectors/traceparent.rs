//! W3C Trace Context (`traceparent`, version 00): reading the header a webhook brings, and
//! writing the one an outgoing call carries.
//!
//! The ids are the trace exporter's (`telemetry`): it puts a [`SpanContext`] in each span's
//! extensions in the `tracing` registry, and [`current`] reads the current span's from there,
//! so a call made inside a `call` span names that span. Without the exporter no span has one
//! and no header is sent.

use tracing_subscriber::registry::LookupSpan;

/// A span's place in a trace, as `traceparent` carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

/// The `traceparent` header's value, if `header` is a valid one (W3C Trace Context, level 1,
/// §3.2): `00-` 32 and 16 lower-case hex digits, neither all zeros, and 2 of flags. A later
/// version is read as 00 when its first four fields are shaped so (§3.2.4); version `ff` and
/// anything else is refused, so the event starts a trace of its own.
pub fn parse(header: &str) -> Option<SpanContext> {
    let header = header.trim();
    let b = header.as_bytes();
    if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let version = hex::<1>(&header[..2])?[0];
    match version {
        0xff => return None,
        0 if b.len() != 55 => return None,
        // A later version may append fields, after a dash.
        _ if b.len() > 55 && b[55] != b'-' => return None,
        _ => {}
    }
    let trace_id = hex::<16>(&header[3..35])?;
    let span_id = hex::<8>(&header[36..52])?;
    hex::<1>(&header[53..55])?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(SpanContext { trace_id, span_id })
}

/// Lower-case hex only: the specification refuses upper case.
fn hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    ::hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// The header naming `span` as the parent, sampled (the exporter sends every span).
pub fn format(span: &SpanContext) -> String {
    format!(
        "00-{}-{}-01",
        ::hex::encode(span.trace_id),
        ::hex::encode(span.span_id)
    )
}

/// The `traceparent` of the current span, when traces are exported.
pub fn current() -> Option<String> {
    tracing::Span::current()
        .with_subscriber(|(id, dispatch)| {
            let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
            let span = registry.span(id)?;
            let context = span.extensions().get::<SpanContext>().copied();
            context.map(|c| format(&c))
        })
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specification_example_reads_and_writes_back() {
        let c = parse(VALID).unwrap();
        assert_eq!(
            ::hex::encode(c.trace_id),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(::hex::encode(c.span_id), "00f067aa0ba902b7");
        assert_eq!(format(&c), VALID);
        // Not sampled by the sender: still its trace.
        assert!(parse(&VALID.replace("-01", "-00")).is_some());
    }

    #[test]
    fn invalid_headers_are_refused() {
        let bad: [&str; 11] = [
            "",
            "garbage",
            &VALID.to_uppercase(),
            &VALID.replace("4bf92f3577b34da6a3ce929d0e0e4736", &"0".repeat(32)),
            &VALID.replace("00f067aa0ba902b7", &"0".repeat(16)),
            &VALID.replacen("00-", "ff-", 1),
            &format!("{VALID}-extra"),
            &VALID.replace("-01", "-1"),
            &VALID.replace("-00f0", "_00f0"),
            &VALID.replace("4bf9", "4bfz"),
            &VALID[..54],
        ];
        for bad in bad {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_later_version_reads_as_00() {
        let later = VALID.replacen("00-", "01-", 1);
        assert!(parse(&later).is_some());
        assert!(parse(&format!("{later}-what-comes-next")).is_some());
        assert_eq!(parse(&format!("{later}x")), None);
    }
}
