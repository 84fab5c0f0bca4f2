//! The OpenAI Responses API (`/v1/responses`) against the real daemon, translated to the fake
//! upstream's chat side: the official openai Python SDK (a plain response, a stream through the
//! SDK's helper, a function-call round trip, `previous_response_id`, retrieve and delete, errors
//! as its typed exceptions), a stored response continued on a second daemon sharing one Redis,
//! a key that cannot reach another key's response, and what reached the provider.

mod common;

use exai_core::testing::{FakeReply, FakeUpstream, RedisServer};
use serde_json::{Value, json};

fn user_texts(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn the_official_openai_sdk_speaks_responses_to_exai() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let mut env = fake.env_for(&["GLM", "KIMI"]);
    env.insert("EXAI_ADMIN_TOKEN".into(), "admin".into());
    let d = common::start(&env, "responses-sdk").await;
    let secret = common::create_key(&d, "admin", "sdk", json!({})).await;

    fake.push(FakeReply::text("hello from exai").with_usage(11, 4));
    fake.push(FakeReply::text("the answer is 42").with_reasoning("six times seven"));
    fake.push(FakeReply::tool_use("get_weather", json!({"city": "Paris"})));
    fake.push(FakeReply::text("It is sunny in Paris."));
    fake.push(FakeReply::text("Nice to meet you, Ada."));
    fake.push(FakeReply::text("Your name is Ada."));
    let seen = common::run_client("openai_responses.py", &["session", &d.base, &secret]).await;

    assert_eq!(seen["plain"]["text"], "hello from exai", "{seen}");
    assert_eq!(seen["plain"]["status"], "completed");
    assert_eq!(seen["plain"]["model"], "glm-4.6");
    assert!(seen["plain"]["id"].as_str().is_some_and(|id| id.starts_with("resp_")));
    assert_eq!(
        (
            seen["plain"]["input_tokens"].clone(),
            seen["plain"]["output_tokens"].clone()
        ),
        (json!(11), json!(4))
    );
    assert_eq!(seen["plain"]["total_tokens"], 15);

    let events: Vec<&str> = seen["stream"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(events.first(), Some(&"response.created"), "{seen}");
    assert_eq!(events.last(), Some(&"response.completed"), "{seen}");
    for expected in [
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_text.delta",
        "response.content_part.added",
        "response.output_text.done",
        "response.output_item.done",
    ] {
        assert!(events.contains(&expected), "{expected} in {events:?}");
    }
    assert!(seen["stream"]["deltas"].as_u64().is_some_and(|n| n > 1), "{seen}");
    assert_eq!(seen["stream"]["text"], "the answer is 42");
    assert_eq!(seen["stream"]["kinds"], json!(["reasoning", "message"]));
    assert_eq!(seen["stream"]["reasoning"], json!(["six times seven"]));

    assert_eq!(seen["tools"]["name"], "get_weather", "{seen}");
    assert_eq!(seen["tools"]["arguments"], json!({"city": "Paris"}));
    assert_eq!(seen["tools"]["answer"], "It is sunny in Paris.");

    assert_eq!(seen["continued"]["text"], "Your name is Ada.", "{seen}");
    assert_eq!(seen["retrieved"], "Nice to meet you, Ada.");
    assert_eq!(seen["deleted"], true);
    assert_eq!(seen["after_delete"]["status"], 404, "{seen}");
    assert_eq!(seen["after_delete"]["class"], "NotFoundError");
    assert_eq!(seen["unstored"]["status"], 404);
    assert_eq!(seen["unknown_model"]["status"], 404, "{seen}");
    assert_eq!(seen["unknown_model"]["body"]["code"], "model_not_found");
    assert_eq!(seen["unknown_previous"]["status"], 400, "{seen}");
    assert!(
        seen["unknown_previous"]["body"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("resp_nope")),
        "{seen}"
    );
    assert_eq!(seen["no_input"]["status"], 400, "{seen}");

    // What the provider received: chat, translated.
    let sent = fake.requests();
    assert_eq!(sent.len(), 6, "one provider call per answer");
    assert!(sent.iter().all(|r| r.path == "/v1/chat/completions"));
    assert_eq!(
        sent[0].body["messages"][0],
        json!({"role": "system", "content": "be brief"})
    );
    assert_eq!(sent[1].body["stream"], true);
    assert_eq!(
        sent[1].body["thinking"]["type"], "enabled",
        "reasoning.effort → GLM's switch"
    );
    assert_eq!(sent[2].body["tools"][0]["function"]["name"], "get_weather");
    let round = &sent[3].body["messages"];
    assert_eq!(round[1]["tool_calls"][0]["function"]["name"], "get_weather", "{round}");
    assert_eq!(round[2]["role"], "tool");
    assert_eq!(round[2]["content"], "sunny, 24 C");
    assert_eq!(round[2]["tool_call_id"], round[1]["tool_calls"][0]["id"]);
    assert_eq!(
        user_texts(&sent[5].body),
        ["my name is Ada", "Nice to meet you, Ada.", "what is my name?"],
        "the stored conversation came first"
    );
}

#[tokio::test]
async fn a_stored_response_is_continued_on_another_daemon_and_no_other_key_reaches_it() {
    let redis = RedisServer::start();
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let mut env = fake.env_for(&["GLM"]);
    env.insert("REDIS_URL".into(), redis.url());
    env.insert("EXAI_ADMIN_TOKEN".into(), "admin".into());
    let one = common::start(&env, "responses-redis-1").await;
    let two = common::start(&env, "responses-redis-2").await;
    let alice = common::create_key(&one, "admin", "alice", json!({})).await;
    let bob = common::create_key(&one, "admin", "bob", json!({})).await;

    fake.push(FakeReply::text("Nice to meet you, Ada."));
    fake.push(FakeReply::text("Your name is Ada."));
    let seen = common::run_client("openai_responses.py", &["two-daemons", &one.base, &alice, &two.base]).await;
    assert_eq!(seen["second"]["text"], "Your name is Ada.", "{seen}");
    assert_eq!(seen["retrieved"], "Nice to meet you, Ada.");
    assert_eq!(
        seen["after_delete"]["status"], 404,
        "deleted on one daemon, gone on the other: {seen}"
    );
    let sent = fake.requests();
    assert_eq!(
        user_texts(&sent[1].body),
        ["my name is Ada", "Nice to meet you, Ada.", "what is my name?"]
    );

    // alice's stored response: bob is told it does not exist, as for an id never seen.
    fake.push(FakeReply::text("kept"));
    let http = reqwest::Client::new();
    let made: Value = http
        .post(format!("{}/v1/responses", one.base))
        .bearer_auth(&alice)
        .json(&json!({"model": "glm-4.6", "input": "secret plans"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    let id = made["id"].as_str().unwrap_or_default().to_string();
    assert!(id.starts_with("resp_"), "{made}");
    let as_bob = |method: reqwest::Method, path: String| http.request(method, path).bearer_auth(&bob);
    let read = as_bob(reqwest::Method::GET, format!("{}/v1/responses/{id}", two.base))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read.status().as_u16(), 404);
    let unknown = as_bob(reqwest::Method::GET, format!("{}/v1/responses/resp_never", two.base))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(unknown.status().as_u16(), 404);
    let (a, b): (Value, Value) = (
        read.json().await.unwrap_or_default(),
        unknown.json().await.unwrap_or_default(),
    );
    assert_eq!(
        a["error"]["message"].as_str().map(|m| m.replace(&id, "ID")),
        b["error"]["message"].as_str().map(|m| m.replace("resp_never", "ID")),
        "no oracle"
    );
    let deleted = as_bob(reqwest::Method::DELETE, format!("{}/v1/responses/{id}", one.base))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(deleted.status().as_u16(), 404);
    let continued = http
        .post(format!("{}/v1/responses", two.base))
        .bearer_auth(&bob)
        .json(&json!({"model": "glm-4.6", "input": "go on", "previous_response_id": id}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(continued.status().as_u16(), 400);
    assert_eq!(fake.requests().len(), 3, "bob's continuation reached no provider");
    // alice still reaches hers.
    let own = http
        .get(format!("{}/v1/responses/{id}", two.base))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(own.status().as_u16(), 200);
}

async fn post(base: &str, body: Value) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/responses"))
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn a_provider_that_speaks_responses_is_relayed_and_minimax_is_translated_and_a_broken_stream_fails_in_band() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let mut env = fake.env_for(&["GLM", "MINIMAX"]);
    env.insert("GLM_WIRES".into(), "chat,messages,responses".into());
    let d = common::start(&env, "responses-relay").await;

    // GLM declares the Responses wire: the body goes as it came, the stream comes back as is.
    let upstream = concat!(
        "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_up\",\"status\":\"in_progress\",\"output\":[]},\"sequence_number\":0}\n\n",
        "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_up\",\"status\":\"completed\",\"output\":[],",
        "\"usage\":{\"input_tokens\":3,\"output_tokens\":2,\"total_tokens\":5}},\"sequence_number\":1}\n\n"
    );
    fake.push(FakeReply::raw(upstream, true));
    let asked = json!({"model": "glm-4.6", "stream": true, "input": "hi", "x_unknown": [1, 2]});
    let (status, body) = post(&d.base, asked.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, upstream, "relayed byte for byte");
    let sent = fake.requests();
    assert_eq!(sent[0].path, "/v1/responses");
    assert_eq!(sent[0].body, asked, "the client's body, fields kept");

    // MiniMax: translated to its chat endpoint, reasoning split out of `<think>` tags.
    fake.push(FakeReply::text("<think>weighing it</think>the answer"));
    let (status, body) = post(&d.base, json!({"model": "MiniMax-M2", "input": "hi", "temperature": 0})).await;
    assert_eq!(status, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(reply["output"][0]["type"], "reasoning", "{reply}");
    assert_eq!(reply["output"][0]["summary"][0]["text"], "weighing it");
    assert_eq!(reply["output"][1]["content"][0]["text"], "the answer");
    let sent = fake.requests();
    assert_eq!(sent[1].path, "/v1/chat/completions");
    assert_eq!(sent[1].body["reasoning_split"], true, "MiniMax's quirks applied");
    assert!((sent[1].body["temperature"].as_f64().unwrap_or(-1.0) - 0.01).abs() < 1e-6);

    // Recorded like every call: the status page names the front door, the usage came through.
    let status = common::get_json(&d, "/ui/api/status").await;
    let last = &status["activity"]["recent"][0];
    assert_eq!(last["front_door"], "responses", "{status}");
    assert_eq!(last["status"], "ok");
    assert!(last["output_tokens"].as_u64().is_some_and(|n| n > 0), "{last}");

    // A stream that breaks after its first byte ends with `response.failed`, in the same
    // sequence, naming the failure.
    fake.push(FakeReply::fault_in("[fault:drop]").unwrap_or_else(|| FakeReply::text("no fault")));
    let (status, body) = post(&d.base, json!({"model": "glm-4.6", "stream": false, "input": "x"})).await;
    assert_ne!(status, 200, "a whole reply that broke is an error: {body}");
    let minimax = json!({"model": "MiniMax-M2", "stream": true, "input": "x"});
    fake.push(FakeReply::fault_in("[fault:drop]").unwrap_or_else(|| FakeReply::text("no fault")));
    let (status, body) = post(&d.base, minimax).await;
    assert_eq!(status, 200, "{body}");
    let events: Vec<Value> = body
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    let last = events.last().cloned().unwrap_or_default();
    assert_eq!(last["type"], "response.failed", "{body}");
    assert_eq!(last["sequence_number"], events.len() as u64 - 1);
    assert!(
        last["response"]["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{last}"
    );
    assert!(
        events.iter().any(|e| e["type"] == "response.output_text.delta"),
        "{body}"
    );
}
