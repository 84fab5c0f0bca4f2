//! Keeping tool output and input within what clients can take.
//!
//! MCP clients cap a tool result (Claude Code at about 25k tokens); a result over
//! `tools.max_output_chars` is cut at a line or character boundary — never inside a character —
//! with a note saying so. A prompt over `tools.max_prompt_chars` is refused before any provider
//! call with the advice to pass it as a file.

use super::{Failure, ToolOutput};

/// Cuts `out.text` to `max` bytes, cleanly, with a note.
pub(crate) fn limit(mut out: ToolOutput, max: usize) -> ToolOutput {
    let total = out.text.len();
    if total <= max {
        return out;
    }
    let mut cut = (0..=max).rev().find(|i| out.text.is_char_boundary(*i)).unwrap_or(0);
    if let Some(newline) = out.text[..cut].rfind('\n').filter(|n| *n > cut / 2) {
        cut = newline;
    }
    out.text.truncate(cut);
    out.text.push_str(&format!(
        "\n\n[output truncated: {cut} of {total} characters shown; ask for a narrower answer, or continue the \
         conversation with its continuation_id]"
    ));
    if let Some(obj) = out.structured.as_object_mut() {
        obj.insert(
            "truncated".into(),
            serde_json::json!({"shown_chars": cut, "total_chars": total}),
        );
    }
    out
}

/// Refuses a prompt longer than `max` characters.
pub(crate) fn check_prompt(prompt: &str, max: usize) -> Result<(), Failure> {
    let chars = prompt.chars().count();
    if chars <= max {
        return Ok(());
    }
    Err(Failure::Refused {
        status: "resend_prompt",
        message: format!(
            "The prompt is {chars} characters, over this server's limit of {max}. Save it to a file and pass \
             the file's absolute path in `files` instead, with a short prompt that says what to do with it."
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(text: &str) -> ToolOutput {
        ToolOutput::ok(text.into(), serde_json::json!({}))
    }

    #[test]
    fn long_output_is_cut_at_a_line_with_a_note_and_short_output_is_untouched() {
        let text = format!("{}\n{}", "a".repeat(60), "é".repeat(40));
        let cut = limit(out(&text), 90);
        assert!(cut.text.starts_with(&"a".repeat(60)));
        assert!(!cut.text.contains('é'), "cut at the newline");
        assert!(cut.text.contains("[output truncated: 60 of 141 characters shown"));
        assert_eq!(cut.structured["truncated"]["total_chars"], 141);
        assert_eq!(limit(out("short"), 90).text, "short");
    }

    #[test]
    fn multibyte_text_is_never_cut_inside_a_character() {
        let cut = limit(out(&"é".repeat(100)), 51);
        let shown = cut.text.split("\n\n[output truncated").next().unwrap_or_default();
        assert_eq!(shown.chars().count(), 25);
    }

    #[test]
    fn an_oversized_prompt_is_refused_with_the_file_advice() {
        assert!(check_prompt("short", 10).is_ok());
        match check_prompt(&"x".repeat(11), 10) {
            Err(Failure::Refused { status, message }) => {
                assert_eq!(status, "resend_prompt");
                assert!(message.contains("absolute path in `files`"));
            }
            _ => panic!("expected a refusal"),
        }
    }
}
