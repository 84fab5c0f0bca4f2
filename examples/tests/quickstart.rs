//! The offline quickstart, run as a newcomer runs it (the real example binary, an empty HOME, no
//! key): it answers, and what it keeps goes to the scratch state directory it prints — the
//! system's temporary directory, or `EXAI_STATE_DIR` when set — never to HOME's real history.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds the example as README's `cargo run -p exai-examples --example quickstart` does (the
/// same package selection, so the same features; a no-op once built) and returns its path,
/// beside this test's own binary in the target directory.
fn quickstart() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "-q", "-p", "exai-examples", "--example", "quickstart"])
        .status()
        .unwrap_or_else(|e| panic!("cargo build: {e}"));
    assert!(built.success(), "the quickstart builds");
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let debug = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{}", exe.display()));
    debug.join("examples").join("quickstart")
}

/// An empty directory of this test process's own.
fn fresh(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("exai-quickstart-test-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// Runs the quickstart with only PATH, `home`, `tmp` and `extra` set: its stdout.
fn run(home: &Path, tmp: &Path, extra: &[(&str, &Path)]) -> String {
    let out = Command::new(quickstart())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("TMPDIR", tmp)
        .envs(extra.iter().copied())
        .current_dir(home)
        .output()
        .unwrap_or_else(|e| panic!("quickstart: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("The conversation now holds 6 turns (sqlite memory)"),
        "{stdout}"
    );
    stdout
}

#[test]
fn the_offline_quickstart_keeps_to_a_scratch_state_directory_it_prints() {
    let (home, tmp) = (fresh("home"), fresh("tmp"));
    let stdout = run(&home, &tmp, &[]);
    let scratch = tmp.join("exai-quickstart");
    assert!(
        stdout.contains(&format!("scratch state directory, {}", scratch.display())),
        "{stdout}"
    );
    assert!(scratch.join("exai.db").exists(), "{stdout}");
    assert!(!home.join(".local").exists(), "nothing reaches HOME's state directory");

    let chosen = fresh("chosen");
    let stdout = run(&home, &fresh("tmp-2"), &[("EXAI_STATE_DIR", &chosen)]);
    assert!(
        stdout.contains(&format!("scratch state directory, {}", chosen.display())),
        "{stdout}"
    );
    assert!(chosen.join("exai.db").exists(), "{stdout}");
    assert!(!home.join(".local").exists());
}
