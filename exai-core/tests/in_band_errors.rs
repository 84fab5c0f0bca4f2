//! A provider that answers 200 and puts its error in the body: before anything reached the
//! caller, the attempt failed like the HTTP error it stands for (the call moves on to the next
//! model, the ledger counts the error); mid-stream, the caller gets the wire's error event and
//! the call is recorded as broken, never as a success. Against the fake upstream, over real
//! HTTP, for relayed OpenAI chat, Anthropic Messages and Responses, plain and streamed.

mod common;

use std::time::Duration;

use exai_core::testing::{FakeReply, FakeUpstream};
use exai_core::{Error, Gateway, ProviderErrorKind, UsageRow, WireReply, WireRequest};
use futures::StreamExt;

/// A gateway on `fake` for GLM then Kimi (`auto` tries GLM first), both speaking `wires` (what
/// they do not speak is translated to chat).
async fn gateway_speaking(fake: &FakeUpstream, wires: &str) -> Gateway {
    let settings = [
        ("EXAI_FALLBACK", "glm,kimi"),
        ("EXAI_MAX_RETRIES", "0"),
        ("GLM_WIRES", wires),
        ("KIMI_WIRES", wires),
    ];
    common::gateway(fake, &["GLM", "KIMI"], &settings).await
}

/// Every wire relayed.
async fn gateway(fake: &FakeUpstream) -> Gateway {
    gateway_speaking(fake, "chat,messages,responses").await
}

/// The reply's bytes (a stream's, collected; an error item as `ERR: …`), and its provider.
async fn answer(gw: &Gateway, request: WireRequest) -> Result<(String, String), Error> {
    match gw.session("test").relay(request).await? {
        WireReply::Whole { body, provider, .. } => Ok((String::from_utf8_lossy(&body).into_owned(), provider)),
        WireReply::Stream(mut stream) => {
            let provider = stream.provider.clone();
            let mut text = String::new();
            while let Some(item) = stream.next().await {
                match item {
                    Ok(bytes) => text.push_str(&String::from_utf8_lossy(&bytes)),
                    Err(e) => text.push_str(&format!("ERR: {e}")),
                }
            }
            Ok((text, provider))
        }
    }
}

/// The ledger's rows since start, per provider.
async fn ledger(gw: &Gateway, provider: &str) -> UsageRow {
    let rows = gw.usage().await.since_start;
    rows.into_iter()
        .filter(|r| r.provider == provider)
        .fold(UsageRow::default(), |mut all, r| {
            all.requests += r.requests;
            all.errors += r.errors;
            all
        })
}

const CHAT_STREAM: &str = concat!(
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"fine\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
    "data: [DONE]\n\n",
);

const MESSAGES_STREAM: &str = concat!(
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"fine\"}}\n\n",
);

const MESSAGES_END: &str = concat!(
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":2}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

const OVERLOADED: &str =
    "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";

fn chat(stream: bool) -> WireRequest {
    let body = format!(r#"{{"model":"auto","stream":{stream},"messages":[{{"role":"user","content":"hi"}}]}}"#);
    WireRequest::chat(body).unwrap_or_else(|e| panic!("{e}"))
}

fn messages(stream: bool) -> WireRequest {
    let body = format!(
        r#"{{"model":"auto","max_tokens":64,"stream":{stream},"messages":[{{"role":"user","content":"hi"}}]}}"#
    );
    WireRequest::messages(body).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn an_error_in_a_200_before_any_byte_moves_the_call_to_the_next_model() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    let gw = gateway(&fake).await;

    // Chat, streamed: the first event is an error (after a comment, which does not count).
    fake.push(FakeReply::raw(
        ": waiting\n\ndata: {\"error\":{\"message\":\"The server is overloaded\",\"type\":\"server_error\"}}\n\n",
        true,
    ));
    fake.push(FakeReply::raw(CHAT_STREAM, true));
    let (text, provider) = answer(&gw, chat(true)).await?;
    assert_eq!(
        (text.as_str(), provider.as_str()),
        (CHAT_STREAM, "kimi"),
        "the next model's stream, untouched"
    );

    // Chat, whole.
    fake.push(FakeReply::raw(r#"{"error":{"message":"busy","code":"503"}}"#, false));
    fake.push(FakeReply::text("fine"));
    let (text, provider) = answer(&gw, chat(false)).await?;
    assert!(text.contains("\"fine\"") && provider == "kimi", "{provider}: {text}");

    // Anthropic Messages, streamed (`\r\n` line ends).
    fake.push(FakeReply::raw(OVERLOADED.replace('\n', "\r\n"), true));
    fake.push(FakeReply::raw(format!("{MESSAGES_STREAM}{MESSAGES_END}"), true));
    let (text, provider) = answer(&gw, messages(true)).await?;
    assert_eq!(text, format!("{MESSAGES_STREAM}{MESSAGES_END}"));
    assert_eq!(provider, "kimi");

    // Responses, streamed: `response.failed` as the first events.
    let failed = concat!(
        "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"status\":\"in_progress\"}}\n\n",
        "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"boom\"}}}\n\n",
    );
    let completed = "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"status\":\"completed\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n";
    fake.push(FakeReply::raw(failed, true));
    fake.push(FakeReply::raw(completed, true));
    let body = r#"{"model":"auto","stream":true,"store":false,"input":"hi"}"#;
    let (text, provider) = answer(&gw, WireRequest::responses(body)?).await?;
    assert_eq!((text.as_str(), provider.as_str()), (completed, "kimi"));

    // Anthropic Messages, whole: a rate limit, which cools GLM's key as a 429 would (last, so).
    fake.push(FakeReply::raw(
        r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
        false,
    ));
    fake.push(FakeReply::text("fine"));
    let (text, provider) = answer(&gw, messages(false)).await?;
    assert!(text.contains("\"fine\"") && provider == "kimi", "{provider}: {text}");

    let sent = fake.requests();
    assert_eq!(sent.len(), 10, "each call asked GLM, then Kimi");
    assert!(sent.iter().step_by(2).all(|r| r.model().starts_with("glm")));
    let (glm, kimi) = (ledger(&gw, "glm").await, ledger(&gw, "kimi").await);
    assert_eq!(
        (glm.requests, glm.errors),
        (0, 5),
        "every error counted, none as a success"
    );
    assert_eq!((kimi.requests, kimi.errors), (5, 0));
    Ok(())
}

#[tokio::test]
async fn an_error_in_a_200_that_no_retry_mends_is_the_callers() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    let gw = gateway(&fake).await;
    fake.push(FakeReply::raw(
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"prompt is too long\"}}\n\n",
        true,
    ));
    let err = answer(&gw, messages(true)).await.err();
    let kind = match &err {
        Some(Error::Provider(e)) => Some(&e.kind),
        _ => None,
    };
    assert!(
        matches!(kind, Some(ProviderErrorKind::InvalidRequest { status: 400, message }) if message.contains("prompt is too long")),
        "{err:?}"
    );
    assert_eq!(fake.requests().len(), 1, "not retried, no other model");
    assert_eq!(ledger(&gw, "glm").await.errors, 1);
    Ok(())
}

#[tokio::test]
async fn an_error_mid_stream_reaches_the_caller_and_the_call_is_not_a_success() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    let gw = gateway(&fake).await;
    let gap = Duration::from_millis(100);

    // Anthropic Messages: the error event goes on as it came, and ends the stream.
    fake.push(FakeReply::raw_stream_in_parts([MESSAGES_STREAM, OVERLOADED, MESSAGES_END]).with_chunk_delay(gap));
    let (text, provider) = answer(&gw, messages(true)).await?;
    assert_eq!(provider, "glm");
    assert_eq!(
        text,
        format!("{MESSAGES_STREAM}{OVERLOADED}"),
        "the provider's events, up to its error"
    );

    // OpenAI chat: the same.
    let first =
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"fi\"},\"finish_reason\":null}]}\n\n";
    let error = "data: {\"error\":{\"message\":\"upstream died\",\"type\":\"server_error\"}}\n\n";
    fake.push(FakeReply::raw_stream_in_parts([first, error, "data: [DONE]\n\n"]).with_chunk_delay(gap));
    let (text, _) = answer(&gw, chat(true)).await?;
    assert_eq!(text, format!("{first}{error}"));

    assert_eq!(
        fake.requests().len(),
        2,
        "nothing was retried once the caller had bytes"
    );
    let glm = ledger(&gw, "glm").await;
    assert_eq!((glm.requests, glm.errors), (0, 2), "both broken, neither a success");
    let recent = gw.activity().recent;
    assert!(
        recent.iter().take(2).all(|r| r.status == "stream_interrupted"),
        "{recent:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_translated_call_reads_its_chat_providers_errors_too() -> anyhow::Result<()> {
    let fake = FakeUpstream::start().await?;
    let gw = gateway_speaking(&fake, "chat").await;
    let error = "data: {\"error\":{\"message\":\"upstream died\",\"type\":\"server_error\"}}\n\n";

    // Before any byte: the next model answers, translated.
    fake.push(FakeReply::raw(error, true));
    fake.push(FakeReply::text("fine"));
    let (text, provider) = answer(&gw, messages(true)).await?;
    assert_eq!(provider, "kimi");
    assert!(text.contains("event: message_stop") && !text.contains("ERR"), "{text}");

    // Mid-stream: the stream ends with the failure, for the front door to write.
    let first =
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"fi\"},\"finish_reason\":null}]}\n\n";
    fake.push(FakeReply::raw_stream_in_parts([first, error]).with_chunk_delay(Duration::from_millis(100)));
    let (text, provider) = answer(&gw, messages(true)).await?;
    assert_eq!(provider, "glm");
    assert!(text.contains("\"fi\""), "{text}");
    assert!(text.contains("ERR: ") && text.contains("upstream died"), "{text}");
    assert!(!text.contains("message_stop"), "{text}");

    let glm = ledger(&gw, "glm").await;
    assert_eq!((glm.requests, glm.errors), (0, 2));
    Ok(())
}
