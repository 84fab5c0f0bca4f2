//! Property tests of the EXAI frame decoder, run on arbitrary input: a short run in every
//! `cargo test` (proptest's 256 cases each), a long one with `scripts/fuzz.sh`
//! (`PROPTEST_CASES`). Whatever the text, nothing panics, and a frame is either read as exactly
//! what it says (its op, its fields) or refused with an error that names what is wrong; every
//! frame the typed enum can hold comes back from its JSON unchanged, whatever else rides along;
//! a frame with a field missing or of the wrong type is refused naming that field. `SEEDS` are
//! tricky frames with the answer each must get. A failure proptest finds is kept in
//! `proptest-regressions/ws/frame/fuzz.txt`.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::{Frame, FrameError, OPS, Problem, kind};

/// What a seed frame must come to: `Ok` with the frame's JSON as it reads, or the error's code
/// and message (its start, for serde_json's own words).
type Answer = Result<&'static str, (&'static str, &'static str)>;

/// Hand-written frames: line ends, split characters, ids and fields of every type, every op.
const SEEDS: &[(&str, Answer)] = &[
    (r#"{"op":"ping"}"#, Ok(r#"{"op":"ping","request_id":null}"#)),
    (
        r#"{"op":"ping","request_id":"p1","extra":[1,{"a":null}]}"#,
        Ok(r#"{"op":"ping","request_id":"p1"}"#),
    ),
    (
        r#"{"op":"ping","request_id":null}"#,
        Ok(r#"{"op":"ping","request_id":null}"#),
    ),
    (
        r#"{"op":"ping","request_id":5}"#,
        Err(("INVALID_REQUEST", "`request_id` must be a string, not a number")),
    ),
    (
        r#"{"op":"hello","token":"t","session_id":"é😀"}"#,
        Ok(r#"{"op":"hello","request_id":null,"token":"t","session_id":"é😀"}"#),
    ),
    (
        r#"{"op":"hello","token":{"value":"t"}}"#,
        Err(("INVALID_REQUEST", "`token` must be a string, not an object")),
    ),
    (
        r#"{"op":"hello","session_id":true}"#,
        Err(("INVALID_REQUEST", "`session_id` must be a string, not a boolean")),
    ),
    (
        r#"{"op":"call_tool","request_id":"r1","name":"chat","arguments":{"prompt":"\u00e9\ud83d\ude00"}}"#,
        Ok(r#"{"op":"call_tool","request_id":"r1","name":"chat","arguments":{"prompt":"é😀"}}"#),
    ),
    (
        r#"{"op":"call_tool","request_id":"r1","name":"chat"}"#,
        Ok(r#"{"op":"call_tool","request_id":"r1","name":"chat","arguments":null}"#),
    ),
    (
        r#"{"op":"call_tool","request_id":"","name":""}"#,
        Ok(r#"{"op":"call_tool","request_id":"","name":"","arguments":null}"#),
    ),
    (
        r#"{"op":"call_tool","name":"chat"}"#,
        Err(("VALIDATION_ERROR", "call_tool needs a `request_id`")),
    ),
    (
        r#"{"op":"call_tool","request_id":"r","arguments":{}}"#,
        Err(("VALIDATION_ERROR", "call_tool needs a `name`")),
    ),
    (
        r#"{"op":"call_tool","request_id":7,"name":"chat"}"#,
        Err(("VALIDATION_ERROR", "`request_id` must be a string, not a number")),
    ),
    (
        r#"{"op":"call_tool","request_id":"r","name":["chat"]}"#,
        Err(("VALIDATION_ERROR", "`name` must be a string, not an array")),
    ),
    (
        r#"{"op":"cancel"}"#,
        Err(("INVALID_REQUEST", "cancel needs a `request_id`")),
    ),
    (
        r#"{"op":"cancel","request_id":"a2"}"#,
        Ok(r#"{"op":"cancel","request_id":"a2"}"#),
    ),
    (r#"{"op":"fly"}"#, Err(("INVALID_REQUEST", "unknown op 'fly'"))),
    (r#"{"op":"PING"}"#, Err(("INVALID_REQUEST", "unknown op 'PING'"))),
    (
        r#"{"op":"ping ","request_id":"x"}"#,
        Err(("INVALID_REQUEST", "unknown op 'ping '")),
    ),
    (r#"{"op":""}"#, Err(("INVALID_REQUEST", "every frame needs an `op`"))),
    (r#"{"op":null}"#, Err(("INVALID_REQUEST", "every frame needs an `op`"))),
    (
        r#"{"request_id":"x"}"#,
        Err(("INVALID_REQUEST", "every frame needs an `op`")),
    ),
    (
        r#"{"op":["ping"]}"#,
        Err(("INVALID_REQUEST", "`op` must be a string, not an array")),
    ),
    // Two `op`s: serde_json keeps the last.
    (
        r#"{"op":"cancel","op":"ping"}"#,
        Ok(r#"{"op":"ping","request_id":null}"#),
    ),
    (
        r#"[{"op":"ping"}]"#,
        Err(("INVALID_REQUEST", "a frame is a JSON object, not an array")),
    ),
    ("42", Err(("INVALID_REQUEST", "a frame is a JSON object, not a number"))),
    ("null", Err(("INVALID_REQUEST", "a frame is a JSON object, not null"))),
    ("", Err(("INVALID_REQUEST", "invalid JSON: "))),
    ("{broken", Err(("INVALID_REQUEST", "invalid JSON: "))),
    ("\u{feff}{\"op\":\"ping\"}", Err(("INVALID_REQUEST", "invalid JSON: "))),
    (
        r#"{"op":"ping","request_id":"\ud800"}"#,
        Err(("INVALID_REQUEST", "invalid JSON: ")),
    ),
    (" {\"op\":\"ping\"}\r\n", Ok(r#"{"op":"ping","request_id":null}"#)),
];

/// The promises every text keeps: read as exactly what it says, or refused by what is wrong.
fn check(text: &str) -> Result<(), TestCaseError> {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    match Frame::decode(text) {
        Ok(frame) => {
            let Some(Value::Object(sent)) = parsed else {
                return Err(TestCaseError::fail("accepted what is not a JSON object"));
            };
            let read = as_json(&frame)?;
            prop_assert_eq!(read.get("op"), sent.get("op"), "read as the op it names");
            for (field, value) in read.as_object().into_iter().flatten().filter(|(f, _)| *f != "op") {
                prop_assert_eq!(
                    value,
                    sent.get(field).unwrap_or(&Value::Null),
                    "`{}` read as sent",
                    field
                );
            }
        }
        Err(error) => {
            prop_assert!(matches!(error.code(), "INVALID_REQUEST" | "VALIDATION_ERROR"));
            prop_assert!(!error.to_string().is_empty());
            let object = parsed.as_ref().and_then(Value::as_object);
            let field = |name: &str| object.and_then(|o| o.get(name)).unwrap_or(&Value::Null);
            let request_id = object.and_then(|o| o.get("request_id")).and_then(Value::as_str);
            prop_assert_eq!(
                error.request_id.as_deref(),
                request_id,
                "the answer echoes the request_id"
            );
            match &error.problem {
                Problem::NotJson(_) => prop_assert!(parsed.is_none()),
                Problem::NotAnObject(found) => {
                    prop_assert!(parsed.as_ref().is_some_and(|v| !v.is_object() && kind(v) == *found));
                }
                Problem::NoOp => prop_assert!(matches!(field("op"), Value::Null) || field("op") == ""),
                Problem::UnknownOp(op) => {
                    prop_assert_eq!(field("op"), &json!(op));
                    prop_assert!(!OPS.contains(&op.as_str()));
                }
                Problem::Missing { op, field: name } => {
                    prop_assert_eq!(field("op"), &json!(op));
                    prop_assert!(field(name).is_null(), "`{}` is there", name);
                    let named = format!("`{name}`");
                    prop_assert!(error.to_string().contains(&named), "the error names `{}`", name);
                }
                Problem::WrongType {
                    op, field: name, found, ..
                } => {
                    match op {
                        Some(op) => prop_assert_eq!(field("op"), &json!(op)),
                        None => prop_assert_eq!(*name, "op"),
                    }
                    prop_assert!(!field(name).is_string() && !field(name).is_null(), "`{}` is fine", name);
                    prop_assert_eq!(kind(field(name)), *found);
                    let named = format!("`{name}`");
                    prop_assert!(error.to_string().contains(&named), "the error names `{}`", name);
                }
            }
        }
    }
    Ok(())
}

/// A frame as JSON, through serde's own encoding of the enum.
fn as_json(frame: &Frame) -> Result<Value, TestCaseError> {
    serde_json::to_value(frame).map_err(|e| TestCaseError::fail(e.to_string()))
}

/// Any JSON value, a few levels deep. Floats are short decimals: serde_json's default parsing
/// may land a long one an ULP away, which would be a difference no decoder made.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (any::<i32>(), 0..6).prop_map(|(m, e)| Value::from(f64::from(m) / 10f64.powi(e))),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(".{0,6}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Any frame the enum can hold, with any strings and any arguments.
fn frame() -> impl Strategy<Value = Frame> {
    let text = || ".{0,24}";
    let maybe = || proptest::option::of(".{0,24}");
    prop_oneof![
        (maybe(), maybe(), maybe()).prop_map(|(request_id, token, session_id)| Frame::Hello {
            request_id,
            token,
            session_id
        }),
        maybe().prop_map(|request_id| Frame::ListTools { request_id }),
        (text(), text(), json_value()).prop_map(|(request_id, name, arguments)| Frame::CallTool {
            request_id,
            name,
            arguments
        }),
        text().prop_map(|request_id| Frame::Cancel { request_id }),
        maybe().prop_map(|request_id| Frame::Ping { request_id }),
        maybe().prop_map(|request_id| Frame::Health { request_id }),
    ]
}

/// Fields no op reads, to ride along.
fn strangers() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::btree_map("[a-z_]{1,10}", json_value(), 0..4).prop_map(|m| {
        m.into_iter()
            .filter(|(k, _)| !["op", "request_id", "token", "session_id", "name", "arguments"].contains(&k.as_str()))
            .collect()
    })
}

/// An object of the protocol's fields, each with a fitting value, a scalar of another type, any
/// value, or none.
fn frame_like() -> impl Strategy<Value = Value> {
    let scalar = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from)
    ];
    let field = move |name: &'static str, fitting: BoxedStrategy<Value>| {
        proptest::option::of(prop_oneof![4 => fitting, 1 => scalar.clone(), 1 => json_value()])
            .prop_map(move |v| (name, v))
    };
    let op = prop_oneof![
        4 => proptest::sample::select(OPS.to_vec()).prop_map(Value::from),
        1 => "[a-z_ ]{0,10}".prop_map(Value::from),
    ];
    (
        field("op", op.boxed()),
        field("request_id", ".{0,8}".prop_map(Value::from).boxed()),
        field("name", "[a-z]{1,8}".prop_map(Value::from).boxed()),
        field("token", ".{0,8}".prop_map(Value::from).boxed()),
        field("session_id", ".{0,8}".prop_map(Value::from).boxed()),
        field("arguments", json_value().boxed()),
        strangers(),
    )
        .prop_map(|(a, b, c, d, e, f, mut rest)| {
            rest.extend(
                [a, b, c, d, e, f]
                    .into_iter()
                    .filter_map(|(name, v)| Some((name.to_string(), v?))),
            );
            Value::Object(rest)
        })
}

/// The string fields of a frame, each with whether the frame needs it.
fn string_fields(frame: &Frame) -> &'static [(&'static str, bool)] {
    match frame {
        Frame::Hello { .. } => &[("request_id", false), ("token", false), ("session_id", false)],
        Frame::CallTool { .. } => &[("request_id", true), ("name", true)],
        Frame::Cancel { .. } => &[("request_id", true)],
        Frame::ListTools { .. } | Frame::Ping { .. } | Frame::Health { .. } => &[("request_id", false)],
    }
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics_and_is_read_as_it_says(text in ".{0,256}") {
        check(&text)?;
    }

    #[test]
    fn frame_lookalikes_are_read_as_they_say_or_refused_by_name(value in frame_like(), space in "[ \t\r\n]{0,2}") {
        check(&format!("{space}{value}{space}"))?;
    }

    #[test]
    fn every_frame_round_trips_whatever_rides_along(frame in frame(), strangers in strangers()) {
        let mut json = as_json(&frame)?;
        if let Value::Object(fields) = &mut json {
            fields.extend(strangers);
        }
        prop_assert_eq!(Frame::decode(&json.to_string()), Ok(frame));
    }

    #[test]
    fn a_missing_or_wrongly_typed_field_is_refused_by_name(
        frame in frame(),
        pick in any::<prop::sample::Index>(),
        wrong in json_value().prop_filter("of another type", |v| !v.is_string() && !v.is_null()),
        remove in any::<bool>(),
    ) {
        let fields = string_fields(&frame);
        let (field, needed) = fields[pick.index(fields.len())];
        let mut json = as_json(&frame)?;
        let op = json["op"].as_str().unwrap_or_default().to_string();
        let decoded = if remove {
            if let Value::Object(o) = &mut json {
                o.remove(field);
            }
            Frame::decode(&json.to_string())
        } else {
            json[field] = wrong.clone();
            Frame::decode(&json.to_string())
        };
        match decoded {
            Ok(read) => {
                prop_assert!(remove && !needed, "accepted without `{}` or with a wrong one: {:?}", field, read);
                let read = as_json(&read)?;
                prop_assert_eq!(read.get(field), Some(&Value::Null));
            }
            Err(FrameError { problem, .. }) => {
                let expected = if remove {
                    prop_assert!(needed, "refused without an optional `{}`", field);
                    Problem::Missing { op: OPS.into_iter().find(|o| *o == op).unwrap_or_default(), field }
                } else {
                    Problem::WrongType {
                        op: OPS.into_iter().find(|o| *o == op),
                        field,
                        expected: "a string",
                        found: kind(&wrong),
                    }
                };
                prop_assert_eq!(problem, expected);
            }
        }
    }
}

#[test]
fn the_seed_frames_get_their_answers() {
    for (text, expected) in SEEDS {
        if let Err(e) = check(text) {
            panic!("{e}: {text}");
        }
        let got = Frame::decode(text);
        match (expected, &got) {
            (Ok(json), Ok(frame)) => {
                assert_eq!(as_json(frame).ok(), serde_json::from_str::<Value>(json).ok(), "{text}")
            }
            (Err((code, message)), Err(error)) => {
                assert_eq!(error.code(), *code, "{text}");
                assert!(error.to_string().starts_with(message), "{text}: {error}");
            }
            _ => panic!("{text}: expected {expected:?}, got {got:?}"),
        }
    }
}

#[test]
fn deep_and_big_frames_are_read_or_refused_without_a_panic() {
    let deep = format!(
        r#"{{"op":"call_tool","request_id":"r","name":"chat","arguments":{}1{}}}"#,
        "[".repeat(126),
        "]".repeat(126)
    );
    let too_deep = format!(
        r#"{{"op":"call_tool","request_id":"r","name":"chat","arguments":{}1{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let big =
        json!({"op": "call_tool", "request_id": "big", "name": "chat", "arguments": {"prompt": "é".repeat(500_000)}})
            .to_string();
    for text in [&deep, &too_deep, &big] {
        if let Err(e) = check(text) {
            panic!("{e}");
        }
    }
    assert!(Frame::decode(&deep).is_ok());
    assert!(matches!(
        Frame::decode(&too_deep),
        Err(FrameError {
            problem: Problem::NotJson(_),
            ..
        })
    ));
    assert!(Frame::decode(&big).is_ok());
}
