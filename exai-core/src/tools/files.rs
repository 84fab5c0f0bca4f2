//! Files and images for a tool call.
//!
//! Files are embedded as text blocks with line numbers, within `tools.file_token_budget`
//! (estimated tokens). This turn's files come first and must all be readable — an unreadable,
//! binary-only or oversized one is refused with a message saying what to do. Then the files of
//! earlier turns of the conversation, newest turn first, as far as the budget allows; those that
//! no longer fit or no longer exist are listed, not fatal. Directories expand to the files below
//! them (hidden, `target`, `node_modules` skipped). The conversation stores paths, never contents.
//!
//! Images may be data URLs, http(s) URLs, or absolute paths (read and sent as data URLs).
//!
//! Every path — this turn's, each file found below a directory, an earlier turn's, an image's —
//! passes the suite's [`FileAccess`] first and is read where it resolves to; a refusal of this
//! turn's path or image fails the call, the others are listed as left out.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use base64::Engine;

use super::access::{FileAccess, FileRefusal};
use super::{Failure, ToolCtx};
use crate::gateway::context::estimate;
use crate::request::Attachments;

/// Files read from one directory at most.
const MAX_DIR_FILES: usize = 500;
/// Largest image read from disk.
const MAX_IMAGE_BYTES: u64 = 10 * 1024 * 1024;
const SKIPPED_DIRS: [&str; 4] = ["target", "node_modules", "__pycache__", "dist"];

/// What a call sends besides its prompt.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    /// Text blocks for `ChatRequest::context`.
    pub context: Vec<String>,
    /// Image URLs for the user message.
    pub images: Vec<String>,
    /// Paths embedded.
    pub embedded: Vec<String>,
    /// What was left out, and why.
    pub omitted: Vec<String>,
}

/// Reads this turn's `files` and `images`, and re-embeds earlier turns' files.
pub(crate) async fn prepare(
    ctx: &ToolCtx<'_>,
    files: &[String],
    images: &[String],
    continuation_id: Option<&str>,
) -> Result<Prepared, Failure> {
    for f in files.iter().chain(images.iter().filter(|i| !is_url(i))) {
        if !Path::new(f).is_absolute() {
            return Err(Failure::Arguments(format!("paths must be absolute; got '{f}'")));
        }
    }
    let mut earlier = Vec::new();
    // Only the caller's own conversation (another key's is unknown, as for its turns).
    if let Some(id) = continuation_id
        && let Some(thread) = ctx.gateway().thread(id).await?
        && thread.belongs_to(ctx.session.caller().key_name())
    {
        for turn in thread.turns.iter().rev() {
            earlier.extend(turn.files.iter().cloned());
        }
    }
    let budget = ctx.config().file_token_budget;
    let (files, images, access) = (files.to_vec(), images.to_vec(), ctx.suite.file_access().clone());
    tokio::task::spawn_blocking(move || read_all(&files, &earlier, &images, budget, &access))
        .await
        .map_err(|e| Failure::Gateway(crate::error::Error::Internal(format!("file reader failed: {e}"))))?
}

/// Why files could not be attached.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// A path is relative.
    #[error("paths must be absolute; got '{0}'")]
    NotAbsolute(String),
    /// A file could not be read or embedded; the message says which and why.
    #[error("{0}")]
    Unreadable(String),
}

/// Reads absolute `paths` (files or directories) within `budget` estimated tokens, with the same
/// rules and messages as the tools' `files` parameter.
pub async fn attach_files(paths: Vec<String>, budget: u64) -> Result<Attachments, AttachError> {
    if let Some(relative) = paths.iter().find(|p| !Path::new(p).is_absolute()) {
        return Err(AttachError::NotAbsolute(relative.clone()));
    }
    let read = tokio::task::spawn_blocking(move || read_all(&paths, &[], &[], budget, &FileAccess::local())).await;
    match read {
        Ok(Ok(p)) => Ok(Attachments {
            context: p.context,
            embedded: p.embedded,
            omitted: p.omitted,
        }),
        Ok(Err(Failure::Refused { message, .. } | Failure::Arguments(message))) => {
            Err(AttachError::Unreadable(message))
        }
        Ok(Err(Failure::Gateway(e))) => Err(AttachError::Unreadable(e.to_string())),
        Err(e) => Err(AttachError::Unreadable(format!("file reader failed: {e}"))),
    }
}

fn is_url(s: &str) -> bool {
    s.starts_with("data:") || s.starts_with("http://") || s.starts_with("https://")
}

fn refuse(status: &'static str, message: String) -> Failure {
    Failure::Refused { status, message }
}

impl From<FileRefusal> for Failure {
    fn from(refusal: FileRefusal) -> Self {
        refuse(refusal.status(), refusal.to_string())
    }
}

fn read_all(
    current: &[String],
    earlier: &[String],
    images: &[String],
    budget: u64,
    access: &FileAccess,
) -> Result<Prepared, Failure> {
    let mut out = Prepared::default();
    let mut seen = HashSet::new();
    let mut used = 0u64;
    for path in current {
        let real = access.check(Path::new(path))?;
        for file in expand(&real).map_err(|e| refuse("file_error", format!("cannot read {path}: {e}")))? {
            let key = file.display().to_string();
            if !seen.insert(key.clone()) {
                continue;
            }
            // A file below a directory may be a symlink out of the roots.
            let file = match access.check(&file) {
                Ok(file) => file,
                Err(refusal) => {
                    out.omitted.push(refusal.to_string());
                    continue;
                }
            };
            let text = std::fs::read(&file).map_err(|e| refuse("file_error", format!("cannot read {key}: {e}")))?;
            let Some(block) = block(&key, &text) else {
                out.omitted.push(format!("{key} (binary)"));
                continue;
            };
            let cost = estimate(&block);
            if cost > budget {
                return Err(refuse(
                    "file_too_large",
                    format!(
                        "{key} is about {cost} tokens, over the file budget of {budget}; pass a smaller file or the relevant part of it"
                    ),
                ));
            }
            if used + cost > budget {
                out.omitted
                    .push(format!("{key} (over the file budget of {budget} tokens)"));
                continue;
            }
            used += cost;
            out.context.push(block);
            out.embedded.push(key);
        }
    }
    for path in earlier {
        if !seen.insert(path.clone()) {
            continue;
        }
        let real = match access.check(Path::new(path)) {
            Ok(real) => real,
            Err(refusal) => {
                out.omitted.push(format!("{refusal} (earlier turn)"));
                continue;
            }
        };
        let block = std::fs::read(real).ok().and_then(|t| block(path, &t));
        match block {
            Some(b) if used + estimate(&b) <= budget => {
                used += estimate(&b);
                out.context.push(b);
                out.embedded.push(path.clone());
            }
            Some(_) => out.omitted.push(format!("{path} (earlier turn; over the file budget)")),
            None => out.omitted.push(format!("{path} (earlier turn; no longer readable)")),
        }
    }
    for image in images {
        out.images.push(if is_url(image) {
            image.clone()
        } else {
            data_url(image, &access.check(Path::new(image))?)?
        });
    }
    Ok(out)
}

/// A path, or the files below a directory.
fn expand(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        std::fs::metadata(path)?;
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        for entry in entries {
            let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with('.') || SKIPPED_DIRS.contains(&name) {
                continue;
            }
            if entry.is_dir() {
                dirs.push(entry);
            } else if out.len() < MAX_DIR_FILES {
                out.push(entry);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The embedded form of a file, or `None` if it is binary.
fn block(path: &str, bytes: &[u8]) -> Option<String> {
    if bytes.iter().take(8192).any(|b| *b == 0) {
        return None;
    }
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    let mut out = format!("--- BEGIN FILE: {path} ({} lines) ---\n", lines.len());
    for (i, line) in lines.iter().enumerate() {
        out.push_str(&format!("{:>5}│ {line}\n", i + 1));
    }
    out.push_str(&format!("--- END FILE: {path} ---"));
    Some(out)
}

/// The image at `real` (the resolved `path`) as a data URL.
fn data_url(path: &str, real: &Path) -> Result<String, Failure> {
    let size = std::fs::metadata(real)
        .map_err(|e| refuse("file_error", format!("cannot read image {path}: {e}")))?
        .len();
    if size > MAX_IMAGE_BYTES {
        return Err(refuse(
            "file_too_large",
            format!("image {path} is {size} bytes, over {MAX_IMAGE_BYTES}"),
        ));
    }
    let ext = Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mime = match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        other => {
            return Err(refuse(
                "file_error",
                format!("{path}: unsupported image type '{other}' (png, jpeg, gif, webp)"),
            ));
        }
    };
    let bytes = std::fs::read(real).map_err(|e| refuse("file_error", format!("cannot read image {path}: {e}")))?;
    Ok(format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("exai-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("src")).unwrap_or_else(|e| panic!("{e}"));
        dir
    }

    #[test]
    fn this_turns_files_come_first_then_earlier_ones_within_budget() -> Result<(), String> {
        let dir = temp_dir("budget");
        let (a, b, c) = (dir.join("src/a.rs"), dir.join("b.rs"), dir.join("gone.rs"));
        std::fs::write(&a, "fn a() {}\n").map_err(|e| e.to_string())?;
        std::fs::write(&b, "x".repeat(400)).map_err(|e| e.to_string())?;
        let current = [dir.join("src").display().to_string()];
        let earlier = [b.display().to_string(), c.display().to_string()];
        let p = read_all(&current, &earlier, &[], 60, &FileAccess::local()).map_err(|e| format!("{e:?}"))?;
        assert_eq!(p.embedded, [a.display().to_string()]);
        assert!(p.context[0].contains("    1│ fn a() {}"));
        assert_eq!(p.omitted.len(), 2, "{:?}", p.omitted);
        assert!(p.omitted[0].contains("over the file budget") && p.omitted[1].contains("no longer readable"));
        Ok(())
    }

    #[test]
    fn unreadable_and_oversized_files_of_this_turn_are_refused() {
        let dir = temp_dir("refuse");
        let missing = dir.join("missing.rs").display().to_string();
        assert!(matches!(
            read_all(&[missing], &[], &[], 100, &FileAccess::local()),
            Err(Failure::Refused {
                status: "file_error",
                ..
            })
        ));
        let big = dir.join("big.txt");
        let _ = std::fs::write(&big, "y".repeat(4_000));
        let big = big.display().to_string();
        assert!(matches!(
            read_all(&[big], &[], &[], 100, &FileAccess::local()),
            Err(Failure::Refused {
                status: "file_too_large",
                ..
            })
        ));
    }

    #[test]
    fn below_a_root_a_directorys_symlink_out_is_left_out_and_an_image_outside_refused() -> Result<(), String> {
        let dir = temp_dir("confined");
        let root = dir.join("src");
        std::fs::write(root.join("a.rs"), "fn a() {}\n").map_err(|e| e.to_string())?;
        std::fs::write(dir.join("secret.txt"), "hunter2").map_err(|e| e.to_string())?;
        std::os::unix::fs::symlink(dir.join("secret.txt"), root.join("z.rs")).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("p.png"), [0x89, b'P']).map_err(|e| e.to_string())?;
        let config = crate::config::Config::builder()
            .set("tools.file_roots", root.display())
            .without_file()
            .build()
            .map_err(|e| e.to_string())?;
        let access = FileAccess::configured(&config);
        let p = read_all(&[root.display().to_string()], &[], &[], 1_000, &access).map_err(|e| format!("{e:?}"))?;
        assert_eq!(p.embedded.len(), 1, "{:?}", p.embedded);
        assert!(p.embedded[0].ends_with("a.rs") && !p.context.concat().contains("hunter2"));
        assert!(
            p.omitted
                .iter()
                .any(|o| o.contains("z.rs") && o.contains("tools.file_roots")),
            "{:?}",
            p.omitted
        );
        let image = read_all(&[], &[], &[dir.join("p.png").display().to_string()], 10, &access);
        assert!(
            matches!(
                image,
                Err(Failure::Refused {
                    status: "file_refused",
                    ..
                })
            ),
            "{image:?}"
        );
        Ok(())
    }

    #[test]
    fn images_from_disk_become_data_urls() -> Result<(), String> {
        let dir = temp_dir("img");
        let png = dir.join("p.png");
        std::fs::write(&png, [0x89, b'P', b'N', b'G']).map_err(|e| e.to_string())?;
        let p = read_all(
            &[],
            &[],
            &[png.display().to_string(), "https://x/y.png".into()],
            10,
            &FileAccess::local(),
        )
        .map_err(|e| format!("{e:?}"))?;
        assert_eq!(p.images, ["data:image/png;base64,iVBORw==", "https://x/y.png"]);
        Ok(())
    }
}
