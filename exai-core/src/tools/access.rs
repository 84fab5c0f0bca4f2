//! Which files a tool call may read: the [`FileAccess`] a front door gives its
//! [`super::ToolSuite`].
//!
//! The `files`, `relevant_files` and `images` arguments name paths on the machine that runs the
//! tools. Over stdio (and `exai call`) that machine is the caller's own and reading its files is
//! the point: [`FileAccess::local`]. A daemon reads on *its* host for whoever holds a key, so
//! there a path must resolve (`..` and symlinks followed, by `canonicalize`) to a place below
//! one of `tools.file_roots` — none by default, so no file at all. Below a root, the state
//! directory, the config file in use, `/proc`, `/sys` and `/dev` are still refused. An MCP
//! client that declares roots narrows a local suite to them by the same rules.
//!
//! A path outside every root is refused before the file system is asked about it, so a
//! refusal tells nothing of what exists there; no refusal carries anything read.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::config::Config;

/// The places always refused, even below a root.
const SYSTEM: [&str; 3] = ["/proc", "/sys", "/dev"];

/// Which files the tools of a suite may read. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FileAccess {
    /// `None`: any file this process can read.
    confined: Option<Arc<Confinement>>,
}

/// The directories a confined suite reads below, who chose them, and what stays refused.
#[derive(Debug)]
struct Confinement {
    /// As declared; canonicalized at each check, so a root created later counts.
    roots: Vec<PathBuf>,
    by: Declarer,
    /// Canonical places refused even below a root, with the rule's name.
    protected: Vec<(PathBuf, &'static str)>,
}

/// Who chose the roots — which the refusal names, so the caller knows whom to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Declarer {
    /// The operator, in `tools.file_roots`.
    Config,
    /// The MCP client, with `roots/list`.
    Client,
}

/// Why a path may not be read. The message names the path and the rule, never contents.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum FileRefusal {
    /// No roots are configured: the daemon reads no file for its callers.
    #[error(
        "{path}: this server reads no files for its callers; its operator can allow the files below some \
         directories with tools.file_roots (or EXAI_FILE_ROOTS, comma-separated)"
    )]
    NoRoots { path: String },
    /// The path resolves outside every root.
    #[error("{path} is outside {rule} ({roots}); pass a path below one of them")]
    Outside {
        path: String,
        rule: &'static str,
        roots: String,
    },
    /// The path resolves into a place tools never read.
    #[error("{path} is in {rule} ({place}), which tools never read")]
    Protected {
        path: String,
        rule: &'static str,
        place: String,
    },
    /// The path is below a root but cannot be resolved (it does not exist, say).
    #[error("cannot read {path}: {reason}")]
    Unresolved { path: String, reason: String },
}

impl FileRefusal {
    /// The `status` of the tool's failure.
    pub(crate) fn status(&self) -> &'static str {
        match self {
            Self::Unresolved { .. } => "file_error",
            _ => "file_refused",
        }
    }
}

impl FileAccess {
    /// Any file this process can read: the caller is this machine's user (exai-stdio,
    /// `exai call`, an embedder).
    pub fn local() -> Self {
        Self { confined: None }
    }

    /// A daemon's access: below `tools.file_roots` only (none: no file at all).
    pub fn configured(config: &Config) -> Self {
        Self::confined(config.tools.file_roots.clone(), Declarer::Config, config)
    }

    /// This access narrowed to the roots an MCP client declared (`file://` URIs; others name
    /// no directory here). Only a local suite is narrowed: a confined one reads on a host the
    /// client's roots do not describe.
    pub fn within_client_roots(&self, uris: &[String], config: &Config) -> Self {
        if !self.is_local() {
            return self.clone();
        }
        let roots = uris.iter().filter_map(|u| file_uri_path(u)).collect();
        Self::confined(roots, Declarer::Client, config)
    }

    /// Whether any path this process can read is allowed.
    pub fn is_local(&self) -> bool {
        self.confined.is_none()
    }

    fn confined(roots: Vec<PathBuf>, by: Declarer, config: &Config) -> Self {
        let mut protected = vec![(config.state_dir.clone(), "the state directory")];
        protected.extend(config.file.iter().map(|f| (f.clone(), "the config file in use")));
        protected.extend(SYSTEM.iter().map(|s| (PathBuf::from(s), "a system directory")));
        let protected = protected
            .into_iter()
            .map(|(p, rule)| (std::fs::canonicalize(&p).unwrap_or(p), rule))
            .collect();
        Self {
            confined: Some(Arc::new(Confinement { roots, by, protected })),
        }
    }

    /// The path to read for `path` (absolute), or why it may not be read.
    pub(crate) fn check(&self, path: &Path) -> Result<PathBuf, FileRefusal> {
        match &self.confined {
            None => Ok(path.to_path_buf()),
            Some(c) => c.check(path),
        }
    }
}

impl Confinement {
    fn check(&self, path: &Path) -> Result<PathBuf, FileRefusal> {
        let shown = path.display().to_string();
        if self.roots.is_empty() && self.by == Declarer::Config {
            return Err(FileRefusal::NoRoots { path: shown });
        }
        let canonical: Vec<PathBuf> = self
            .roots
            .iter()
            .filter_map(|r| std::fs::canonicalize(r).ok())
            .collect();
        let lexical = normalize(path);
        let named_inside = self
            .roots
            .iter()
            .map(|r| normalize(r))
            .chain(canonical.iter().cloned())
            .any(|r| lexical.starts_with(r));
        if !named_inside {
            return Err(self.outside(shown));
        }
        let real = std::fs::canonicalize(path).map_err(|e| FileRefusal::Unresolved {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        if let Some((place, rule)) = self.protected.iter().find(|(p, _)| real.starts_with(p)) {
            return Err(FileRefusal::Protected {
                path: shown,
                rule,
                place: place.display().to_string(),
            });
        }
        if !canonical.iter().any(|r| real.starts_with(r)) {
            return Err(self.outside(shown));
        }
        Ok(real)
    }

    fn outside(&self, path: String) -> FileRefusal {
        let roots = self.roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>();
        FileRefusal::Outside {
            path,
            rule: match self.by {
                Declarer::Config => "tools.file_roots",
                Declarer::Client => "the roots the MCP client declared",
            },
            roots: if roots.is_empty() {
                "none".into()
            } else {
                roots.join(", ")
            },
        }
    }
}

/// `path` with `.` and `..` resolved by name alone (no file system access).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The local path of a `file://` URI (percent-decoded), or `None` for any other URI.
fn file_uri_path(uri: &str) -> Option<PathBuf> {
    let rest = uri.strip_prefix("file://")?;
    let path = rest.strip_prefix("localhost").unwrap_or(rest);
    if !path.starts_with('/') {
        return None;
    }
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    Some(PathBuf::from(String::from_utf8(decoded).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory with `root/inside.txt`, `outside.txt` next to the root, and a state
    /// directory and config file below the root.
    struct Tree {
        dir: PathBuf,
    }

    impl Tree {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("exai-access-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            for sub in ["root/sub", "root/state"] {
                std::fs::create_dir_all(dir.join(sub)).unwrap_or_else(|e| panic!("{e}"));
            }
            for (file, text) in [
                ("root/inside.txt", "in"),
                ("outside.txt", "out"),
                ("root/exai.toml", ""),
            ] {
                std::fs::write(dir.join(file), text).unwrap_or_else(|e| panic!("{e}"));
            }
            Self { dir }
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.dir.join(rel)
        }

        /// A daemon's access with `roots` (comma-separated), the state directory and the config
        /// file below `root`.
        fn configured(&self, roots: &str) -> FileAccess {
            let config = Config::builder()
                .set("tools.file_roots", roots)
                .set("state_dir", self.path("root/state").display())
                .file_text(&self.path("root/exai.toml"), "")
                .build()
                .unwrap_or_else(|e| panic!("{e}"));
            FileAccess::configured(&config)
        }
    }

    fn refusal(access: &FileAccess, path: &Path) -> FileRefusal {
        match access.check(path) {
            Err(refusal) => refusal,
            Ok(real) => panic!("{} was allowed as {}", path.display(), real.display()),
        }
    }

    #[test]
    fn with_no_roots_a_daemon_reads_no_file_and_says_how_to_allow_some() {
        let tree = Tree::new("none");
        let access = tree.configured("");
        let refused = refusal(&access, &tree.path("root/inside.txt"));
        assert!(matches!(refused, FileRefusal::NoRoots { .. }), "{refused:?}");
        let message = refused.to_string();
        assert!(
            message.contains("tools.file_roots") && message.contains("EXAI_FILE_ROOTS"),
            "{message}"
        );
        assert_eq!(refused.status(), "file_refused");
    }

    #[test]
    fn a_file_below_a_root_is_read_by_its_real_path() {
        let tree = Tree::new("inside");
        let access = tree.configured(&tree.path("root").display().to_string());
        let real = access.check(&tree.path("root/sub/../inside.txt"));
        let expected = std::fs::canonicalize(tree.path("root/inside.txt")).map_err(|e| e.to_string());
        assert_eq!(real.map_err(|e| e.to_string()), expected);
    }

    #[test]
    fn dot_dot_out_of_a_root_is_refused_naming_the_rule_and_not_the_contents() {
        let tree = Tree::new("dotdot");
        let access = tree.configured(&tree.path("root/sub").display().to_string());
        for escape in ["root/sub/../inside.txt", "root/sub/../../outside.txt"] {
            let refused = refusal(&access, &tree.path(escape));
            assert!(matches!(refused, FileRefusal::Outside { .. }), "{refused:?}");
            let message = refused.to_string();
            assert!(
                message.contains(escape) && message.contains("tools.file_roots"),
                "{message}"
            );
            assert!(!message.contains("out\n") && !message.ends_with("out"), "{message}");
        }
    }

    #[test]
    fn a_symlink_out_of_a_root_is_refused() -> std::io::Result<()> {
        let tree = Tree::new("symlink");
        let access = tree.configured(&tree.path("root").display().to_string());
        std::os::unix::fs::symlink(tree.path("outside.txt"), tree.path("root/link.txt"))?;
        std::os::unix::fs::symlink(&tree.dir, tree.path("root/sub/up"))?;
        for link in ["root/link.txt", "root/sub/up/outside.txt"] {
            let refused = refusal(&access, &tree.path(link));
            assert!(matches!(refused, FileRefusal::Outside { .. }), "{link}: {refused:?}");
        }
        Ok(())
    }

    #[test]
    fn a_symlink_that_stays_below_a_root_is_followed() -> std::io::Result<()> {
        let tree = Tree::new("inner-link");
        let access = tree.configured(&tree.path("root").display().to_string());
        std::os::unix::fs::symlink(tree.path("root/inside.txt"), tree.path("root/sub/same.txt"))?;
        let real = access.check(&tree.path("root/sub/same.txt")).map_err(|e| e.to_string());
        assert_eq!(real, Ok(std::fs::canonicalize(tree.path("root/inside.txt"))?));
        Ok(())
    }

    #[test]
    fn the_state_dir_the_config_file_and_system_directories_are_refused_even_below_a_root() -> std::io::Result<()> {
        let tree = Tree::new("protected");
        std::fs::write(tree.path("root/state/exai.db"), "keys")?;
        let access = tree.configured(&format!("{},/", tree.path("root").display()));
        for (path, rule) in [
            (tree.path("root/state/exai.db"), "the state directory"),
            (tree.path("root/state"), "the state directory"),
            (tree.path("root/exai.toml"), "the config file in use"),
            (PathBuf::from("/proc/self/environ"), "a system directory"),
            (PathBuf::from("/dev/null"), "a system directory"),
        ] {
            let refused = refusal(&access, &path);
            assert!(
                matches!(&refused, FileRefusal::Protected { rule: r, .. } if *r == rule),
                "{}: {refused:?}",
                path.display()
            );
            assert!(!refused.to_string().contains("keys"), "{refused}");
        }
        Ok(())
    }

    #[test]
    fn a_missing_file_below_a_root_is_a_file_error_and_one_outside_is_not_looked_up() {
        let tree = Tree::new("missing");
        let access = tree.configured(&tree.path("root").display().to_string());
        let missing = refusal(&access, &tree.path("root/missing.txt"));
        assert_eq!(missing.status(), "file_error", "{missing:?}");
        let elsewhere = refusal(&access, &tree.path("missing.txt"));
        assert!(matches!(elsewhere, FileRefusal::Outside { .. }), "{elsewhere:?}");
    }

    #[test]
    fn local_access_reads_anything_and_client_roots_narrow_only_local_access() {
        let tree = Tree::new("client");
        let outside = tree.path("outside.txt");
        assert_eq!(FileAccess::local().check(&outside).ok(), Some(outside.clone()));

        let config = Config::default();
        let root = tree.path("root").display().to_string().replace(' ', "%20");
        let narrowed = FileAccess::local().within_client_roots(&[format!("file://{root}")], &config);
        assert!(narrowed.check(&tree.path("root/inside.txt")).is_ok());
        let refused = refusal(&narrowed, &outside);
        assert!(
            refused.to_string().contains("the roots the MCP client declared"),
            "{refused}"
        );
        let none = FileAccess::local().within_client_roots(&["https://example.com/".into()], &config);
        assert!(
            refusal(&none, &tree.path("root/inside.txt"))
                .to_string()
                .contains("(none)")
        );

        let daemon = tree.configured("");
        let still = daemon.within_client_roots(&[format!("file://{root}")], &config);
        assert!(matches!(
            refusal(&still, &tree.path("root/inside.txt")),
            FileRefusal::NoRoots { .. }
        ));
    }

    #[test]
    fn file_uris_decode_to_local_paths() {
        assert_eq!(
            file_uri_path("file:///home/a%20b/p"),
            Some(PathBuf::from("/home/a b/p"))
        );
        assert_eq!(file_uri_path("file://localhost/srv"), Some(PathBuf::from("/srv")));
        assert_eq!(file_uri_path("file://host/srv"), None);
        assert_eq!(file_uri_path("https://x/y"), None);
    }
}
