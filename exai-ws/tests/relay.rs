//! The relay, seen from both ends: a client's body reaches the provider byte for byte but for
//! the model (and, for a chat stream, `stream_options`), and the provider's reply reaches the
//! client as its bytes — for OpenAI chat and Anthropic Messages, plain and streamed. Also: a
//! translated call is retried and has its provider's quirks applied like any other, a
//! `/v1/messages` call has one deadline, however many models it tries, and an error a provider
//! puts inside a 200 is an error: the next model's answer when it came first, the provider's
//! error event and a broken call when it came mid-stream.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use exai_core::testing::{FakeReply, FakeUpstream};
use serde_json::Value;

async fn post(base: &str, path: &str, body: &str, headers: &[(&str, &str)]) -> (u16, HashMap<String, String>, Vec<u8>) {
    let mut request = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = response.bytes().await.unwrap_or_default().to_vec();
    (status, headers, body)
}

/// What the provider received last.
fn last_sent(fake: &FakeUpstream) -> exai_core::testing::RecordedRequest {
    fake.requests()
        .pop()
        .unwrap_or_else(|| panic!("nothing reached the provider"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// exai-ws on `fake` for `providers`, with `settings` on top (memory in process).
async fn daemon(fake: &FakeUpstream, providers: &[&str], settings: &[(&str, &str)], tag: &str) -> common::Daemon {
    let mut env: HashMap<String, String> = fake.env_for(providers);
    env.insert("EXAI_MEMORY".into(), "memory".into());
    env.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    common::start(&env, tag).await
}

/// A chat body with what a re-encoding would change: spacing, key order, number spellings,
/// unknown fields, a tool round trip.
const CHAT: &str = r#"{ "messages" : [ {"role":"user","content":"read it"},
  {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "Read", "arguments": "{\"path\":\"a.rs\"}"}}]},
  {"role":"tool","tool_call_id":"call_1","content":"fn main() {}"} ],
  "temperature": 0.50, "top_p": 1e0, "x_vendor_field": {"keep": [1, 2.0]},
  "model": "glm-4.6", "tools": [{"type":"function","function":{"name":"Read","parameters":{"type":"object"}}}] }"#;

#[tokio::test]
async fn openai_chat_is_relayed_byte_for_byte_both_ways() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let d = daemon(&fake, &["GLM"], &[], "relay-chat").await;

    // Plain: the body arrives as sent (the model was already the provider's id); the reply is
    // the provider's bytes with exai's object added before the last brace.
    let reply = "{\"id\":\"chatcmpl-up\",  \"object\":\"chat.completion\",\"model\":\"glm-4.6\",\n \"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"done\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3,\"total_tokens\":15},\"x_up\":1.50}";
    fake.push(FakeReply::raw(reply, false));
    let (status, headers, body) = post(&d.base, "/v1/chat/completions", CHAT, &[]).await;
    assert_eq!(status, 200, "{}", text(&body));
    assert_eq!(headers.get("x-exai-provider").map(String::as_str), Some("glm"));
    let sent = last_sent(&fake);
    assert_eq!(text(&sent.raw), CHAT, "the request body is untouched");
    let got = text(&body);
    let (upstream, added) = got.split_at(reply.len() - 1);
    assert_eq!(upstream, &reply[..reply.len() - 1], "the reply is the provider's bytes");
    assert!(added.starts_with(",\"exai\":{\"provider\":\"glm\""), "{added}");
    assert!(added.ends_with('}'));

    // Streamed, with `auto`: only the model and `stream_options` change on the way up; the
    // provider's stream reaches the client as it was sent.
    let asked = CHAT
        .replace("\"glm-4.6\"", "\"auto\"")
        .replacen("{ ", "{ \"stream\": true, ", 1);
    let events = concat!(
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n",
        "data:{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo \\\"usage\\\"\"},  \"finish_reason\":null}], \"x\": 1.0}\n\n",
        ": a comment line\n\n",
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":7,\"total_tokens\":19}}\n\n",
        "data: [DONE]\n\n"
    );
    fake.push(FakeReply::raw(events, true));
    let (status, headers, body) = post(&d.base, "/v1/chat/completions", &asked, &[]).await;
    assert_eq!(status, 200, "{}", text(&body));
    assert!(headers["content-type"].starts_with("text/event-stream"));
    // Every byte but the usage-only chunk, which exai asked for and the client did not.
    let usage_chunk = "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":7,\"total_tokens\":19}}\n\n";
    assert_eq!(
        text(&body),
        events.replace(usage_chunk, ""),
        "the client receives the provider's stream unchanged"
    );
    let sent = last_sent(&fake);
    let want = asked
        .replacen("{ ", "{\"stream_options\":{\"include_usage\":true}, ", 1)
        .replace("\"auto\"", "\"glm-4.6\"");
    assert_eq!(text(&sent.raw), want);

    // The usage the scanner read reached the record of the call (the status page's JSON).
    let status = common::get_json(&d, "/ui/api/status").await;
    let last = &status["activity"]["recent"][0];
    assert_eq!(
        (last["input_tokens"].as_u64(), last["output_tokens"].as_u64()),
        (Some(12), Some(7)),
        "{status}"
    );
    assert_eq!(last["status"], "ok");
}

/// A Messages body with what a re-encoding would break: a thinking block's signature,
/// `cache_control`, spacing, a number spelled `1.0`.
const MESSAGES: &str = r#"{"model":"claude-sonnet-4-5",  "max_tokens": 1024, "temperature": 1.0,
 "system": [{"type":"text","text":"be brief","cache_control":{"type":"ephemeral"}}],
 "messages": [{"role":"user","content":"hi"},
   {"role":"assistant","content":[{"type":"thinking","thinking":"hmm","signature":"EqQBCkYIARgC+/=="},{"type":"text","text":"hello"}]},
   {"role":"user","content":[{"type":"text","text":"again","cache_control":{"type":"ephemeral"}}]}],
 "metadata": {"user_id": "u-1"}, "some_future_field": [true]}"#;

#[tokio::test]
async fn anthropic_messages_are_relayed_byte_for_byte_both_ways() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    // A beta on GLM's allow-list (configured: its default forwards none) is relayed.
    let allowed = [("GLM_ANTHROPIC_BETAS", "interleaved-thinking-2025-05-14")];
    let d = daemon(&fake, &["GLM"], &allowed, "relay-messages").await;
    let headers = [
        ("anthropic-version", "2023-06-01"),
        ("anthropic-beta", "interleaved-thinking-2025-05-14"),
    ];

    let reply = "{\"id\":\"msg_up\", \"type\":\"message\",\"role\":\"assistant\",\"model\":\"glm-4.6\",\"content\":[{\"type\":\"text\",\"text\":\"ok\"}],\n\"stop_reason\":\"end_turn\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":30,\"output_tokens\":2}}";
    fake.push(FakeReply::raw(reply, false));
    let (status, answer_headers, body) = post(&d.base, "/v1/messages", MESSAGES, &headers).await;
    assert_eq!(status, 200, "{}", text(&body));
    assert_eq!(text(&body), reply, "the reply is the provider's bytes");
    assert_eq!(answer_headers.get("x-exai-model").map(String::as_str), Some("glm-4.6"));
    let sent = last_sent(&fake);
    assert_eq!(
        text(&sent.raw),
        MESSAGES.replacen("\"claude-sonnet-4-5\"", "\"glm-4.6\"", 1),
        "only the model changes"
    );
    assert_eq!(sent.anthropic_beta.as_deref(), Some("interleaved-thinking-2025-05-14"));
    assert_eq!(sent.x_api_key.as_deref(), Some("test-key"));

    let streamed = MESSAGES.replacen("\"max_tokens\": 1024", "\"max_tokens\": 1024, \"stream\":true", 1);
    let events = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_up\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"glm-4.6\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":30,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"Zm9v+/==\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":9}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
    );
    fake.push(FakeReply::raw(events, true));
    let (status, _, body) = post(&d.base, "/v1/messages", &streamed, &headers).await;
    assert_eq!(status, 200, "{}", text(&body));
    assert_eq!(
        text(&body),
        events,
        "the client receives the provider's events unchanged"
    );
    let sent = last_sent(&fake);
    assert_eq!(
        text(&sent.raw),
        streamed.replacen("\"claude-sonnet-4-5\"", "\"glm-4.6\"", 1)
    );
}

#[tokio::test]
async fn a_translated_call_is_retried_and_has_its_quirks_applied() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    // MiniMax told to speak only chat: Messages requests are translated.
    let settings = [
        ("MINIMAX_WIRES", "chat"),
        ("EXAI_MAX_RETRIES", "2"),
        ("EXAI_RETRY_BASE_DELAY_MS", "10"),
    ];
    let d = daemon(&fake, &["MINIMAX"], &settings, "relay-translated").await;
    fake.push(FakeReply::status(503));
    fake.push(FakeReply::text("translated answer"));
    let body = r#"{"model":"MiniMax-M2","max_tokens":64,"temperature":0,"messages":[{"role":"user","content":"hi"}]}"#;
    let (status, _, reply) = post(&d.base, "/v1/messages", body, &[("anthropic-version", "2023-06-01")]).await;
    assert_eq!(status, 200, "{}", text(&reply));
    let reply: Value = serde_json::from_slice(&reply).unwrap_or_default();
    assert_eq!(reply["content"][0]["text"], "translated answer");
    let sent = fake.requests();
    assert_eq!(sent.len(), 2, "the 503 was retried");
    assert!(sent.iter().all(|r| r.path == "/v1/chat/completions"));
    let temperature = sent[1].body["temperature"].as_f64().unwrap_or(-1.0);
    assert!(
        (temperature - 0.01).abs() < 1e-6,
        "MiniMax's range applied: {temperature}"
    );
}

#[tokio::test]
async fn a_messages_call_has_one_deadline_however_many_models_it_tries() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let settings = [("EXAI_MAX_RETRIES", "0"), ("EXAI_CALL_TIMEOUT_SECS", "2")];
    let d = daemon(&fake, &["GLM", "KIMI"], &settings, "relay-deadline").await;
    // The first model fails after 1.5 s; the next hangs. Per attempt, the call would end at
    // 3.5 s; per call, at 2 s.
    fake.push(FakeReply::status(500).with_delay(Duration::from_millis(1500)));
    fake.push(FakeReply::hang());
    let started = Instant::now();
    let body = r#"{"model":"auto","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#;
    let (status, _, reply) = post(&d.base, "/v1/messages", body, &[("anthropic-version", "2023-06-01")]).await;
    let took = started.elapsed();
    assert_eq!(status, 504, "{}", text(&reply));
    assert!(
        took < Duration::from_millis(3000),
        "one deadline for the call: {took:?}"
    );
    assert_eq!(fake.requests().len(), 2, "both models were tried");
}

#[tokio::test]
async fn a_relayed_stream_past_its_deadline_ends_with_an_error_and_is_recorded_as_broken() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let settings = [("EXAI_CALL_TIMEOUT_SECS", "1")];
    let d = daemon(&fake, &["GLM"], &settings, "relay-stream-deadline").await;
    fake.push(FakeReply::text("one two three four five six").with_chunk_delay(Duration::from_millis(400)));
    let body = r#"{"model":"glm-4.6","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let started = Instant::now();
    let (status, _, reply) = post(&d.base, "/v1/chat/completions", body, &[]).await;
    let reply = text(&reply);
    assert_eq!(status, 200, "the stream had begun: {reply}");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    assert!(
        reply.contains("\"content\":\"one \""),
        "the first chunks arrived: {reply}"
    );
    assert!(reply.contains("\"code\":\"stream_failed\""), "{reply}");
    assert!(reply.contains("limits.call_timeout_secs"), "{reply}");
    assert!(reply.ends_with("data: [DONE]\n\n"), "{reply}");
    let status = common::get_json(&d, "/ui/api/status").await;
    assert_eq!(
        status["activity"]["recent"][0]["status"], "stream_interrupted",
        "{status}"
    );
}

/// The `exai_requests_total` lines of `/metrics` for `provider` with `status`.
async fn requests_counted(d: &common::Daemon, provider: &str, status: &str) -> bool {
    let metrics = common::get_text(d, "/metrics", None).await;
    metrics.lines().any(|l| {
        l.starts_with("exai_requests_total")
            && l.contains(&format!("provider=\"{provider}\""))
            && l.contains(&format!("status=\"{status}\""))
    })
}

#[tokio::test]
async fn an_error_inside_a_200_is_an_error_before_the_first_byte_and_after_it() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let settings = [("EXAI_FALLBACK", "glm,kimi"), ("EXAI_MAX_RETRIES", "0")];
    let d = daemon(&fake, &["GLM", "KIMI"], &settings, "relay-in-band").await;
    let headers = [("anthropic-version", "2023-06-01")];
    let body = r#"{"model":"auto","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n";
    let rest = concat!(
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":2}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    let overloaded = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";

    // First: GLM's 200 holds only the error; Kimi answers, and the client sees only Kimi.
    fake.push(FakeReply::raw(overloaded, true));
    fake.push(FakeReply::raw(format!("{start}{rest}"), true));
    let (status, _, reply) = post(&d.base, "/v1/messages", body, &headers).await;
    assert_eq!((status, text(&reply)), (200, format!("{start}{rest}")));
    let page = common::get_json(&d, "/ui/api/status").await;
    let last = &page["activity"]["recent"][0];
    assert_eq!(
        (&last["status"], &last["provider"]),
        (&"ok".into(), &"kimi".into()),
        "{page}"
    );
    assert!(
        requests_counted(&d, "glm", "transient").await,
        "GLM's failure is counted"
    );

    // Mid-stream: the client gets the provider's error event as it came; the call is broken.
    fake.push(FakeReply::raw_stream_in_parts([start, overloaded, rest]).with_chunk_delay(Duration::from_millis(100)));
    let (status, _, reply) = post(&d.base, "/v1/messages", body, &headers).await;
    assert_eq!((status, text(&reply)), (200, format!("{start}{overloaded}")));
    let page = common::get_json(&d, "/ui/api/status").await;
    assert_eq!(page["activity"]["recent"][0]["status"], "stream_interrupted", "{page}");
    assert!(requests_counted(&d, "glm", "stream_interrupted").await);
    assert!(!requests_counted(&d, "glm", "ok").await, "never a success");
    assert_eq!(fake.requests().len(), 3);
}
