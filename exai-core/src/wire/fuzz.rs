//! Property tests of the wire parsers and translators (chat, Messages, Responses), run on
//! arbitrary input: a short run in every `cargo test` (proptest's 256 cases each), a long one with `scripts/fuzz.sh` (`PROPTEST_CASES`). Whatever
//! the bytes, nothing panics; and the relay's promises hold: events cut anywhere come out whole
//! and unchanged, a splice changes only what it names. A failure proptest finds is kept as a
//! regression case in `proptest-regressions/` beside this file.

use bytes::Bytes;
use proptest::prelude::*;

use super::json::{Edit, Fields, splice, string_literal};
use super::responses::{ChatExtras, ResponseFrame, new_id, to_chat};
use super::scan::Scanner;
use super::sse::{EventCutter, events};
use super::{Kept, ResponsesTranslator, Wire, WireRequest};

/// One SSE event: an optional name and a data line, its lines ended by `\n`, `\r\n` or `\r`,
/// and its blank line by any of them (but `\n` after `\r`, which reads as one `\r\n`).
fn event() -> impl Strategy<Value = (bool, String)> {
    const ENDS: [&str; 3] = ["\n", "\r\n", "\r"];
    (
        proptest::option::of("[a-z_]{1,12}"),
        "[ -~]{0,40}",
        0..3usize,
        0..3usize,
    )
        .prop_map(|(name, data, line, blank)| {
            let (line, blank) = (ENDS[line], if line == 2 && blank == 0 { "\r" } else { ENDS[blank] });
            let dispatched = name.is_some() || !data.is_empty();
            let name = name.map(|n| format!("event: {n}{line}")).unwrap_or_default();
            (dispatched, format!("{name}data: {data}{line}{blank}"))
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
        let _ = WireRequest::responses(bytes.clone());
        for wire in [Wire::Chat, Wire::Messages, Wire::Responses] {
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
        let whole: String = stream.iter().map(|(_, e)| e.as_str()).collect();
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(whole.len() + 1)).collect();
        at.push(0);
        at.push(whole.len());
        at.sort_unstable();
        let mut cutter = EventCutter::default();
        let mut blocks = Vec::new();
        for pair in at.windows(2) {
            let part = Bytes::copy_from_slice(&whole.as_bytes()[pair[0]..pair[1]]);
            let block = cutter.push(part).map_err(|e| TestCaseError::fail(e.to_string()))?;
            blocks.extend(block);
        }
        blocks.extend(cutter.rest());
        let out: Vec<u8> = blocks.iter().flat_map(|b| b.to_vec()).collect();
        prop_assert_eq!(&out[..], whole.as_bytes());
        // Each block holds whole events: read block by block, they are the stream's events.
        let read = |b: &[u8]| events(b).map(|e| (e.name.to_vec(), e.data.to_vec())).collect::<Vec<_>>();
        let by_block: Vec<_> = blocks.iter().flat_map(|b| read(b)).collect();
        prop_assert_eq!(&by_block, &read(whole.as_bytes()));
        // An event with neither a name nor data is not dispatched.
        prop_assert_eq!(by_block.len(), stream.iter().filter(|(dispatched, _)| *dispatched).count());
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

    #[test]
    fn any_responses_items_translate_and_any_chunks_stream_in_sequence(
        items in proptest::collection::vec(responses_item(), 0..8),
        chunks in proptest::collection::vec(chat_chunk(), 0..10),
    ) {
        let body: serde_json::Map<String, serde_json::Value> =
            serde_json::from_value(serde_json::json!({"model": "m", "input": items, "instructions": "x"}))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let extras = ChatExtras { reasoning_content: true, ..ChatExtras::default() };
        let translated = to_chat(&body, &[], "m", true, &extras);
        // Whatever the items, the body is chat: messages with roles, a stream asking for usage.
        let messages = translated.body["messages"].as_array().cloned().unwrap_or_default();
        prop_assert!(messages.iter().all(|m| matches!(m["role"].as_str(), Some("system" | "user" | "assistant" | "tool"))));
        prop_assert_eq!(&translated.body["stream_options"]["include_usage"], &serde_json::json!(true));
        let frame = ResponseFrame::new(new_id(), "m", &body);
        let mut t = ResponsesTranslator::new(frame, translated.names, true, Kept::default());
        let mut out = Vec::new();
        for chunk in &chunks {
            t.chunk(chunk, &mut out);
        }
        t.finish(&mut out);
        let numbers: Vec<u64> = events(&out)
            .filter_map(|e| serde_json::from_slice::<serde_json::Value>(&e.data).ok())
            .filter_map(|e| e["sequence_number"].as_u64())
            .collect();
        prop_assert!(!numbers.is_empty());
        prop_assert_eq!(numbers, (0..).take(events(&out).count()).collect::<Vec<u64>>());
        let last = events(&out).last().map(|e| e.name.to_vec()).unwrap_or_default();
        prop_assert!(last == b"response.completed" || last == b"response.incomplete");
    }
}

/// A Responses input item of any kind Codex or the SDK sends, with arbitrary text.
fn responses_item() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::json;
    let text = "[ -~]{0,16}";
    prop_oneof![
        (
            prop_oneof![Just("user"), Just("assistant"), Just("developer"), Just("system")],
            text
        )
            .prop_map(
                |(role, t)| json!({"type": "message", "role": role, "content": [{"type": "input_text", "text": t}]})
            ),
        text.prop_map(|t| json!({"type": "reasoning", "summary": [{"type": "summary_text", "text": t}]})),
        ("[a-z]{1,4}", proptest::option::of("[a-z_]{1,8}"), text).prop_map(|(id, ns, args)| {
            json!({"type": "function_call", "call_id": id, "name": "f", "namespace": ns, "arguments": args})
        }),
        ("[a-z]{1,4}", text)
            .prop_map(|(id, out)| json!({"type": "function_call_output", "call_id": id, "output": out})),
        ("[a-z]{1,4}", text)
            .prop_map(|(id, input)| json!({"type": "custom_tool_call", "call_id": id, "name": "p", "input": input})),
        text.prop_map(|t| json!({"type": t})),
        any::<i64>().prop_map(|n| json!(n)),
    ]
}

/// A chat stream chunk's data: text, reasoning, tool call pieces, a finish, usage, or junk.
fn chat_chunk() -> impl Strategy<Value = String> {
    use serde_json::json;
    let text = "[ -~]{0,12}";
    prop_oneof![
        text.prop_map(|t| json!({"choices": [{"delta": {"content": t}}]}).to_string()),
        text.prop_map(|t| json!({"choices": [{"delta": {"reasoning_content": t}}]}).to_string()),
        (0u64..3, proptest::option::of("[a-z_]{1,6}"), text).prop_map(|(i, name, args)| {
            json!({"choices": [{"delta": {"tool_calls": [{"index": i, "id": name.clone(), "function": {"name": name, "arguments": args}}]}}]}).to_string()
        }),
        prop_oneof![Just("stop"), Just("length"), Just("tool_calls")]
            .prop_map(|f| json!({"choices": [{"delta": {}, "finish_reason": f}]}).to_string()),
        (0u64..100, 0u64..100).prop_map(|(i, o)| json!({"choices": [], "usage": {"prompt_tokens": i, "completion_tokens": o}}).to_string()),
        text.prop_map(|t| t.to_string()),
    ]
}
