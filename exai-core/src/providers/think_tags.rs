//! Splits `<think>…</think>` reasoning out of reply text, as it streams.
//!
//! MiniMax M2 (without `reasoning_split`) and many OpenAI-compatible servers running reasoning
//! models inline their reasoning in the content between `<think>` tags. Tags can be cut across
//! stream chunks (`<thi` + `nk>`), so the splitter holds back any suffix that could still become
//! a tag and releases it when the next chunk, or the end, decides.

use super::openai_wire::Piece;

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

/// Streaming splitter state.
#[derive(Debug, Default)]
pub(crate) struct ThinkSplitter {
    inside: bool,
    held: String,
}

impl ThinkSplitter {
    /// Feeds a piece of content; returns what can be released now.
    pub fn feed(&mut self, text: &str) -> Vec<Piece> {
        self.held.push_str(text);
        let mut out = Vec::new();
        loop {
            let tag = if self.inside { CLOSE } else { OPEN };
            if let Some(pos) = self.held.find(tag) {
                let before: String = self.held.drain(..pos).collect();
                self.held.drain(..tag.len());
                self.emit(&mut out, before);
                self.inside = !self.inside;
                continue;
            }
            // Keep back the longest suffix that is a prefix of the tag.
            let keep = (1..tag.len())
                .rev()
                .find(|n| {
                    self.held.len() >= *n
                        && self.held.is_char_boundary(self.held.len() - n)
                        && tag.starts_with(&self.held[self.held.len() - n..])
                })
                .unwrap_or(0);
            let release: String = self.held.drain(..self.held.len() - keep).collect();
            self.emit(&mut out, release);
            return out;
        }
    }

    /// Releases whatever is still held at the end of the reply.
    pub fn finish(&mut self) -> Vec<Piece> {
        let mut out = Vec::new();
        let rest = std::mem::take(&mut self.held);
        self.emit(&mut out, rest);
        out
    }

    fn emit(&self, out: &mut Vec<Piece>, text: String) {
        if text.is_empty() {
            return;
        }
        out.push(if self.inside {
            Piece::Reasoning(text)
        } else {
            Piece::Text(text)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&str]) -> (String, String) {
        let mut s = ThinkSplitter::default();
        let mut pieces = Vec::new();
        for c in chunks {
            pieces.extend(s.feed(c));
        }
        pieces.extend(s.finish());
        let (mut text, mut reasoning) = (String::new(), String::new());
        for p in pieces {
            match p {
                Piece::Text(t) => text.push_str(&t),
                Piece::Reasoning(r) => reasoning.push_str(&r),
            }
        }
        (text, reasoning)
    }

    #[test]
    fn tags_split_across_chunks_are_recognised() {
        let (text, reasoning) = run(&["<thi", "nk>let me ", "see</th", "ink>\n\nThe answer", " is 4"]);
        assert_eq!(reasoning, "let me see");
        assert_eq!(text, "\n\nThe answer is 4");
    }

    #[test]
    fn text_without_tags_passes_through_including_a_lone_angle_bracket() {
        assert_eq!(
            run(&["a < b", " and <", "b> ok"]),
            ("a < b and <b> ok".into(), String::new())
        );
    }

    #[test]
    fn multibyte_text_near_a_held_suffix_is_kept_whole() {
        assert_eq!(run(&["é<", "é"]), ("é<é".into(), String::new()));
    }
}
