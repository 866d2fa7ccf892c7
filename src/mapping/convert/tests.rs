use super::*;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// Ok(output JSON text) or Err(detail).
type Want = Result<&'static str, Option<&'static str>>;

/// (type, input JSON, wanted).
const CASES: &[(FieldType, &str, Want)] = &[
    (FieldType::String, r#""abc""#, Ok(r#""abc""#)),
    (
        FieldType::String,
        "820982911946154508",
        Ok(r#""820982911946154508""#),
    ),
    (
        FieldType::String,
        "123456789012345678901234567890",
        Ok(r#""123456789012345678901234567890""#),
    ),
    (FieldType::String, "225.0000", Ok(r#""225.0000""#)),
    // serde_json writes the exponent sign when it reads a number: 1e400 is kept as 1e+400.
    (FieldType::String, "1e400", Ok(r#""1e+400""#)),
    (FieldType::String, "true", Ok(r#""true""#)),
    (FieldType::String, r#"{"a":1}"#, Err(None)),
    (FieldType::Integer, "12", Ok("12")),
    (FieldType::Integer, "-12", Ok("-12")),
    (FieldType::Integer, r#""12""#, Ok("12")),
    (FieldType::Integer, r#""007""#, Ok("7")),
    (FieldType::Integer, r#""-0""#, Ok("0")),
    (FieldType::Integer, "12.000", Ok("12")),
    (FieldType::Integer, r#""12.0""#, Ok("12")),
    (FieldType::Integer, "1.5e3", Ok("1500")),
    (
        FieldType::Integer,
        "820982911946154508",
        Ok("820982911946154508"),
    ),
    (
        FieldType::Integer,
        "123456789012345678901234567890",
        Ok("123456789012345678901234567890"),
    ),
    (
        FieldType::Integer,
        r#""123456789012345678901234567890""#,
        Ok("123456789012345678901234567890"),
    ),
    (FieldType::Integer, "12.5", Err(Some("has a fraction"))),
    (FieldType::Integer, "1.25e1", Err(Some("has a fraction"))),
    (FieldType::Integer, "1e400", Err(Some("out of range"))),
    (FieldType::Integer, r#""12 pcs""#, Err(None)),
    (FieldType::Integer, r#""""#, Err(None)),
    (FieldType::Integer, "true", Err(None)),
    (FieldType::Decimal, "225.0000", Ok("225.0000")),
    (FieldType::Decimal, r#""225.0000""#, Ok("225.0000")),
    (FieldType::Decimal, r#""-0012.50""#, Ok("-12.50")),
    (FieldType::Decimal, "12", Ok("12")),
    (
        FieldType::Decimal,
        "123456789012345678901234567890.123456789",
        Ok("123456789012345678901234567890.123456789"),
    ),
    (FieldType::Decimal, "1.5e3", Ok("1500")),
    (FieldType::Decimal, "25E-2", Ok("0.25")),
    (FieldType::Decimal, "1e400", Err(Some("out of range"))),
    (FieldType::Decimal, r#""12,50 EUR""#, Err(None)),
    (FieldType::Decimal, r#""12,50""#, Err(None)),
    (FieldType::Decimal, r#"" 12.5""#, Err(None)),
    (FieldType::Decimal, r#""+12.5""#, Err(None)),
    (FieldType::Decimal, r#"".5""#, Err(None)),
    (FieldType::Decimal, r#""5.""#, Err(None)),
    (FieldType::Decimal, r#""NaN""#, Err(None)),
    (FieldType::Decimal, r#""Infinity""#, Err(None)),
    (FieldType::Decimal, "false", Err(None)),
    (FieldType::Boolean, "true", Ok("true")),
    (FieldType::Boolean, "false", Ok("false")),
    (FieldType::Boolean, r#""true""#, Ok("true")),
    (FieldType::Boolean, r#""FALSE""#, Ok("false")),
    (FieldType::Boolean, r#""1""#, Ok("true")),
    (FieldType::Boolean, r#""0""#, Ok("false")),
    (FieldType::Boolean, "1", Ok("true")),
    (FieldType::Boolean, "0", Ok("false")),
    (FieldType::Boolean, "2", Err(None)),
    (FieldType::Boolean, "1.0", Err(None)),
    (FieldType::Boolean, r#""yes""#, Err(None)),
    (
        FieldType::Date,
        r#""Tue, 20 Nov 2012 00:00:00 +0000""#,
        Ok(r#""2012-11-20""#),
    ),
    (
        FieldType::Date,
        r#""2012-11-20T23:30:00-05:00""#,
        Ok(r#""2012-11-20""#),
    ),
    (FieldType::Date, r#""2012-11-20""#, Ok(r#""2012-11-20""#)),
    (
        FieldType::Date,
        r#""2012-11-20 10:00:00""#,
        Ok(r#""2012-11-20""#),
    ),
    (FieldType::Date, "1353369600", Ok(r#""2012-11-20""#)),
    (FieldType::Date, r#""2012-02-30""#, Err(None)),
    (FieldType::Date, r#""20/11/2012""#, Err(None)),
    (FieldType::Date, "1.5", Err(Some("not Unix seconds"))),
    (
        FieldType::DateTime,
        r#""Tue, 20 Nov 2012 00:00:00 +0000""#,
        Ok(r#""2012-11-20T00:00:00+00:00""#),
    ),
    (
        FieldType::DateTime,
        r#""Tue, 20 Nov 2012 09:15:00 +0100""#,
        Ok(r#""2012-11-20T09:15:00+01:00""#),
    ),
    (
        FieldType::DateTime,
        r#""2012-11-20T09:15:00.250Z""#,
        Ok(r#""2012-11-20T09:15:00.250+00:00""#),
    ),
    (
        FieldType::DateTime,
        r#""2012-11-20T09:15:00-0500""#,
        Ok(r#""2012-11-20T09:15:00-05:00""#),
    ),
    (
        FieldType::DateTime,
        r#""2012-11-20T09:15:00""#,
        Ok(r#""2012-11-20T09:15:00+00:00""#),
    ),
    (
        FieldType::DateTime,
        r#""2012-11-20""#,
        Ok(r#""2012-11-20T00:00:00+00:00""#),
    ),
    (
        FieldType::DateTime,
        "1353369600",
        Ok(r#""2012-11-20T00:00:00+00:00""#),
    ),
    (
        FieldType::DateTime,
        r#""2012-11-20 09:15:00+01:00""#,
        Ok(r#""2012-11-20T09:15:00+01:00""#),
    ),
    (
        FieldType::DateTime,
        r#""2012-11-20 09:15:00""#,
        Ok(r#""2012-11-20T09:15:00+00:00""#),
    ),
    (FieldType::DateTime, r#""yesterday""#, Err(None)),
    (FieldType::DateTime, "true", Err(None)),
];

#[test]
fn converts_every_type() {
    for (ty, input, want) in CASES {
        let v = json(input);
        let got = convert(*ty, Cow::Borrowed(&v));
        match (got, want) {
            (Ok(out), Ok(text)) => {
                // Compare text, not values: the digits must survive exactly.
                assert_eq!(
                    serde_json::to_string(&*out).unwrap(),
                    *text,
                    "{ty} from {input}"
                )
            }
            (Err(e), Err(detail)) => {
                assert_eq!(e.detail, *detail, "{ty} from {input}");
                assert_eq!(e.found, v);
            }
            (got, want) => panic!("{ty} from {input}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn conversions_are_idempotent() {
    for (ty, input, want) in CASES {
        if let Ok(text) = want {
            let once = json(text);
            let twice = convert(*ty, Cow::Borrowed(&once)).unwrap();
            assert_eq!(
                serde_json::to_string(&*twice).unwrap(),
                *text,
                "{ty} of {input}"
            );
        }
    }
}

#[test]
fn keeps_the_input_when_already_converted() {
    let v = json("820982911946154508");
    assert!(matches!(
        convert(FieldType::Integer, Cow::Borrowed(&v)),
        Ok(Cow::Borrowed(_))
    ));
    let v = json("225.0000");
    assert!(matches!(
        convert(FieldType::Decimal, Cow::Borrowed(&v)),
        Ok(Cow::Borrowed(_))
    ));
}

#[test]
fn maps_arrays_element_by_element() {
    let v = json(r#"["1", 2, null, "3.00"]"#);
    let out = map_scalars(Cow::Borrowed(&v), &mut |x| convert(FieldType::Integer, x)).unwrap();
    assert_eq!(serde_json::to_string(&*out).unwrap(), "[1,2,null,3]");
    let v = json(r#"["1", "x"]"#);
    let err = map_scalars(Cow::Borrowed(&v), &mut |x| convert(FieldType::Integer, x)).unwrap_err();
    assert_eq!(err.found, json(r#""x""#));
}

#[test]
fn transforms_strings_only() {
    let cases = [
        (Transform::Trim, r#""  a b ""#, r#""a b""#),
        (Transform::Lower, r#""ÀBC""#, r#""àbc""#),
        (Transform::Upper, r#""straße""#, r#""STRASSE""#),
        (Transform::Upper, "12", "12"),
        (Transform::Trim, "true", "true"),
    ];
    for (t, input, want) in cases {
        let v = json(input);
        assert_eq!(
            transform(t, Cow::Borrowed(&v)).into_owned(),
            json(want),
            "{t:?} {input}"
        );
    }
}

#[test]
fn lookup_keys_and_rendering() {
    assert_eq!(
        key_text(&json("820982911946154508")),
        Some("820982911946154508")
    );
    assert_eq!(key_text(&json("true")), Some("true"));
    assert_eq!(key_text(&json("null")), None);
    let mut s = String::new();
    for v in ["1.50", r#""x""#, "null", "[1]", "false"] {
        render_into(&mut s, Some(&json(v)));
    }
    render_into(&mut s, None);
    assert_eq!(s, "1.50x[1]false");
}
