//! List-valued settings through the real `exai`: a tool name that does not exist in
//! `EXAI_TOOLS` or `EXAI_DISABLED_TOOLS` exits 3 naming it and the valid ones, and `exai doctor`
//! fails its config check on it.

mod common;

use std::collections::HashMap;

use common::{exai, state_dir};

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env = HashMap::from([("EXAI_STATE_DIR".to_string(), state_dir("settings"))]);
    env.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

#[tokio::test]
async fn an_unknown_tool_in_a_list_setting_exits_3_naming_it_and_the_valid_ones() {
    for (name, value, unknown) in [
        ("EXAI_TOOLS", "lite", "'lite'"),
        ("EXAI_TOOLS", "chat,bogus", "'bogus'"),
        ("EXAI_DISABLED_TOOLS", "nosuch", "'nosuch'"),
    ] {
        let run = exai(&["tools"], &env(&[(name, value)]), None).await;
        assert_eq!(run.code, 3, "{name}={value}: {}", run.stderr);
        assert!(
            run.stderr.contains(name) && run.stderr.contains(unknown) && run.stderr.contains("codereview"),
            "{name}={value}: {}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "no tool list: {}", run.stdout);
    }
    let lean = exai(&["tools"], &env(&[("EXAI_TOOLS", "lean")]), None).await;
    assert_eq!(lean.code, 0, "{}", lean.stderr);
    assert!(lean.stdout.contains("codereview"), "{}", lean.stdout);
}

#[tokio::test]
async fn doctor_fails_its_config_check_on_an_unknown_tool() {
    let run = exai(
        &["doctor", "--offline", "--json"],
        &env(&[("EXAI_TOOLS", "lite")]),
        None,
    )
    .await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let checks: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_default();
    let config = checks["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "config")
        .cloned()
        .unwrap_or_default();
    assert_eq!(config["verdict"], "fail", "{}", run.stdout);
    assert!(
        config["detail"].as_str().is_some_and(|d| d.contains("'lite'")),
        "{config}"
    );
}
