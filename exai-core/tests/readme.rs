//! README's promises about its own code: the embedding snippet is `examples/embed.rs`, word for
//! word (both are compiled: the example by `cargo test --all-targets`, the snippet as a doc
//! test), so the page a newcomer copies from is the program that runs.

#[test]
fn the_embedding_snippet_is_the_example() {
    let readme = include_str!("../../README.md");
    let example = include_str!("../../examples/embed.rs");
    let code = &example[example.find("use std::io::Write;").unwrap_or(0)..];
    let snippet = format!("```rust,no_run\n{code}```\n");
    assert!(
        readme.contains(&snippet),
        "README's embedding snippet differs from examples/embed.rs: copy the file's code (from its first `use`) into the ```rust,no_run block"
    );
}
