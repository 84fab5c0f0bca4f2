//! `exai keys delete` and `exai keys allow-keyless`: a deleted key is gone and its name free,
//! deleting the last key leaves keys required, and the way back to a keyless daemon is refused
//! while any key is left.

mod common;

use std::collections::HashMap;

use common::{exai, json_of, state_dir};

#[tokio::test]
async fn deleting_keys_keeps_them_required_until_allow_keyless_with_none_left() {
    let env = HashMap::from([("EXAI_STATE_DIR".to_string(), state_dir("keys-delete"))]);
    let run = |args: &'static [&'static str]| exai(args, &env, None);

    assert_eq!(run(&["keys", "create", "alice"]).await.code, 0);
    assert_eq!(run(&["keys", "create", "bob"]).await.code, 0);

    let deleted = run(&["keys", "delete", "alice", "--json"]).await;
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    assert_eq!(json_of(&deleted)["deleted"], "alice");
    let missing = run(&["keys", "delete", "alice"]).await;
    assert_eq!(missing.code, 7, "{}", missing.stderr);
    assert!(missing.stderr.contains("exai keys list"), "{}", missing.stderr);

    let left = run(&["keys", "allow-keyless"]).await;
    assert_ne!(left.code, 0, "refused while bob is left");
    assert!(
        left.stderr.contains("bob") && left.stderr.contains("exai keys delete"),
        "{}",
        left.stderr
    );

    assert_eq!(run(&["keys", "delete", "bob"]).await.code, 0);
    let list = run(&["keys", "list"]).await;
    assert!(list.stdout.contains("keys are required"), "{}", list.stdout);
    assert!(list.stdout.contains("allow-keyless"), "{}", list.stdout);

    let open = run(&["keys", "allow-keyless", "--json"]).await;
    assert_eq!(open.code, 0, "{}", open.stderr);
    assert_eq!(json_of(&open)["keys_required"], false);
    let list = run(&["keys", "list"]).await;
    assert!(!list.stdout.contains("keys are required"), "{}", list.stdout);

    let reused = run(&["keys", "create", "alice", "--json"]).await;
    assert_eq!(reused.code, 0, "a deleted key's name is free again: {}", reused.stderr);
    assert!(
        json_of(&reused)["secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("exai-sk-"))
    );
}
