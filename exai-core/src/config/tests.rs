//! Loading: layering, sources, validation messages.

use std::collections::HashMap;
use std::path::Path;

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn load(pairs: &[(&str, &str)], toml: Option<&str>) -> Result<Config, ConfigError> {
    Config::from_parts(&env(pairs), toml.map(|t| (Path::new("exai.toml"), t)))
}

fn entry<'a>(c: &'a Config, key: &str) -> Option<&'a ConfigEntry> {
    c.entries().iter().find(|e| e.key == key)
}

#[test]
fn defaults_match_the_documented_values() -> Result<(), ConfigError> {
    let c = load(&[], None)?;
    assert_eq!(c.default_model, "auto");
    assert_eq!((c.limits.global_max_inflight, c.limits.session_max_inflight), (24, 8));
    let inflight: Vec<_> = c.providers.iter().map(|p| (p.name.as_str(), p.max_inflight)).collect();
    assert_eq!(inflight, [("glm", 4), ("kimi", 6), ("minimax", 4)]);
    assert_eq!(
        c.provider("glm").map(|p| p.base_url.as_str()),
        Some("https://api.z.ai/api/paas/v4")
    );
    assert_eq!(
        c.provider("kimi").map(|p| p.base_url.as_str()),
        Some("https://api.moonshot.ai/v1")
    );
    assert_eq!(
        c.provider("minimax").map(|p| p.base_url.as_str()),
        Some("https://api.minimax.io/v1")
    );
    assert!(c.ready_providers().next().is_none());
    assert!(c.memory.redis_url.is_none());
    Ok(())
}

#[test]
fn the_limits_are_shared_wherever_there_is_a_store_to_share_them() -> Result<(), ConfigError> {
    let shared = |pairs: &[(&str, &str)]| load(pairs, None).map(|c| (c.memory.backend, c.limits.shared));
    assert_eq!(
        shared(&[])?,
        (MemoryBackend::Sqlite, true),
        "the state file, by default"
    );
    assert_eq!(
        shared(&[("REDIS_URL", "redis://127.0.0.1:1/")])?,
        (MemoryBackend::Redis, true)
    );
    assert_eq!(shared(&[("EXAI_MEMORY", "memory")])?, (MemoryBackend::Memory, false));
    assert!(!shared(&[("EXAI_SHARED_LIMITS", "false")])?.1, "turned off");
    let refused = load(&[("EXAI_MEMORY", "memory"), ("EXAI_SHARED_LIMITS", "true")], None)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        refused.contains("EXAI_SHARED_LIMITS") && refused.contains("memory.backend = sqlite"),
        "{refused}"
    );
    Ok(())
}

#[test]
fn env_overlays_the_file_and_every_value_knows_its_source() -> Result<(), ConfigError> {
    let toml = r#"
        default_model = "kimi"
        [limits]
        global_max_inflight = 10
        session_max_inflight = 3
        [providers.glm]
        rpm = 30
    "#;
    let c = load(
        &[
            ("EXAI_GLOBAL_MAX_INFLIGHT", "12"),
            ("ZHIPUAI_API_KEY", "zk-secret-value"),
        ],
        Some(toml),
    )?;
    assert_eq!((c.limits.global_max_inflight, c.limits.session_max_inflight), (12, 3));
    assert_eq!(
        entry(&c, "limits.global_max_inflight")
            .map(|e| e.source.to_string())
            .as_deref(),
        Some("env EXAI_GLOBAL_MAX_INFLIGHT")
    );
    assert_eq!(
        entry(&c, "limits.session_max_inflight").map(|e| e.source.clone()),
        Some(Source::File)
    );
    assert_eq!(
        entry(&c, "limits.queue_timeout_ms").map(|e| e.source.clone()),
        Some(Source::Default)
    );
    assert_eq!(c.default_model, "kimi");
    let glm = c.provider("glm").ok_or_else(|| ConfigError::Read {
        path: "".into(),
        message: "no glm".into(),
    })?;
    assert_eq!(
        (glm.rpm, glm.key_source.as_deref()),
        (Some(30), Some("ZHIPUAI_API_KEY (env)"))
    );
    assert!(glm.is_ready());
    let key = entry(&c, "providers.glm.api_key").cloned();
    assert!(
        key.as_ref()
            .is_some_and(|e| e.secret && e.source == Source::Env("ZHIPUAI_API_KEY".into()))
    );
    let printed = format!("{:?} {:?}", c.entries(), c);
    assert!(!printed.contains("zk-secret-value"), "secrets never print");
    Ok(())
}

#[test]
fn the_primary_key_variable_wins_over_its_alias() -> Result<(), ConfigError> {
    let c = load(
        &[
            ("KIMI_API_KEY", "a"),
            ("MOONSHOT_API_KEY", "b"),
            ("MINIMAX_M2_KEY", "c"),
        ],
        None,
    )?;
    assert_eq!(
        c.provider("kimi").and_then(|p| p.key_source.clone()).as_deref(),
        Some("KIMI_API_KEY (env)")
    );
    assert_eq!(
        c.provider("minimax").and_then(|p| p.key_source.clone()).as_deref(),
        Some("MINIMAX_M2_KEY (env)")
    );
    Ok(())
}

#[test]
fn invalid_values_name_the_key_and_where_they_came_from() {
    let msg = |r: Result<Config, ConfigError>| r.err().map(|e| e.to_string()).unwrap_or_default();
    let bad_env = msg(load(&[("EXAI_SESSION_MAX_INFLIGHT", "eight")], None));
    assert!(
        bad_env.contains("limits.session_max_inflight")
            && bad_env.contains("env EXAI_SESSION_MAX_INFLIGHT")
            && bad_env.contains("eight"),
        "{bad_env}"
    );
    let typo = msg(load(&[], Some("[limits]\nglobal_max_inflght = 3")));
    assert!(
        typo.contains("exai.toml") && typo.contains("global_max_inflght"),
        "{typo}"
    );
    let zero = msg(load(&[("EXAI_GLOBAL_MAX_INFLIGHT", "0")], None));
    assert_eq!(
        zero,
        "invalid configuration: limits.global_max_inflight (from env EXAI_GLOBAL_MAX_INFLIGHT): must be at least 1"
    );
    let zero_in_file = msg(load(&[], Some("[memory]\nmax_turns = 0")));
    assert_eq!(
        zero_in_file,
        "invalid configuration: memory.max_turns (from file): must be at least 1"
    );
    let zero_rpm = msg(load(&[("GLM_RPM", "0")], None));
    assert!(zero_rpm.contains("providers.glm.rpm (from env GLM_RPM)"), "{zero_rpm}");
    let no_url = msg(load(&[], Some("[providers.ollama]\nkind = \"openai_compat\"")));
    assert!(
        no_url.contains("providers.ollama.base_url") && no_url.contains("OLLAMA_BASE_URL"),
        "{no_url}"
    );
    for url in ["ftp://host/v1", "http://", "http://bad host/v1"] {
        let bad_url = msg(load(&[("GLM_BASE_URL", url)], None));
        assert!(
            bad_url.contains("providers.glm.base_url")
                && bad_url.contains("env GLM_BASE_URL")
                && bad_url.contains("not an http(s) URL"),
            "{url}: {bad_url}"
        );
    }
    for threads in ["many", "0"] {
        let bad_threads = msg(load(&[("EXAI_WS_THREADS", threads)], None));
        assert!(bad_threads.contains("daemon.threads"), "{threads}: {bad_threads}");
    }
    let bad_kind = msg(load(
        &[],
        Some("[providers.x]\nkind = \"claude\"\nbase_url = \"http://h\""),
    ));
    assert!(
        bad_kind.contains("providers.x.kind") && bad_kind.contains("openai_compat"),
        "{bad_kind}"
    );
    let bad_fallback = msg(load(&[("EXAI_FALLBACK", "glm,openai")], None));
    assert!(
        bad_fallback.contains("routing.fallback") && bad_fallback.contains("'openai'"),
        "{bad_fallback}"
    );
}

#[test]
fn every_list_of_tool_names_is_checked_and_names_the_unknown_one_and_the_valid_ones() {
    let msg = |r: Result<Config, ConfigError>| r.err().map(|e| e.to_string()).unwrap_or_default();
    for (pairs, file, key, unknown) in [
        (
            &[("EXAI_TOOLS", "lite")][..],
            None,
            "tools.profile (from env EXAI_TOOLS)",
            "'lite'",
        ),
        (&[("EXAI_TOOLS", "chat,bogus")], None, "tools.profile", "'bogus'"),
        (
            &[("EXAI_DISABLED_TOOLS", "nosuch")],
            None,
            "tools.disabled (from env EXAI_DISABLED_TOOLS)",
            "'nosuch'",
        ),
        (
            &[],
            Some("[tools]\ndisabled = [\"chat\", \"chatt\"]"),
            "tools.disabled (from file)",
            "'chatt'",
        ),
        (&[], Some("[tools]\nprofile = \"leen\""), "tools.profile", "'leen'"),
    ] {
        let error = msg(load(pairs, file));
        assert!(
            error.contains(key) && error.contains(unknown),
            "{pairs:?} {file:?}: {error}"
        );
        assert!(
            error.contains("codereview") && error.contains("listmodels"),
            "the valid tools: {error}"
        );
    }
    assert!(
        msg(load(&[("EXAI_TOOLS", "lite")], None)).contains("lean"),
        "and the profiles"
    );
    for ok in ["lean", "standard", "all", "chat, codereview", "chat,"] {
        let config = load(&[("EXAI_TOOLS", ok), ("EXAI_DISABLED_TOOLS", "status,version")], None);
        assert!(config.is_ok(), "{ok}: {:?}", config.err());
    }
}

#[test]
fn custom_providers_take_their_settings_from_prefixed_variables() -> Result<(), ConfigError> {
    let toml = "[providers.open-router]\nbase_url = \"https://openrouter.ai/api/v1/\"\ndefault_model = \"x/y\"";
    let c = load(
        &[("OPEN_ROUTER_API_KEY", "k"), ("OPEN_ROUTER_MAX_INFLIGHT", "2")],
        Some(toml),
    )?;
    let p = c.provider("open-router").ok_or_else(|| ConfigError::Read {
        path: "".into(),
        message: "missing".into(),
    })?;
    assert_eq!(
        (p.kind, p.max_inflight, p.base_url.as_str()),
        (ProviderKind::OpenaiCompat, 2, "https://openrouter.ai/api/v1")
    );
    assert_eq!(p.key_source.as_deref(), Some("OPEN_ROUTER_API_KEY (env)"));
    assert_eq!(c.routing.fallback, ["glm", "kimi", "minimax", "open-router"]);
    Ok(())
}

#[test]
fn exai_config_must_point_at_a_file_that_exists() {
    let err = Config::load(&env(&[("EXAI_CONFIG", "/nonexistent/exai.toml")]))
        .err()
        .map(|e| e.to_string());
    assert!(err.is_some_and(|m| m.contains("/nonexistent/exai.toml") && m.contains("EXAI_CONFIG")));
}

#[test]
fn a_config_is_built_in_code_with_its_sources_kept() -> Result<(), ConfigError> {
    let c = Config::builder()
        .env(env(&[("EXAI_SESSION_MAX_INFLIGHT", "5")]))
        .without_file()
        .set("limits.global_max_inflight", 4)
        .set("providers.glm.api_key", "sk-from-code")
        .set("providers.glm.base_url", "http://127.0.0.1:9/v1")
        .build()?;
    assert_eq!((c.limits.global_max_inflight, c.limits.session_max_inflight), (4, 5));
    assert_eq!(
        entry(&c, "limits.global_max_inflight").map(|e| e.source.clone()),
        Some(Source::Code)
    );
    assert_eq!(
        entry(&c, "limits.session_max_inflight")
            .map(|e| e.source.to_string())
            .as_deref(),
        Some("env EXAI_SESSION_MAX_INFLIGHT")
    );
    let glm = c.provider("glm").map(|p| (p.is_ready(), p.base_url.clone()));
    assert_eq!(glm, Some((true, "http://127.0.0.1:9/v1".to_string())));
    assert!(
        !format!("{:?}", c.entries()).contains("sk-from-code"),
        "the key is redacted"
    );
    let unknown = Config::builder()
        .without_file()
        .set("limits.global_max_inflght", 4)
        .build();
    assert_eq!(
        unknown.err().map(|e| e.to_string()).as_deref(),
        Some(
            "invalid configuration: limits.global_max_inflght (from code): no such setting (see `exai config` for every key)"
        )
    );
    let defaults = Config::default();
    assert_eq!(
        (defaults.default_model.as_str(), defaults.limits.requests_per_minute),
        ("auto", 6000)
    );
    Ok(())
}

#[test]
fn every_setting_lives_in_the_config_and_is_printed() -> Result<(), ConfigError> {
    let c = load(
        &[
            ("EXAI_LOG_FORMAT", "json"),
            ("EXAI_STATE_DIR", "/tmp/exai-state"),
            ("EXAI_WS_CALL_TIMEOUT_SECS", "9"),
        ],
        None,
    )?;
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.state_dir, std::path::PathBuf::from("/tmp/exai-state"));
    assert_eq!(
        c.limits.call_timeout,
        std::time::Duration::from_secs(9),
        "the old name still works"
    );
    for (key, source) in [
        ("log.format", "env EXAI_LOG_FORMAT"),
        ("state_dir", "env EXAI_STATE_DIR"),
        ("limits.call_timeout_secs", "env EXAI_WS_CALL_TIMEOUT_SECS"),
        ("limits.requests_per_minute", "default"),
        ("daemon.max_body_bytes", "default"),
    ] {
        assert_eq!(
            entry(&c, key).map(|e| e.source.to_string()).as_deref(),
            Some(source),
            "{key}"
        );
    }
    let bad = load(&[("EXAI_LOG_FORMAT", "yaml")], None)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        bad.contains("log.format (from env EXAI_LOG_FORMAT)") && bad.contains("text or json"),
        "{bad}"
    );
    let file = load(
        &[],
        Some("state_dir = \"/srv/exai\"\n[log]\nformat = \"json\"\n[limits]\nrequests_per_minute = 60"),
    )?;
    assert_eq!(
        (file.log_format, file.limits.requests_per_minute),
        (LogFormat::Json, 60)
    );
    assert_eq!(file.state_dir, std::path::PathBuf::from("/srv/exai"));
    Ok(())
}

#[test]
fn the_example_config_file_loads_and_says_what_it_sets() -> Result<(), ConfigError> {
    let text = include_str!("../../../exai.toml.example");
    let c = load(&[], Some(text))?;
    assert_eq!(c.routing.fallback, ["glm", "kimi", "minimax"]);
    let local = c
        .provider("local")
        .map(|p| (p.base_url.clone(), p.default_model.clone()));
    assert_eq!(
        local,
        Some(("http://127.0.0.1:11434/v1".to_string(), "llama3.1".to_string()))
    );
    assert_eq!(c.anthropic.map_model("claude-haiku-4-5"), Some("glm-4.5-air"));
    assert_eq!(c.anthropic.map_model("claude-opus-4"), Some("glm-4.6"));
    assert!(!c.otel_content);
    assert_eq!(
        entry(&c, "log.otel_content").map(|e| e.source.clone()),
        Some(Source::File)
    );
    assert_eq!(
        entry(&c, "limits.global_max_inflight").map(|e| e.source.clone()),
        Some(Source::File)
    );
    Ok(())
}

#[test]
fn every_declared_key_is_resolved_and_printed() {
    let c = Config::default();
    let mut printed: Vec<&str> = c
        .entries()
        .iter()
        .map(|e| e.key.as_str())
        .filter(|k| !k.starts_with("providers.") && !k.starts_with("aliases."))
        .collect();
    let mut declared = keys::ALL.to_vec();
    printed.sort_unstable();
    declared.sort_unstable();
    assert_eq!(printed, declared);
}

#[test]
fn the_file_takes_only_declared_keys_and_names_the_one_it_refuses() {
    let msg = |toml: &str| load(&[], Some(toml)).err().map(|e| e.to_string()).unwrap_or_default();
    for (toml, named) in [
        ("defualt_model = \"kimi\"", "`defualt_model`"),
        ("[limts]\nglobal_max_inflight = 3", "`limts`"),
        ("[anthropic]\nmodel_mapp = {}", "`anthropic.model_mapp`"),
        ("\"limits.shared\" = true", "`limits.shared`"),
        ("limits = 3", "`limits` is a table"),
        ("[providers.glm]\nbse_url = \"http://h\"", "bse_url"),
    ] {
        let err = msg(toml);
        assert!(err.contains("exai.toml") && err.contains(named), "{toml}: {err}");
    }
    let typo = msg("[limits]\nglobal_max_inflght = 3");
    assert!(
        typo.contains("[limits] takes global_max_inflight, session_max_inflight"),
        "{typo}"
    );
}

#[test]
fn a_file_value_is_read_by_its_key_and_a_wrong_one_named_with_the_file() -> Result<(), ConfigError> {
    let toml = r#"
        [limits]
        global_max_inflight = "10"
        shared = false
        [routing]
        fallback = ["kimi", "glm"]
        [tools]
        disabled = ["precommit"]
        [daemon]
        token = "file-token"
        threads = 3
    "#;
    let c = load(&[], Some(toml))?;
    assert_eq!(
        (c.limits.global_max_inflight, c.limits.shared, c.daemon.threads),
        (10, false, 3)
    );
    assert_eq!(
        (c.routing.fallback.as_slice(), c.tools.disabled.as_slice()),
        (&["kimi".to_string(), "glm".into()][..], &["precommit".to_string()][..])
    );
    assert_eq!(c.daemon.token.as_ref().map(Secret::expose), Some("file-token"));
    for key in [
        "limits.shared",
        "routing.fallback",
        "tools.disabled",
        "daemon.token",
        "daemon.threads",
    ] {
        assert_eq!(entry(&c, key).map(|e| e.source.clone()), Some(Source::File), "{key}");
    }
    let msg =
        |pairs: &[(&str, &str)], toml: &str| load(pairs, Some(toml)).err().map(|e| e.to_string()).unwrap_or_default();
    for (toml, wrong) in [
        (
            "[limits]\nglobal_max_inflight = \"ten\"",
            "limits.global_max_inflight: cannot parse 'ten'",
        ),
        (
            "[limits]\nglobal_max_inflight = 2.0",
            "limits.global_max_inflight: cannot parse '2.0'",
        ),
        (
            "[limits.global_max_inflight]\nx = 1",
            "limits.global_max_inflight: expected a string, number or boolean, found table",
        ),
        (
            "[routing]\nfallback = \"glm\"",
            "routing.fallback: expected a list, found string",
        ),
        (
            "[anthropic]\nmodel_map = [\"x\"]",
            "anthropic.model_map: expected a table, found array",
        ),
    ] {
        let err = msg(&[], toml);
        let expected = format!("config file exai.toml is not valid: {wrong}");
        assert!(err.starts_with(&expected), "{toml}: {err}");
    }
    let under_env = msg(
        &[("EXAI_GLOBAL_MAX_INFLIGHT", "3")],
        "[limits]\nglobal_max_inflight = \"ten\"",
    );
    assert!(
        under_env.contains("'ten'"),
        "a bad file value fails even when env sets the key: {under_env}"
    );
    Ok(())
}

#[test]
fn a_key_set_in_code_must_be_declared() {
    for key in [
        "aliases.fast",
        "limits",
        "providers.nope.base_url",
        "providers.glm.bse_url",
    ] {
        let err = Config::builder()
            .without_file()
            .set(key, "x")
            .build()
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err,
            Some(format!(
                "invalid configuration: {key} (from code): no such setting (see `exai config` for every key)"
            ))
        );
    }
}

proptest::proptest! {
    /// The config file parser on arbitrary text, and on TOML-shaped lines of known and unknown
    /// keys with any value: an answer or a `ConfigError`, never a panic (`scripts/fuzz.sh` runs
    /// it long).
    #[test]
    fn arbitrary_config_files_never_panic(
        text in "[ -~\n]{0,200}",
        section in proptest::sample::select(vec!["", "[limits]\n", "[memory]\n", "[providers.glm]\n", "[tools]\n", "[anthropic.model_map]\n"]),
        key in "[a-z_]{1,24}",
        value in proptest::sample::select(vec!["1", "-1", "0", "\"x\"", "true", "[1, \"a\"]", "{a = 1}", "1.5", "\"\""]),
    ) {
        let _ = load(&[], Some(&text));
        let _ = load(&[], Some(&format!("{section}{key} = {value}\n")));
    }
}

#[test]
fn one_key_the_old_way_is_one_deployment_as_before() -> Result<(), ConfigError> {
    let c = load(&[("GLM_API_KEY", "sk-one")], None)?;
    let glm = c.provider("glm").ok_or_else(|| ConfigError::Parse {
        path: "t".into(),
        message: "no glm".into(),
    })?;
    assert_eq!(glm.deployments.len(), 1);
    let d = &glm.deployments[0];
    assert_eq!(
        (d.label.as_str(), d.base_url.as_str()),
        ("glm#1", glm.base_url.as_str())
    );
    assert_eq!(d.key_source.as_deref(), Some("GLM_API_KEY (env)"));
    assert_eq!((glm.max_inflight, glm.strategy), (4, Strategy::Weighted));
    Ok(())
}

#[test]
fn key_and_url_lists_make_one_deployment_each_and_scale_the_providers_cap() -> Result<(), ConfigError> {
    let c = load(
        &[
            ("GLM_API_KEYS", "k1, k2,k3"),
            ("GLM_BASE_URLS", "http://a/v4,http://b/v4,http://c/v4"),
            ("GLM_RPM", "60"),
            ("GLM_STRATEGY", "least-busy"),
        ],
        None,
    )?;
    let glm = c.provider("glm").cloned().unwrap_or_else(|| panic!("glm"));
    let labels: Vec<_> = glm.deployments.iter().map(|d| d.label.as_str()).collect();
    assert_eq!(labels, ["glm#1", "glm#2", "glm#3"]);
    let urls: Vec<_> = glm.deployments.iter().map(|d| d.base_url.as_str()).collect();
    assert_eq!(urls, ["http://a/v4", "http://b/v4", "http://c/v4"]);
    assert!(glm.deployments.iter().all(|d| d.rpm == Some(60)));
    assert_eq!(glm.deployments[1].key_source.as_deref(), Some("GLM_API_KEYS[2] (env)"));
    assert_eq!((glm.max_inflight, glm.strategy), (12, Strategy::LeastBusy));
    assert!(glm.is_ready());
    // No key is printed, in the entries or in the debug output.
    let printed = format!("{:?} {:?}", c.entries(), glm);
    assert!(!printed.contains("\"k2\"") && !printed.contains("k1, k2"), "{printed}");
    // One URL for several keys, and mismatched lists.
    let c = load(&[("GLM_API_KEYS", "k1,k2"), ("GLM_BASE_URLS", "http://a/v4")], None)?;
    assert!(
        c.provider("glm")
            .is_some_and(|p| p.deployments.iter().all(|d| d.base_url == "http://a/v4"))
    );
    let err = load(
        &[
            ("GLM_API_KEYS", "k1,k2"),
            ("GLM_BASE_URLS", "http://a,http://b,http://c"),
        ],
        None,
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("GLM_API_KEYS has 2 keys"), "{err}");
    Ok(())
}

#[test]
fn deployment_tables_inherit_what_they_leave_out() -> Result<(), ConfigError> {
    let toml = r#"
[providers.glm]
rpm = 30

[[providers.glm.deployments]]
name = "zai"
api_key_env = "KEY_ZAI"
weight = 3

[[providers.glm.deployments]]
base_url = "https://open.bigmodel.cn/api/paas/v4"
max_inflight = 2
tpm = 1000
"#;
    let c = load(&[("KEY_ZAI", "sk-zai"), ("GLM_API_KEY", "sk-main")], Some(toml))?;
    let glm = c.provider("glm").cloned().unwrap_or_else(|| panic!("glm"));
    let [zai, second] = &glm.deployments[..] else {
        panic!("{:?}", glm.deployments)
    };
    assert_eq!((zai.label.as_str(), zai.weight, zai.rpm), ("glm#zai", 3, Some(30)));
    assert_eq!(zai.base_url, "https://api.z.ai/api/paas/v4");
    assert_eq!(zai.api_key.as_ref().map(|k| k.expose()), Some("sk-zai"));
    assert_eq!(second.label, "glm#2");
    assert_eq!(second.api_key.as_ref().map(|k| k.expose()), Some("sk-main"));
    assert_eq!((second.max_inflight, second.tpm), (Some(2), Some(1000)));
    // A key variable that is not set, an unknown field, a bad strategy: refused by name.
    let missing = load(&[], Some(toml)).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(missing.contains("KEY_ZAI is not set"), "{missing}");
    let unknown = load(&[], Some("[[providers.glm.deployments]]\nurl = \"x\"\n"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(unknown.contains("url"), "{unknown}");
    let bad = load(&[], Some("[providers.glm]\nstrategy = \"fastest\"\n"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(bad.contains("least-busy"), "{bad}");
    // A name is part of the label every report uses, the ledger's Redis fields included.
    let named = load(&[], Some("[[providers.glm.deployments]]\nname = \"eu|west\"\n"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(named.contains("providers.glm.deployments.eu|west.name"), "{named}");
    Ok(())
}

#[test]
fn an_alias_over_several_models_keeps_its_models_and_strategy() -> Result<(), ConfigError> {
    let toml = "[aliases]\nfast = \"glm-4.5-air\"\ncoder = { models = [\"glm-4.6\", \"kimi-k2-0905-preview\"], strategy = \"latency\" }\n";
    let c = load(&[], Some(toml))?;
    assert_eq!(c.aliases.get("fast").map(String::as_str), Some("glm-4.5-air"));
    let coder = c.groups.get("coder").map(|g| (g.models.clone(), g.strategy));
    assert_eq!(
        coder,
        Some((
            vec!["glm-4.6".to_string(), "kimi-k2-0905-preview".to_string()],
            Strategy::Latency
        ))
    );
    let empty = load(&[], Some("[aliases]\nx = { models = [] }\n"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(empty.contains("aliases.x.models"), "{empty}");
    Ok(())
}
