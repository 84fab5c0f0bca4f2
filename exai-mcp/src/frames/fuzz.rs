//! Property tests of [`read_frame`], run on arbitrary input: a short run in every `cargo test`
//! (proptest's 256 cases each), a long one with `scripts/fuzz.sh` (`PROPTEST_CASES`). Whatever
//! the bytes, a frame comes to one outcome and nothing panics; an answer is the one JSON-RPC
//! asks for (`-32700` for bytes that are not JSON, `-32600` for JSON that is not a request, with
//! an id that is a string, a number or null); a response is never answered; a request, with any
//! id and any params, is a message. `SEEDS` are the tricky frames met in practice, run through
//! the same check. A failure proptest finds is kept as a regression case in
//! `proptest-regressions/frames/fuzz.txt`.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::{INVALID_REQUEST, Incoming, PARSE_ERROR, read_frame};

/// Hand-written frames: line ends, blanks, broken UTF-8, deep and wide JSON, ids of every type.
const SEEDS: &[&[u8]] = &[
    b"",
    b"\n",
    b"\r\n",
    b" \t \r\n",
    b"\r",
    b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\r\n",
    b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\r\r\n",
    b"{\"jsonrpc\":\"2.0\",\"id\":\"\xc3\xa9t\xc3\xa9\",\"method\":\"ping\"}\n",
    // A two-byte character cut in half, in a string and outside one.
    b"{\"jsonrpc\":\"2.0\",\"id\":\"\xc3\",\"method\":\"ping\"}",
    b"\xc3",
    b"\xef\xbb\xbf{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}",
    b"{\"jsonrpc\":\"2.0\",\"id\":\"\\ud800\",\"method\":\"ping\"}",
    b"{\"jsonrpc\":\"2.0\",\"id\":-9223372036854775808,\"method\":\"ping\"}",
    b"{\"jsonrpc\":\"2.0\",\"id\":18446744073709551615,\"method\":\"ping\"}",
    b"{\"jsonrpc\":\"2.0\",\"id\":1e400,\"method\":\"ping\"}",
    b"{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"ping\"}",
    b"{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"ping\"}",
    b"{\"jsonrpc\":\"2.0\",\"id\":true,\"method\":\"ping\"}",
    b"{\"jsonrpc\":\"2.0\",\"id\":[1],\"method\":\"ping\"}",
    b"{\"jsonrpc\":\"2.0\",\"id\":{\"a\":{\"b\":[1,2,3]}}}",
    b"{\"jsonrpc\":\"2.0\",\"id\":{\"a\":1},\"result\":{}}",
    b"{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"ping\"}",
    b"{\"id\":1,\"method\":\"ping\"}",
    b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"method\":\"tools/list\"}",
    b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}",
    b"{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-1,\"message\":\"x\"}}",
    b"{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":\"not an error object\"}",
    b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":5}",
    b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]",
    b"[]",
    b"null",
    b"\"\\u0000\"",
    b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"} trailing",
    b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}",
];

/// Frames built at run time: JSON nested past serde_json's depth limit, and wide.
fn big_seeds() -> Vec<Vec<u8>> {
    let deep = |n| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes();
    let wide = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "chat", "arguments": {"prompt": "x".repeat(100_000), "files": vec!["a"; 5_000]}}});
    let nested_params = format!(
        r#"{{"jsonrpc":"2.0","id":8,"method":"x/deep","params":{{"a":{}1{}}}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    vec![
        deep(127),
        deep(128),
        deep(100_000),
        wide.to_string().into_bytes(),
        nested_params.into_bytes(),
    ]
}

/// Whether a JSON value is shaped as a response (no method; a result or an error).
fn response_shaped(value: &Value) -> bool {
    value.get("method").is_none() && (value.get("result").is_some() || value.get("error").is_some())
}

/// The promises every frame must keep, whatever its bytes.
fn check(frame: &[u8]) -> Result<(), TestCaseError> {
    let body = frame.strip_suffix(b"\n").unwrap_or(frame);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    let parsed = serde_json::from_slice::<Value>(body).ok();
    match read_frame(frame) {
        Incoming::Message(message) => {
            prop_assert!(parsed.is_some(), "only JSON is a message");
            let again = serde_json::to_value(&*message).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&again["jsonrpc"], "2.0");
        }
        Incoming::Ignore => prop_assert!(
            body.iter().all(u8::is_ascii_whitespace) || parsed.as_ref().is_some_and(response_shaped),
            "only a blank line or a response goes unanswered"
        ),
        Incoming::Answer(answer) => {
            prop_assert_eq!(&answer["jsonrpc"], "2.0");
            prop_assert!(answer["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
            let id = &answer["id"];
            prop_assert!(
                id.is_null() || id.is_string() || id.is_number(),
                "a JSON-RPC id: {}",
                id
            );
            match parsed {
                None => {
                    prop_assert_eq!(answer["error"]["code"].as_i64(), Some(PARSE_ERROR));
                    prop_assert!(id.is_null());
                }
                Some(value) => {
                    prop_assert_eq!(answer["error"]["code"].as_i64(), Some(INVALID_REQUEST));
                    prop_assert!(!response_shaped(&value), "a response is never answered");
                    if !id.is_null() {
                        prop_assert_eq!(Some(id), value.get("id"), "the answer carries the frame's own id");
                    }
                }
            }
        }
    }
    Ok(())
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(".{0,6}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object made of JSON-RPC's members (and a stranger), each with any value or a fitting one.
fn rpc_like() -> impl Strategy<Value = Value> {
    let member = |name: &'static str, fitting: BoxedStrategy<Value>| {
        proptest::option::of(prop_oneof![fitting, json_value()]).prop_map(move |v| (name, v))
    };
    (
        member("jsonrpc", Just(json!("2.0")).boxed()),
        member(
            "id",
            prop_oneof![
                any::<i64>().prop_map(Value::from),
                "[a-z0-9-]{0,8}".prop_map(Value::from)
            ]
            .boxed(),
        ),
        member(
            "method",
            prop_oneof![
                Just(json!("ping")),
                Just(json!("tools/call")),
                "[a-z/_]{1,12}".prop_map(Value::from)
            ]
            .boxed(),
        ),
        member("params", Just(json!({})).boxed()),
        member("result", Just(json!({})).boxed()),
        member("error", Just(json!({"code": -32000, "message": "x"})).boxed()),
        member("x", json_value().boxed()),
    )
        .prop_map(|members| {
            let (a, b, c, d, e, f, g) = members;
            Value::Object(
                [a, b, c, d, e, f, g]
                    .into_iter()
                    .filter_map(|(name, value)| Some((name.to_string(), value?)))
                    .collect(),
            )
        })
}

/// A request id of either JSON-RPC type rmcp takes.
fn request_id() -> impl Strategy<Value = Value> {
    prop_oneof![any::<i64>().prop_map(Value::from), ".{0,16}".prop_map(Value::from)]
}

/// A valid request or notification: a method and the params it takes.
fn request() -> impl Strategy<Value = (Option<Value>, String, Option<Value>)> {
    let call = ("[a-z_]{1,12}", json_value()).prop_map(|(name, prompt)| {
        (
            "tools/call".to_string(),
            Some(json!({"name": name, "arguments": {"prompt": prompt}})),
        )
    });
    let custom = (
        "[a-z]{1,8}/[a-z_]{1,12}",
        proptest::option::of(proptest::collection::btree_map("[a-z]{1,6}", json_value(), 0..4)),
    )
        .prop_map(|(method, params)| (method, params.map(|p| Value::Object(p.into_iter().collect()))));
    let method = prop_oneof![
        Just(("ping".to_string(), None)),
        Just(("tools/list".to_string(), None)),
        call,
        custom,
    ];
    (proptest::option::of(request_id()), method).prop_map(|(id, (method, params))| (id, method, params))
}

proptest! {
    #[test]
    fn arbitrary_bytes_come_to_one_outcome_without_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes)?;
    }

    #[test]
    fn arbitrary_json_is_answered_only_as_json_rpc_allows(value in json_value(), crlf in any::<bool>()) {
        let mut line = value.to_string();
        line.push_str(if crlf { "\r\n" } else { "\n" });
        check(line.as_bytes())?;
    }

    #[test]
    fn json_rpc_lookalikes_are_answered_only_as_json_rpc_allows(value in rpc_like()) {
        check(value.to_string().as_bytes())?;
    }

    #[test]
    fn a_request_with_any_id_and_params_is_a_message(
        (id, method, params) in request(),
        space in " {0,2}",
        end in prop_oneof![Just(""), Just("\n"), Just("\r\n")],
    ) {
        let mut frame = json!({"jsonrpc": "2.0", "method": method});
        if let Some(id) = &id {
            frame["id"] = id.clone();
        }
        if let Some(params) = &params {
            frame["params"] = params.clone();
        }
        let line = format!("{space}{frame}{space}{end}");
        let Incoming::Message(message) = read_frame(line.as_bytes()) else {
            return Err(TestCaseError::fail(format!("not a message: {line}")));
        };
        let read = serde_json::to_value(&*message).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(read.get("id"), id.as_ref());
        prop_assert_eq!(&read["method"], &json!(method));
        // The params as serde_json reads the line (its default float parsing may land one ULP
        // away from the value written), every one of them kept.
        let sent: Value = serde_json::from_str(&line).map_err(|e| TestCaseError::fail(e.to_string()))?;
        if let Some(Value::Object(params)) = sent.get("params") {
            for (key, value) in params {
                prop_assert_eq!(&read["params"][key], value);
            }
        }
    }
}

#[test]
fn the_seed_frames_keep_every_promise() {
    for seed in SEEDS.iter().map(|s| s.to_vec()).chain(big_seeds()) {
        if let Err(e) = check(&seed) {
            panic!("{e}: {}", String::from_utf8_lossy(&seed[..seed.len().min(200)]));
        }
    }
}
