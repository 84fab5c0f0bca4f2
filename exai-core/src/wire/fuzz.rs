//! Property tests of the wire parsers, run on arbitrary input: a short run in every `cargo test`
//! (proptest's 256 cases each), a long one with `scripts/fuzz.sh` (`PROPTEST_CASES`). Whatever
//! the bytes, nothing panics; and the relay's promises hold: events cut anywhere come out whole
//! and unchanged, a splice changes only what it names. A failure proptest finds is kept as a
//! regression case in `proptest-regressions/` beside this file.

use bytes::Bytes;
use proptest::prelude::*;

use super::json::{Edit, Fields, splice, string_literal};
use super::scan::Scanner;
use super::sse::{EventCutter, events};
use super::{Wire, WireRequest};

/// One SSE event: an optional name and a data line, with LF or CRLF ends.
fn event() -> impl Strategy<Value = String> {
    (proptest::option::of("[a-z_]{1,12}"), "[ -~]{0,40}", any::<bool>()).prop_map(|(name, data, crlf)| {
        let end = if crlf { "\r\n" } else { "\n" };
        let name = name.map(|n| format!("event: {n}{end}")).unwrap_or_default();
        format!("{name}data: {data}{end}{end}")
    })
}

/// A JSON object with a model, messages and arbitrary other fields, spaced any way.
fn chat_body() -> impl Strategy<Value = String> {
    (
        "[a-zA-Z0-9./_-]{1,20}",
        proptest::collection::btree_map("[a-z_]{1,8}", "[ -!#-~]{0,12}", 0..4),
        " {0,2}",
    )
        .prop_map(|(model, extra, space)| {
            let mut fields = vec![
                format!("\"model\"{space}:{space}\"{model}\""),
                format!("\"messages\":{space}[{{\"role\":\"user\",\"content\":\"hi\"}}]"),
            ];
            for (k, v) in extra {
                fields.push(format!("\"x_{k}\":{space}\"{}\"", v.replace('\\', "")));
            }
            format!("{{{space}{}{space}}}", fields.join(&format!(",{space}")))
        })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_a_parser(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Fields::parse(&bytes);
        let _ = WireRequest::chat(bytes.clone());
        let _ = WireRequest::messages(bytes.clone());
        let _ = WireRequest::count_tokens(bytes.clone());
        for wire in [Wire::Chat, Wire::Messages] {
            let mut scan = Scanner::collecting_text(wire);
            scan.block(&bytes);
            scan.whole(&bytes);
        }
        let _ = events(&bytes).count();
        let mut cutter = EventCutter::default();
        let _ = cutter.push(Bytes::from(bytes));
        let _ = cutter.rest();
    }

    #[test]
    fn events_cut_anywhere_come_out_whole_and_unchanged(
        stream in proptest::collection::vec(event(), 1..12),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let whole = stream.concat();
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(whole.len() + 1)).collect();
        at.push(0);
        at.push(whole.len());
        at.sort_unstable();
        let mut cutter = EventCutter::default();
        let mut out = Vec::new();
        for pair in at.windows(2) {
            let part = Bytes::copy_from_slice(&whole.as_bytes()[pair[0]..pair[1]]);
            if let Some(block) = cutter.push(part) {
                prop_assert!(
                    block.ends_with(b"\n\n") || block.ends_with(b"\r\n\r\n"),
                    "a block ends at an event's end"
                );
                out.extend_from_slice(&block);
            }
        }
        prop_assert!(cutter.rest().is_none());
        prop_assert_eq!(&out[..], whole.as_bytes());
        // An event with neither a name nor data is not dispatched (the SSE rule).
        let dispatched = stream.iter().filter(|e| !e.starts_with("data: \n") && !e.starts_with("data: \r")).count();
        prop_assert_eq!(events(&out).count(), dispatched);
    }

    #[test]
    fn a_splice_changes_only_the_model(body in chat_body(), model in "[a-zA-Z0-9.-]{1,16}") {
        let raw = body.as_bytes();
        let fields = Fields::parse(raw).map_err(TestCaseError::fail)?;
        let spliced = splice(raw, vec![Edit::set(&fields, "model", &string_literal(&model))]);
        let before: serde_json::Value = serde_json::from_slice(raw).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut after: serde_json::Value =
            serde_json::from_slice(&spliced).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(after["model"].as_str(), Some(model.as_str()));
        after["model"] = before["model"].clone();
        prop_assert_eq!(after, before);
    }
}
