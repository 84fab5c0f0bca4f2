//! The response cache from a shell: `exai keys create … --cache` stores the setting with the key
//! (shown by `list` and `show`, changed by `update --cache off`), and a call the cache answers
//! is in `exai usage` as cached, with what it saved.

mod common;

use std::collections::HashMap;

use common::{exai, json_of, state_dir};
use exai_core::testing::{FakeReply, FakeUpstream, RedisServer};

#[tokio::test]
async fn a_key_created_with_cache_says_so_until_it_is_turned_off() {
    let env = HashMap::from([("EXAI_STATE_DIR".to_string(), state_dir("keys-cache"))]);
    let run = |args: &'static [&'static str]| exai(args, &env, None);

    let created = run(&["keys", "create", "ci", "--cache", "--json"]).await;
    assert_eq!(created.code, 0, "{}", created.stderr);
    assert_eq!(json_of(&created)["cache"], true);
    assert_eq!(run(&["keys", "create", "people"]).await.code, 0);
    let list = run(&["keys", "list"]).await;
    let line = |name: &str| {
        list.stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("ci ").contains("cached"), "{}", list.stdout);
    assert!(!line("people ").contains("cached"), "{}", list.stdout);
    assert!(run(&["keys", "show", "ci"]).await.stdout.contains("cached"));

    let off = run(&["keys", "update", "ci", "--cache", "off", "--json"]).await;
    assert_eq!(off.code, 0, "{}", off.stderr);
    assert_eq!(json_of(&off).get("cache"), None);
    assert!(!run(&["keys", "list"]).await.stdout.contains("cached"));
    let wrong = run(&["keys", "update", "ci", "--cache", "maybe"]).await;
    assert_eq!(wrong.code, 2, "{}", wrong.stderr);
}

#[tokio::test]
async fn a_call_the_cache_answers_is_in_exai_usage_as_cached_with_what_it_saved() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    // Each `exai` is a process of its own: the reply reaches the second through the cache's
    // Redis level; the ledger is the state directory's SQLite file.
    let redis = RedisServer::start();
    let mut env = fake.env_for(&["GLM"]);
    env.insert("EXAI_STATE_DIR".into(), state_dir("usage-cached"));
    env.insert("EXAI_MEMORY".into(), "sqlite".into());
    env.insert("REDIS_URL".into(), redis.url());
    env.insert("EXAI_CACHE".into(), "exact".into());
    // A million tokens each way: a cost the ledger cannot round away.
    fake.push(FakeReply::text("paid once").with_usage(1_000_000, 1_000_000));
    let args = r#"{"prompt": "the same question", "model": "glm-4.6"}"#;
    let first = exai(&["call", "chat", "--args", args], &env, None).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(first.stdout.starts_with("paid once"), "{}", first.stdout);
    let second = exai(&["call", "chat", "--args", args, "--json"], &env, None).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    let result = json_of(&second);
    assert_eq!(result["structured"]["cache"], "hit", "{result}");
    assert_eq!(fake.completed(), 1);

    let usage = json_of(&exai(&["usage", "--json"], &env, None).await);
    let row = usage["today"][0].clone();
    assert_eq!(
        (row["requests"].as_u64(), row["cached"].as_u64()),
        (Some(1), Some(1)),
        "{usage}"
    );
    let (cost, saved) = (row["cost_usd"].as_f64(), row["saved_usd"].as_f64());
    assert!(saved.is_some_and(|s| s > 1.0) && saved == cost, "{row}");
    let text = exai(&["usage"], &env, None).await.stdout;
    assert!(
        text.contains("1 cached") && text.contains("the cache saved $"),
        "{text}"
    );
}
