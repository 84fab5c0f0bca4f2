//! Scripted replies for the fake upstream.

use std::time::Duration;

/// What the fake upstream answers to one request. Build with the constructors, adjust with the
/// `with_*` methods, and queue with [`super::FakeUpstream::push`].
#[derive(Debug, Clone)]
pub struct FakeReply {
    pub(crate) kind: ReplyKind,
    /// Wait before answering at all.
    pub(crate) delay: Duration,
    /// Wait between stream chunks.
    pub(crate) chunk_delay: Duration,
}

#[derive(Debug, Clone)]
pub(crate) enum ReplyKind {
    /// "echo (N messages): <last user message>".
    Echo,
    /// A fixed reply.
    Text {
        content: String,
        reasoning: Option<String>,
        usage: Option<(u64, u64)>,
        finish: String,
    },
    /// An HTTP error.
    Status {
        status: u16,
        body: String,
        retry_after: Option<String>,
        location: Option<String>,
    },
    /// A stream that breaks after `chunks` content chunks (a plain request gets a cut body).
    DropAfter { chunks: usize },
    /// Never answers.
    Hang,
    /// A raw 200 JSON body (for provider-specific shapes).
    Json(serde_json::Value),
    /// A 200 body sent byte for byte, in these writes (the first after `delay`, each other
    /// `chunk_delay` after the one before): JSON, or (`stream`) server-sent events.
    Raw { parts: Vec<bytes::Bytes>, stream: bool },
    /// A call of the client's tool `name` with `input` (OpenAI `tool_calls`, Anthropic
    /// `tool_use`; streamed, the input comes in pieces).
    ToolUse {
        name: String,
        input: serde_json::Value,
        /// The reasoning before the call (`reasoning_content`, a `thinking` block).
        reasoning: Option<String>,
        /// The call's id, unique per reply (`call_…` / `toolu_…` after the prefix).
        id: String,
    },
}

impl FakeReply {
    fn of(kind: ReplyKind) -> Self {
        Self {
            kind,
            delay: Duration::ZERO,
            chunk_delay: Duration::ZERO,
        }
    }

    /// Echoes the last user message, saying how many messages arrived (so history is visible).
    pub fn echo() -> Self {
        Self::of(ReplyKind::Echo)
    }

    /// Answers with `body` exactly as given: a JSON reply, or with `stream` an SSE body (for
    /// tests that a relay hands on the upstream's bytes unchanged).
    pub fn raw(body: impl Into<bytes::Bytes>, stream: bool) -> Self {
        Self::of(ReplyKind::Raw {
            parts: vec![body.into()],
            stream,
        })
    }

    /// Answers with an SSE body sent exactly as given, in `parts` written `chunk_delay` apart:
    /// so a test decides what the client may have received before an event (a provider's
    /// error mid-stream, say).
    pub fn raw_stream_in_parts<B: Into<bytes::Bytes>>(parts: impl IntoIterator<Item = B>) -> Self {
        Self::of(ReplyKind::Raw {
            parts: parts.into_iter().map(Into::into).collect(),
            stream: true,
        })
    }

    /// Answers `content`.
    pub fn text(content: impl Into<String>) -> Self {
        Self::of(ReplyKind::Text {
            content: content.into(),
            reasoning: None,
            usage: None,
            finish: "stop".into(),
        })
    }

    /// The fault a prompt asks for, if any: `[fault:429]` (any status from 400 to 599; a 429
    /// says retry after 1 s), `[fault:drop]` (the stream breaks), `[fault:hang]` (no answer),
    /// `[fault:slow]` (an echo two seconds late) — so a person can watch exai's retries, fallback
    /// and deadlines against `exai mock-upstream`.
    pub fn fault_in(prompt: &str) -> Option<Self> {
        let start = prompt.find("[fault:")? + "[fault:".len();
        let name = &prompt[start..start + prompt[start..].find(']')?];
        Some(match name.trim() {
            "drop" => Self::drop_after(3),
            "hang" => Self::hang(),
            "slow" => Self::echo().with_delay(Duration::from_secs(2)),
            status => match status.parse::<u16>() {
                Ok(429) => Self::status(429).with_retry_after(1),
                Ok(code @ 400..=599) => Self::status(code),
                _ => return None,
            },
        })
    }

    /// Calls the client's tool `name` with `input`.
    pub fn tool_use(name: impl Into<String>, input: serde_json::Value) -> Self {
        Self::of(ReplyKind::ToolUse {
            name: name.into(),
            input,
            reasoning: None,
            id: uuid::Uuid::new_v4().simple().to_string(),
        })
    }

    /// Answers with HTTP `status` and an OpenAI-shaped error body.
    pub fn status(status: u16) -> Self {
        let body = serde_json::json!({"error": {"message": format!("fake upstream says {status}"), "type": "fake"}});
        Self::of(ReplyKind::Status {
            status,
            body: body.to_string(),
            retry_after: None,
            location: None,
        })
    }

    /// A stream that breaks after `chunks` content chunks.
    pub fn drop_after(chunks: usize) -> Self {
        Self::of(ReplyKind::DropAfter { chunks })
    }

    /// Never answers (until the client goes away).
    pub fn hang() -> Self {
        Self::of(ReplyKind::Hang)
    }

    /// A raw 200 JSON body.
    pub fn json(body: serde_json::Value) -> Self {
        Self::of(ReplyKind::Json(body))
    }

    /// Adds reasoning (sent as `reasoning_content`).
    pub fn with_reasoning(mut self, reasoning: impl Into<String>) -> Self {
        if let ReplyKind::Text { reasoning: r, .. } | ReplyKind::ToolUse { reasoning: r, .. } = &mut self.kind {
            *r = Some(reasoning.into());
        }
        self
    }

    /// Sets the reported usage (input, output tokens).
    pub fn with_usage(mut self, input: u64, output: u64) -> Self {
        if let ReplyKind::Text { usage, .. } = &mut self.kind {
            *usage = Some((input, output));
        }
        self
    }

    /// Sets the finish reason.
    pub fn with_finish(mut self, reason: impl Into<String>) -> Self {
        if let ReplyKind::Text { finish, .. } = &mut self.kind {
            *finish = reason.into();
        }
        self
    }

    /// Sets a `Retry-After` header (seconds) on an error.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        if let ReplyKind::Status { retry_after, .. } = &mut self.kind {
            *retry_after = Some(seconds.to_string());
        }
        self
    }

    /// Sets a `Location` header on an error (a 3xx, say).
    pub fn with_location(mut self, url: impl Into<String>) -> Self {
        if let ReplyKind::Status { location, .. } = &mut self.kind {
            *location = Some(url.into());
        }
        self
    }

    /// Replaces the error body.
    pub fn with_body(mut self, new_body: impl Into<String>) -> Self {
        if let ReplyKind::Status { body, .. } = &mut self.kind {
            *body = new_body.into();
        }
        self
    }

    /// Waits before answering.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Waits between stream chunks.
    pub fn with_chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = delay;
        self
    }
}

/// A raw reply's parts, each with the wait before it: `delay` for the first, `chunk_delay` for
/// each other.
pub(crate) fn timed(parts: Vec<bytes::Bytes>, delay: Duration, chunk_delay: Duration) -> Vec<(Duration, bytes::Bytes)> {
    let waits = std::iter::once(delay).chain(std::iter::repeat(chunk_delay));
    waits.zip(parts).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_asked_for_in_the_prompt() {
        assert!(FakeReply::fault_in("hello").is_none());
        assert!(FakeReply::fault_in("please [fault:500] now").is_some());
        assert!(FakeReply::fault_in("[fault:drop]").is_some());
        assert!(FakeReply::fault_in("[fault:hang]").is_some());
        assert!(FakeReply::fault_in("[fault:nonsense]").is_none());
        assert!(FakeReply::fault_in("[fault:200]").is_none());
    }
}
