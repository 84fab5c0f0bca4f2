//! The real `exai` binary against the fake upstream and a real Redis.

mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use common::{exai, free_port, json_of, state_dir};
use exai_core::testing::{FakeReply, FakeUpstream, RedisServer};
use serde_json::{Value, json};
use tokio::process::Command;

#[tokio::test]
async fn chat_streams_the_reply_to_stdout_and_the_continuation_to_stderr() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    fake.push(FakeReply::text("streamed hello world").with_reasoning("thinking hard"));
    let run = exai(&["chat", "hi there", "--show-reasoning"], &fake.env_for(&["GLM"]), None).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "streamed hello world\n");
    assert!(run.stderr.contains("thinking hard"));
    assert!(
        run.stderr.contains("glm-4.6 via glm") && run.stderr.contains("exai chat --continue "),
        "{}",
        run.stderr
    );
    assert!(fake.requests()[0].is_stream());
}

#[tokio::test]
async fn chat_reads_stdin_and_continue_carries_the_history() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let redis = RedisServer::start();
    let mut env = fake.env_for(&["GLM"]);
    env.insert("REDIS_URL".into(), redis.url());
    let first = exai(&["chat", "--json"], &env, Some("my name is Ada\n")).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    let reply: Value = serde_json::from_str(&first.stdout).unwrap_or_default();
    let id = reply["continuation_id"].as_str().unwrap_or_default().to_string();
    assert!(!id.is_empty());
    let second = exai(
        &["chat", "-", "--continue", &id, "--no-stream"],
        &env,
        Some("what is my name?"),
    )
    .await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        second.stdout.starts_with("echo (3 messages): what is my name?"),
        "{}",
        second.stdout
    );
    let sent = fake.requests()[1].messages();
    assert_eq!(sent[0]["content"], "my name is Ada\n");
    let threads = exai(&["threads"], &env, None).await;
    assert!(
        threads.stdout.contains(&id) && threads.stdout.contains("4 turns"),
        "{}",
        threads.stdout
    );
    let thread = exai(&["thread", &id], &env, None).await;
    assert!(thread.stdout.contains("--- glm-4.6") && thread.stdout.contains("what is my name?"));
}

#[tokio::test]
async fn bare_continue_carries_on_the_last_conversation_of_the_state_directory() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let mut env = fake.env_for(&["GLM"]);
    env.insert("EXAI_STATE_DIR".into(), state_dir("continue-last"));
    let none = exai(&["chat", "hello?", "--continue"], &env, None).await;
    assert_eq!(none.code, 7, "{}", none.stderr);
    assert!(
        none.stderr.contains("no conversation to continue yet in ") && none.stderr.contains("exai.db"),
        "{}",
        none.stderr
    );
    assert!(fake.requests().is_empty(), "nothing was sent");

    for prompt in ["an older conversation about apples", "my name is Ada"] {
        let run = exai(&["chat", "--no-stream", prompt], &env, None).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let second = exai(&["chat", "what is my name?", "--continue"], &env, None).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        second.stdout.starts_with("echo (3 messages): what is my name?"),
        "{}",
        second.stdout
    );
    let history = fake.requests()[2].messages();
    assert_eq!(history[0]["content"], "my name is Ada", "{history:?}");
    assert_eq!(
        history[1]["content"], "echo (1 messages): my name is Ada",
        "{history:?}"
    );

    // The same conversation again (now the most recently updated), with the short flag.
    let third = exai(&["chat", "-", "-c", "--no-stream"], &env, Some("and then?")).await;
    assert_eq!(third.code, 0, "{}", third.stderr);
    assert!(
        third.stdout.starts_with("echo (5 messages): and then?"),
        "{}",
        third.stdout
    );
    assert!(
        !fake.requests()[3].body.to_string().contains("apples"),
        "the older conversation stays apart"
    );

    // A prompt after the flag would be read as an id: refused, with the order that works.
    let misread = exai(&["chat", "--continue", "and then?"], &env, None).await;
    assert_eq!(misread.code, 2, "{}", misread.stderr);
    assert!(
        misread.stderr.contains(r#"exai chat "and then?" --continue"#),
        "{}",
        misread.stderr
    );
    assert_eq!(fake.requests().len(), 4, "nothing more was sent");
}

#[tokio::test]
async fn json_output_has_the_documented_shape() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    fake.push(FakeReply::text("four").with_reasoning("2+2").with_usage(10, 2));
    let run = exai(
        &["chat", "2+2?", "--json", "--model", "glm"],
        &fake.env_for(&["GLM"]),
        None,
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).unwrap_or_default();
    assert_eq!(v["text"], "four");
    assert_eq!(v["reasoning"], "2+2");
    assert_eq!(
        (v["provider"].as_str(), v["model"].as_str()),
        (Some("glm"), Some("glm-4.6"))
    );
    assert_eq!(v["usage"]["input_tokens"], 10);
    assert!(v["cost_usd"].is_number() && v["continuation_id"].is_string());
}

#[tokio::test]
async fn a_rejected_key_and_no_provider_get_one_line_and_distinct_exit_codes() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    fake.require_key("the-right-key");
    let bad = exai(&["chat", "hi"], &fake.env_for(&["GLM"]), None).await;
    assert_eq!(bad.code, 5, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("rejected the key from GLM_API_KEY (env) (401)"),
        "{}",
        bad.stderr
    );
    assert!(!bad.stderr.contains("test-key"));
    assert!(bad.stderr.lines().count() <= 2, "{}", bad.stderr);
    let none = exai(&["chat", "hi"], &HashMap::new(), None).await;
    assert_eq!(none.code, 4);
    assert_eq!(
        none.stderr.trim(),
        "exai: no provider configured: set GLM_API_KEY, KIMI_API_KEY or MINIMAX_API_KEY, or declare an OpenAI-compatible provider in exai.toml"
    );
    let help = exai(&["--help"], &HashMap::new(), None).await;
    assert!(
        help.stdout
            .contains("Exit codes (the same for exai, exai-ws and exai-stdio):")
            && help.stdout.contains("130  interrupted")
    );
}

#[tokio::test]
async fn doctor_says_what_is_wrong_line_by_line() {
    let Ok(good) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let Ok(bad) = FakeUpstream::start().await else {
        panic!("fake")
    };
    bad.require_key("another-key");
    let mut env = good.env_for(&["GLM"]);
    env.extend(bad.env_for(&["KIMI"]));
    env.insert("REDIS_URL".into(), format!("redis://127.0.0.1:{}/", free_port()));
    let run = exai(&["doctor"], &env, None).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let line = |prefix: &str| {
        run.stdout
            .lines()
            .find(|l| l.contains(prefix))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("config").starts_with("PASS"), "{}", run.stdout);
    let offline = exai(&["doctor", "--offline"], &env, None).await;
    let clock = offline
        .stdout
        .lines()
        .find(|l| l.contains("clock"))
        .unwrap_or_default()
        .to_string();
    assert!(
        clock.contains("Z (not compared: --offline)") && !clock.contains("+00:00:00"),
        "{clock}"
    );
    assert!(
        line("provider glm").starts_with("PASS") && line("provider glm").contains("GLM_API_KEY (env) accepted"),
        "{}",
        run.stdout
    );
    assert!(
        line("provider kimi").starts_with("FAIL")
            && line("provider kimi").contains("rejected the key from KIMI_API_KEY (env) (401)"),
        "{}",
        run.stdout
    );
    assert!(line("provider minimax").starts_with("SKIP") && line("provider minimax").contains("MINIMAX_API_KEY"));
    assert!(
        line("memory").starts_with("FAIL") && line("memory").contains("redis unreachable"),
        "{}",
        run.stdout
    );
    assert!(line("daemon port").starts_with("PASS"));
    assert!(line("clock").starts_with("PASS") && line("tls").starts_with("PASS"));
    let json = exai(&["doctor", "--json"], &env, None).await;
    let v: Value = serde_json::from_str(&json.stdout).unwrap_or_default();
    assert_eq!(v["ok"], false);
    let offline = exai(&["doctor", "--offline"], &good.env_for(&["GLM"]), None).await;
    assert_eq!(offline.code, 0, "{}", offline.stdout);
    assert_eq!(
        good.requests().iter().filter(|r| r.path == "/v1/models").count(),
        2,
        "offline made no call"
    );
}

#[tokio::test]
async fn doctor_tells_a_busy_port_from_a_healthy_daemon() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = squatter.local_addr().map(|a| a.port()).unwrap_or(0);
    let mut env = fake.env_for(&["GLM"]);
    env.insert("EXAI_WS_PORT".into(), port.to_string());
    let run = exai(&["doctor", "--offline"], &env, None).await;
    assert_eq!(run.code, 1);
    // The squatter is this test process: doctor names it.
    let holder = format!("(pid {}), not a healthy exai-ws", std::process::id());
    assert!(
        run.stdout.contains(&format!("127.0.0.1:{port} is held by ")) && run.stdout.contains(&holder),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn config_shows_every_value_with_its_source_and_redacts_keys() {
    let mut env = HashMap::new();
    env.insert("KIMI_API_KEY".to_string(), "sk-secret-kimi-0123456789".to_string());
    env.insert("EXAI_GLOBAL_MAX_INFLIGHT".to_string(), "12".to_string());
    let run = exai(&["config"], &env, None).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stdout.contains("sk-secret-kimi"), "the key never prints");
    assert!(
        run.stdout.contains("config file: none") && run.stdout.contains("looked for $EXAI_CONFIG, then exai.toml"),
        "{}",
        run.stdout
    );
    let key_line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("providers.kimi.api_key"))
        .unwrap_or_default();
    assert!(
        key_line.contains("[redacted") && key_line.trim_end().ends_with("env KIMI_API_KEY"),
        "{key_line}"
    );
    let limit = run
        .stdout
        .lines()
        .find(|l| l.starts_with("limits.global_max_inflight"))
        .unwrap_or_default();
    assert!(
        limit.contains("12") && limit.trim_end().ends_with("env EXAI_GLOBAL_MAX_INFLIGHT"),
        "{limit}"
    );
    let port = run
        .stdout
        .lines()
        .find(|l| l.starts_with("daemon.port"))
        .unwrap_or_default();
    assert!(port.trim_end().ends_with("env EXAI_WS_PORT"), "{port}");
    let json = exai(&["config", "--json"], &env, None).await;
    assert!(!json.stdout.contains("sk-secret-kimi"));
    let bad = exai(
        &["config"],
        &HashMap::from([("EXAI_GLOBAL_MAX_INFLIGHT".to_string(), "many".to_string())]),
        None,
    )
    .await;
    assert_eq!(bad.code, 3);
    assert!(bad.stderr.contains("limits.global_max_inflight") && bad.stderr.contains("env EXAI_GLOBAL_MAX_INFLIGHT"));
}

#[tokio::test]
async fn models_tools_call_usage_and_completions_work() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let env = fake.env_for(&["GLM"]);
    let models = exai(&["models"], &env, None).await;
    assert!(
        models
            .stdout
            .lines()
            .any(|l| l.starts_with("glm-4.6") && l.trim_end().ends_with("yes")),
        "{}",
        models.stdout
    );
    assert!(
        models
            .stdout
            .lines()
            .any(|l| l.starts_with("MiniMax-M2") && l.trim_end().ends_with("no"))
    );
    let tools = exai(&["tools"], &env, None).await;
    assert_eq!(tools.stdout.lines().count(), 17);
    let call = exai(&["call", "chat", "--args", r#"{"prompt": "via a tool"}"#], &env, None).await;
    assert_eq!(call.code, 0, "{}", call.stderr);
    assert!(
        call.stdout.starts_with("echo (2 messages): via a tool"),
        "{}",
        call.stdout
    );
    let failing = exai(
        &["call", "chat", "--args", r#"{"prompt": "x", "files": ["/nope"]}"#],
        &env,
        None,
    )
    .await;
    assert_eq!(failing.code, 1);
    assert!(failing.stderr.contains("/nope"));
    let usage = exai(&["usage"], &env, None).await;
    assert!(usage.stdout.contains("today (UTC):"));
    let bash = exai(&["completions", "bash"], &env, None).await;
    assert!(
        bash.stdout.contains("_exai()"),
        "{}",
        &bash.stdout[..bash.stdout.len().min(200)]
    );
}

#[tokio::test]
async fn ctrl_c_during_a_stream_cancels_the_request_and_exits_130() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    fake.push(FakeReply::hang());
    let child = Command::new(env!("CARGO_BIN_EXE_exai"))
        .args(["chat", "hang on"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .envs(fake.env_for(&["GLM"]))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn exai: {e}"));
    assert!(
        fake.wait_until(Duration::from_secs(10), |f| f.requests().len() == 1)
            .await
    );
    let pid = child.id().unwrap_or_default().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .is_ok_and(|s| s.success())
    );
    let out = tokio::time::timeout(Duration::from_secs(5), child.wait_with_output()).await;
    let out = out
        .unwrap_or_else(|_| panic!("exai did not exit"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted"));
    assert!(
        fake.wait_until(Duration::from_secs(5), |f| f.cut_short() == 1).await,
        "the upstream request was cancelled"
    );
}

#[tokio::test]
async fn without_redis_conversations_and_usage_outlive_each_invocation_in_sqlite() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let mut env = fake.env_for(&["GLM"]);
    env.insert("EXAI_STATE_DIR".into(), state_dir("sqlite"));
    let first = exai(&["chat", "--json", "first"], &env, None).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    let reply: Value = serde_json::from_str(&first.stdout).unwrap_or_default();
    let id = reply["continuation_id"].as_str().unwrap_or_default().to_string();
    let second = exai(&["chat", "--continue", &id, "--no-stream", "second"], &env, None).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        second.stdout.starts_with("echo (3 messages): second"),
        "{}",
        second.stdout
    );

    // Eight processes write turns to the one conversation at once; none is lost.
    let writers: Vec<_> = (0..8)
        .map(|i| {
            let (env, id) = (env.clone(), id.clone());
            tokio::spawn(async move {
                let prompt = format!("writer {i}");
                exai(&["chat", "--continue", &id, "--no-stream", &prompt], &env, None).await
            })
        })
        .collect();
    for w in writers {
        let run = w.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let thread = exai(&["thread", &id, "--json"], &env, None).await;
    let thread: Value = serde_json::from_str(&thread.stdout).unwrap_or_default();
    let turns = thread["turns"].as_array().cloned().unwrap_or_default();
    assert_eq!(turns.len(), 4 + 16, "{thread}");
    for i in 0..8 {
        let prompt = format!("writer {i}");
        assert!(turns.iter().any(|t| t["content"] == prompt.as_str()), "{prompt} kept");
    }

    let listed = exai(&["threads"], &env, None).await;
    assert!(
        listed.stdout.contains(&id) && listed.stdout.contains("20 turns"),
        "{}",
        listed.stdout
    );
    let usage = exai(&["usage", "--json"], &env, None).await;
    let usage: Value = serde_json::from_str(&usage.stdout).unwrap_or_default();
    assert_eq!(usage["backend"], "sqlite", "{usage}");
    let requests: u64 = usage["all_time"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["requests"].as_u64())
        .sum();
    assert_eq!(requests, 10, "every invocation's calls in one ledger: {usage}");
    // Which deployment answered: the one key configured the old way is `glm#1`.
    let by = exai(&["usage", "--by", "deployment", "--json"], &env, None).await;
    let by: Value = serde_json::from_str(&by.stdout).unwrap_or_default();
    let rows = by["all_time"].as_array().cloned().unwrap_or_default();
    let answered: u64 = rows.iter().filter_map(|r| r["requests"].as_u64()).sum();
    assert_eq!(answered, 10, "{by}");
    assert!(rows.iter().all(|r| r["deployment"] == "glm#1"), "{by}");
    let table = exai(&["usage", "--by", "deployment"], &env, None).await;
    assert!(
        table.stdout.lines().any(|l| l.trim_start().starts_with("glm#1")),
        "{}",
        table.stdout
    );
    let config = exai(&["config"], &env, None).await;
    assert!(
        config
            .stdout
            .lines()
            .any(|l| l.contains("memory.backend") && l.contains("sqlite")),
        "{}",
        config.stdout
    );
}

#[tokio::test]
async fn an_unusable_sqlite_file_is_named_and_the_call_still_works_in_memory() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let dir = state_dir("corrupt");
    let _ = std::fs::create_dir_all(&dir);
    let db = format!("{dir}/exai.db");
    let _ = std::fs::write(&db, vec![b'x'; 8192]);
    let mut env = fake.env_for(&["GLM"]);
    env.insert("EXAI_STATE_DIR".into(), dir);
    let run = exai(&["chat", "--no-stream", "still answered"], &env, None).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.starts_with("echo (1 messages): still answered"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains(&db) && run.stderr.contains("not a database"),
        "{}",
        run.stderr
    );
    let doctor = exai(&["doctor", "--offline"], &env, None).await;
    assert!(
        doctor.stdout.lines().any(|l| l.contains("memory") && l.contains(&db)),
        "{}",
        doctor.stdout
    );
}

#[tokio::test]
async fn a_read_only_sqlite_file_is_named_and_the_call_still_works_in_memory() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let dir = state_dir("read-only");
    let mut env = fake.env_for(&["GLM"]);
    env.insert("EXAI_STATE_DIR".into(), dir.clone());
    assert_eq!(
        exai(&["chat", "--no-stream", "made the file"], &env, None).await.code,
        0
    );
    let db = format!("{dir}/exai.db");
    // Read-only for whoever runs exai: root ignores file modes, so as root exai runs as nobody.
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let _ = std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o444));
    }
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555));
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let mut cmd = if root {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_exai"),
        ]);
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_exai"))
    };
    let home = std::env::temp_dir();
    let out = cmd
        .args(["chat", "--no-stream", "still answered"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home)
        .envs(&env)
        .current_dir(&home)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.starts_with("echo (1 messages): still answered"), "{stdout}");
    assert!(stderr.contains(&db) && stderr.contains("readonly"), "{stderr}");
}

#[tokio::test]
async fn an_expired_conversation_is_gone_from_the_sqlite_file() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let mut env = fake.env_for(&["GLM"]);
    env.insert("EXAI_STATE_DIR".into(), state_dir("ttl"));
    env.insert("EXAI_MEMORY_TTL_SECS".into(), "1".into());
    let first = exai(&["chat", "--json", "short-lived"], &env, None).await;
    let reply: Value = serde_json::from_str(&first.stdout).unwrap_or_default();
    let id = reply["continuation_id"].as_str().unwrap_or_default().to_string();
    assert!(exai(&["threads"], &env, None).await.stdout.contains(&id));
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let late = exai(&["chat", "--continue", &id, "--no-stream", "still there?"], &env, None).await;
    assert_ne!(late.code, 0);
    assert!(late.stderr.contains("not found"), "{}", late.stderr);
    assert!(
        !exai(&["threads"], &env, None).await.stdout.contains(&id),
        "purged from listings"
    );
}

#[tokio::test]
async fn a_closed_pipe_ends_the_output_quietly() {
    // The reader is gone before exai writes, as with `exai completions bash | head -0`.
    let mut child = Command::new(env!("CARGO_BIN_EXE_exai"))
        .args(["completions", "bash"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    drop(child.stdout.take());
    let out = child.wait_with_output().await.unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
}

#[tokio::test]
async fn keys_are_created_listed_updated_rotated_and_revoked_without_showing_a_secret_twice() {
    let dir = std::env::temp_dir().join(format!("exai-cli-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let env = HashMap::from([
        ("EXAI_STATE_DIR".to_string(), dir.display().to_string()),
        ("EXAI_ADMIN_TOKEN".to_string(), "admin-secret-value".to_string()),
        ("EXAI_WS_TOKEN".to_string(), "master-secret-value".to_string()),
    ]);
    let empty = exai(&["keys", "list"], &env, None).await;
    assert_eq!(empty.code, 0, "{}", empty.stderr);
    assert!(empty.stdout.contains("no keys"), "{}", empty.stdout);

    let created = exai(
        &[
            "keys",
            "create",
            "alice",
            "--budget-usd",
            "5",
            "--period",
            "week",
            "--rpm",
            "10",
            "--models",
            "glm-4.6,kimi",
            "--expires",
            "2027-01-01",
            "--json",
        ],
        &env,
        None,
    )
    .await;
    assert_eq!(created.code, 0, "{}", created.stderr);
    let created = json_of(&created);
    let secret = created["secret"].as_str().unwrap_or_default().to_string();
    assert!(secret.starts_with("exai-sk-") && secret.len() >= 40, "{created}");
    assert_eq!(
        (
            &created["name"],
            &created["rpm"],
            &created["period"],
            &created["budget_usd"],
            &created["expires"]
        ),
        (
            &json!("alice"),
            &json!(10),
            &json!("week"),
            &json!(5.0),
            &json!("2027-01-01")
        )
    );
    assert_eq!(created["models"], json!(["glm-4.6", "kimi"]));

    let again = exai(&["keys", "create", "alice"], &env, None).await;
    assert_eq!(again.code, 7, "{}", again.stderr);
    assert!(again.stderr.contains("exists"), "{}", again.stderr);
    let bad = exai(&["keys", "create", "no spaces"], &env, None).await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let bad_rpm = exai(&["keys", "update", "alice", "--rpm", "lots"], &env, None).await;
    assert_eq!(bad_rpm.code, 2, "{}", bad_rpm.stderr);

    for args in [
        &["keys", "list"][..],
        &["keys", "list", "--json"],
        &["keys", "show", "alice", "--json"],
        &["config"],
    ] {
        let run = exai(args, &env, None).await;
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        for secret in [
            secret.as_str(),
            &secret["exai-sk-".len()..],
            "admin-secret-value",
            "master-secret-value",
        ] {
            assert!(
                !run.stdout.contains(secret) && !run.stderr.contains(secret),
                "{args:?} shows a secret"
            );
        }
    }
    let listed = json_of(&exai(&["keys", "list", "--json"], &env, None).await);
    assert_eq!(listed[0]["name"], "alice");
    assert!(listed[0].get("secret").is_none());

    let updated = json_of(
        &exai(
            &["keys", "update", "alice", "--rpm", "none", "--tpm", "1000", "--json"],
            &env,
            None,
        )
        .await,
    );
    assert_eq!(
        (&updated["rpm"], &updated["tpm"], &updated["budget_usd"]),
        (&Value::Null, &json!(1000), &json!(5.0))
    );

    let rotated = json_of(&exai(&["keys", "rotate", "alice", "--json"], &env, None).await);
    let new_secret = rotated["secret"].as_str().unwrap_or_default();
    assert!(new_secret.starts_with("exai-sk-") && new_secret != secret);

    // A key's calls, made by a gateway on the same file, are in `exai usage --by key`.
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let mut gateway_env = fake.env_for(&["GLM"]);
    gateway_env.insert("EXAI_STATE_DIR".into(), dir.display().to_string());
    let config = exai_core::Config::from_parts(&gateway_env, None).unwrap_or_else(|e| panic!("{e}"));
    let gateway = exai_core::Gateway::new(config).await.unwrap_or_else(|e| panic!("{e}"));
    let caller = gateway
        .authenticate(Some(new_secret))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let session = gateway.open_session(exai_core::SessionOptions::new("test").caller(caller));
    fake.push(FakeReply::text("paid").with_usage(1000, 500));
    session
        .chat(exai_core::ChatRequest::new("hi"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    gateway.shutdown().await;
    let by_key = exai(&["usage", "--by", "key"], &env, None).await;
    assert_eq!(by_key.code, 0, "{}", by_key.stderr);
    assert!(
        by_key
            .stdout
            .lines()
            .any(|l| l.contains("alice") && l.contains("1 req") && l.contains("1000 in")),
        "{}",
        by_key.stdout
    );
    let one = json_of(&exai(&["usage", "--key", "alice", "--json"], &env, None).await);
    assert_eq!(one["all_time"][0]["model"], "glm-4.6", "{one}");
    assert_eq!(one["all_time"][0]["output_tokens"], 500, "{one}");
    let shown = json_of(&exai(&["keys", "show", "alice", "--json"], &env, None).await);
    assert!(shown["spent_usd"].as_f64().is_some_and(|s| s > 0.0), "{shown}");

    let revoked = exai(&["keys", "revoke", "alice"], &env, None).await;
    assert_eq!(revoked.code, 0, "{}", revoked.stderr);
    let shown = json_of(&exai(&["keys", "show", "alice", "--json"], &env, None).await);
    assert_eq!(shown["status"], "revoked");
    let missing = exai(&["keys", "show", "bob"], &env, None).await;
    assert_eq!(missing.code, 7, "{}", missing.stderr);
}

/// The mock, and exai pointed at it as its printed lines say: faults and tool calls on request,
/// and everything exai keeps in the scratch state directory it printed — none in HOME's.
#[tokio::test]
async fn mock_upstream_lets_exai_run_offline_with_faults_and_tool_calls_kept_out_of_the_real_history() {
    use tokio::io::AsyncBufReadExt;
    let port = free_port();
    // A HOME and a temporary directory of this test's own, so it can show which one was used.
    let (home, tmp) = (state_dir("mock-home"), state_dir("mock-tmp"));
    for dir in [&home, &tmp] {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{dir}: {e}"));
    }
    let mut mock = Command::new(env!("CARGO_BIN_EXE_exai"))
        .args(["mock-upstream", "--port", &port.to_string()])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut lines = tokio::io::BufReader::new(mock.stdout.take().unwrap_or_else(|| panic!("stdout"))).lines();
    let mut env = HashMap::new();
    let mut printed = Vec::new();
    while let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await {
        printed.push(line.clone());
        if let Some(pairs) = line.strip_prefix("export ") {
            for pair in pairs.split_whitespace() {
                if let Some((k, v)) = pair.split_once('=') {
                    env.insert(k.to_string(), v.to_string());
                }
            }
        }
        if line.starts_with("# Ctrl-C") {
            break;
        }
    }
    assert_eq!(
        env.get("GLM_BASE_URL"),
        Some(&format!("http://127.0.0.1:{port}/v1")),
        "{printed:?}"
    );
    assert!(printed.iter().any(|l| l.contains("[fault:429]")), "{printed:?}");
    assert!(printed.iter().any(|l| l.contains("[tool:NAME]")), "{printed:?}");
    let scratch = format!("{tmp}/exai-mock-{port}");
    assert_eq!(env.get("EXAI_STATE_DIR"), Some(&scratch), "{printed:?}");
    env.insert("HOME".into(), home.clone());

    let chat = exai(&["chat", "hello offline"], &env, None).await;
    assert_eq!(chat.code, 0, "{}", chat.stderr);
    assert!(chat.stdout.contains("hello offline"), "{}", chat.stdout);
    let threads = exai(&["threads"], &env, None).await;
    assert!(threads.stdout.contains("hello offline"), "{}", threads.stdout);
    assert!(std::path::Path::new(&scratch).join("exai.db").exists());
    let home_state = std::path::Path::new(&home).join(".local/state");
    assert!(!home_state.exists(), "nothing fake reaches the real history");
    let mut without_scratch = env.clone();
    without_scratch.remove("EXAI_STATE_DIR");
    let real = exai(&["threads"], &without_scratch, None).await;
    assert!(!real.stdout.contains("hello offline"), "{}", real.stdout);

    let failed = exai(&["chat", "break please [fault:500]"], &env, None).await;
    assert_eq!(failed.code, 6, "{}", failed.stderr);
    // Every attempt is named, not only the last: the model `auto` fell back twice.
    for attempt in [
        "3 attempts failed",
        "glm (glm-4.6): unavailable (500)",
        "kimi (",
        "minimax (MiniMax-M2): unavailable (500)",
    ] {
        assert!(failed.stderr.contains(attempt), "{attempt}: {}", failed.stderr);
    }
    // The Anthropic side, as Claude Code would reach it through exai-ws.
    let message: Value = reqwest::Client::new()
        .post(format!("{}/v1/messages", env["GLM_ANTHROPIC_BASE_URL"]))
        .json(&json!({"model": "glm-4.6", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(message["type"], "message", "{message}");
    // An SDK's tool round trip: the tool the prompt names is called.
    let called: Value = reqwest::Client::new()
        .post(format!("{}/chat/completions", env["GLM_BASE_URL"]))
        .json(&json!({"model": "glm-4.6", "messages": [{"role": "user", "content": "weather? [tool:get_weather]"}]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(
        called["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "get_weather",
        "{called}"
    );
    let _ = mock.kill().await;
}

/// On a terminal (a real pty, from util-linux `script`), `exai chat` spins with its message while
/// the model is silent, then clears it; the old default bar (`░░░ 0/0`) never shows.
#[tokio::test]
async fn chat_on_a_terminal_shows_a_spinner_with_its_message() {
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    fake.push(FakeReply::text("late answer").with_delay(Duration::from_millis(700)));
    let home = std::env::temp_dir().join(format!("exai-cli-pty-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&home);
    let command = format!("{} chat 'hello there'", env!("CARGO_BIN_EXE_exai"));
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new("script")
            .args(["--quiet", "--return", "--command", &command, "/dev/null"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", &home)
            .env("TERM", "xterm")
            .envs(fake.env_for(&["GLM"]))
            .current_dir(&home)
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("script did not finish"))
    .unwrap_or_else(|e| panic!("script (util-linux): {e}"));
    let screen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{screen}");
    assert!(screen.contains("waiting for the model"), "{screen}");
    assert!(!screen.contains('░') && !screen.contains("0/0"), "{screen}");
    assert!(screen.contains("late answer"), "{screen}");
}

/// `exai chat` with `OTEL_EXPORTER_OTLP_ENDPOINT`: one SERVER span for the chat and a CLIENT span
/// for its provider attempt, sent before the command exits.
#[tokio::test]
async fn chat_exports_its_trace_before_exiting() {
    use exai_core::testing::otlp::{Receiver, SpanKind, attr};
    let Ok(fake) = FakeUpstream::start().await else {
        panic!("fake")
    };
    let receiver = Receiver::start().await.unwrap_or_else(|e| panic!("{e}"));
    fake.push(FakeReply::text("traced from the shell"));
    let mut env = fake.env_for(&["GLM"]);
    env.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), receiver.endpoint().to_string());
    env.insert("OTEL_SERVICE_NAME".into(), "my-shell".into());
    let run = exai(&["chat", "hello", "--model", "glm-4.6"], &env, None).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Sent before exit: no waiting here.
    let spans = receiver.spans();
    assert!(spans.iter().all(|(service, _)| service == "my-shell"), "{spans:#?}");
    let server = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(server.name, "chat glm-4.6");
    assert_eq!(attr(server, "gen_ai.provider.name").as_deref(), Some("glm"));
    let client = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.kind == SpanKind::Client as i32)
        .unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(client.parent_span_id, server.span_id);
}
