//! What callers send and get back: [`ChatRequest`], [`ChatResponse`], [`ChatEvent`], [`Usage`].
//!
//! These are the gateway's own types, independent of any provider's wire format (that lives in
//! `providers/openai_wire.rs`) and of any frontend's protocol.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::wire::{CacheDirective, CacheStatus};

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions.
    System,
    /// The person or client agent.
    User,
    /// The model.
    Assistant,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who said it.
    pub role: Role,
    /// Its text.
    pub content: String,
    /// Images attached (data URLs or http(s) URLs), for vision models.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
}

impl Message {
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
            images: Vec::new(),
        }
    }
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
            images: Vec::new(),
        }
    }
    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
            images: Vec::new(),
        }
    }
}

/// How hard the model should think; mapped to each provider's own switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
#[serde(rename_all = "lowercase")]
pub enum ThinkingMode {
    /// As little as the model allows (GLM: thinking disabled).
    Minimal,
    /// Light reasoning.
    Low,
    /// The default depth.
    Medium,
    /// Deep reasoning.
    High,
    /// The most the model offers.
    Max,
}

impl FromStr for ThinkingMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "minimal" | "off" | "none" => Ok(Self::Minimal),
            "low" => Ok(Self::Low),
            "medium" => Ok(Self::Medium),
            "high" => Ok(Self::High),
            "max" => Ok(Self::Max),
            other => Err(format!(
                "unknown thinking mode '{other}'; expected minimal, low, medium, high or max"
            )),
        }
    }
}

impl fmt::Display for ThinkingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Minimal => "minimal",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Max => "max",
        })
    }
}

/// One turn sent to the gateway, built with its methods:
///
/// ```
/// use exai_core::{ChatRequest, ThinkingMode};
/// let request = ChatRequest::new("Review this plan")
///     .model("auto")
///     .system("Be brief.")
///     .thinking(ThinkingMode::High)
///     .temperature(0.3)
///     .max_tokens(800);
/// assert_eq!(request.requested_model(), Some("auto"));
/// ```
///
/// Its messages are this turn's new messages (usually one user message); the system prompt is
/// set once, with [`ChatRequest::system`] — a `system` message among them is refused. With a
/// continuation id, the conversation's earlier turns are loaded from memory and sent first, as
/// native messages, trimmed to the model's context window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChatRequest {
    /// `auto`, an alias, a model id or `provider/model`; `None` uses the configured default.
    pub(crate) model: Option<String>,
    /// A system prompt for this turn (not stored in the conversation).
    pub(crate) system: Option<String>,
    /// This turn's messages.
    pub(crate) messages: Vec<Message>,
    /// Continue this conversation.
    pub(crate) continuation_id: Option<String>,
    /// Sampling temperature; clamped to the model's range.
    pub(crate) temperature: Option<f32>,
    /// Largest reply, in tokens.
    pub(crate) max_tokens: Option<u32>,
    /// Thinking depth.
    pub(crate) thinking: Option<ThinkingMode>,
    /// Use provider-native web search.
    pub(crate) web_search: bool,
    /// Paths of files whose contents are embedded (recorded with the turn).
    pub(crate) files: Vec<String>,
    /// Who issued this turn (`cli`, a tool's name), recorded with the conversation.
    pub(crate) tool: Option<String>,
    /// Extra context sent with this turn only, after its last user message — embedded file
    /// contents, typically. Not stored: the conversation keeps the file paths (`files`), and
    /// tools re-embed them on later turns within their budget.
    pub(crate) context: Vec<String>,
    /// Answer without storing anything (a consultation, or a client that keeps its own
    /// history). The conversation's history is still read; such turns run outside its queue.
    pub(crate) ephemeral: bool,
    /// What the turn asks of the response cache (when the cache is on for the caller).
    #[serde(default)]
    pub(crate) cache: CacheDirective,
}

impl ChatRequest {
    /// A one-message request.
    pub fn new(prompt: impl Into<String>) -> Self {
        Self::from_messages(vec![Message::user(prompt)])
    }
    /// A request whose turn is these messages (a client that sends a whole exchange).
    pub fn from_messages(messages: Vec<Message>) -> Self {
        Self {
            messages,
            ..Self::default()
        }
    }
    /// Sets the model: `auto`, an alias, a model id or `provider/model`.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }
    /// Sets the model, or leaves the configured default when `None`.
    pub fn model_opt(mut self, model: Option<String>) -> Self {
        self.model = model;
        self
    }
    /// Continues a conversation.
    pub fn continuation(mut self, id: impl Into<String>) -> Self {
        self.continuation_id = Some(id.into());
        self
    }
    /// Sets the system prompt of this turn (not stored with the conversation).
    pub fn system(mut self, system: impl Into<String>) -> Self {
        self.system = Some(system.into());
        self
    }
    /// Sets the sampling temperature (clamped to the model's range).
    pub fn temperature(mut self, temperature: f32) -> Self {
        self.temperature = Some(temperature);
        self
    }
    /// Caps the reply, in tokens.
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }
    /// Sets how hard the model thinks.
    pub fn thinking(mut self, mode: ThinkingMode) -> Self {
        self.thinking = Some(mode);
        self
    }
    /// Uses the provider's own web search, where the model has one.
    pub fn web_search(mut self, on: bool) -> Self {
        self.web_search = on;
        self
    }
    /// Sends these files' contents with the turn (after its last user message) and records
    /// their paths with the conversation.
    pub fn attach(mut self, attachments: Attachments) -> Self {
        self.files = attachments.embedded;
        self.context = attachments.context;
        self
    }
    /// Names who issued the turn (`cli`, an app's name), as `exai threads` shows it.
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.tool = Some(origin.into());
        self
    }
    /// Whether the turn is stored in the conversation (yes by default). A client that keeps
    /// the history itself, as OpenAI's API does, stores nothing.
    pub fn store(mut self, store: bool) -> Self {
        self.ephemeral = !store;
        self
    }
    /// What the turn asks of the response cache, when the cache is on for its caller
    /// (`cache.mode = exact`, or a key created with `--cache`): a fresh answer (`Refresh`), not
    /// kept (`NoStore`), or the cache left out (`Bypass`).
    pub fn cache(mut self, directive: CacheDirective) -> Self {
        self.cache = directive;
        self
    }

    /// The model asked for, if any.
    pub fn requested_model(&self) -> Option<&str> {
        self.model.as_deref()
    }
    /// The system prompt, if any.
    pub fn system_prompt(&self) -> Option<&str> {
        self.system.as_deref()
    }
    /// This turn's messages.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }
    /// The thinking depth asked for, if any.
    pub fn thinking_mode(&self) -> Option<ThinkingMode> {
        self.thinking
    }
    /// Whether the turn is stored in the conversation.
    pub fn stores(&self) -> bool {
        !self.ephemeral
    }
}

/// Files embedded for one turn outside a tool call (the CLI's `--file`); give them to
/// [`ChatRequest::attach`]; [`crate::attach_files`] reads them.
#[derive(Debug, Clone, Default)]
pub struct Attachments {
    /// The files' contents, as text blocks sent after the turn's last user message.
    pub context: Vec<String>,
    /// Paths embedded (recorded with the turn).
    pub embedded: Vec<String>,
    /// What was left out, and why.
    pub omitted: Vec<String>,
}

/// Token counts of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens (including reasoning).
    pub output_tokens: u64,
    /// Of which reasoning, when the provider says.
    pub reasoning_tokens: u64,
    /// Of the input tokens, those read from the provider's prompt cache (priced at its cached
    /// rate), when the provider says.
    #[serde(default)]
    pub cached_input_tokens: u64,
}

impl Usage {
    /// Adds another call's counts (a multi-round call such as Kimi's web search).
    pub fn add(&mut self, other: Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.reasoning_tokens += other.reasoning_tokens;
        self.cached_input_tokens += other.cached_input_tokens;
    }
}

/// A provider that was tried and failed before the one that answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FallbackNote {
    /// Provider tried.
    pub provider: String,
    /// Model tried.
    pub model: String,
    /// Why it was left.
    pub error: String,
}

/// The complete answer to one turn.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The reply.
    pub text: String,
    /// The model's reasoning, when it exposed any.
    pub reasoning: Option<String>,
    /// The provider that actually answered.
    pub provider: String,
    /// The model that actually answered.
    pub model: String,
    /// The deployment that answered, by label (`glm#1`, `glm#eu`; never its key); none when
    /// the response cache did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// Token counts.
    pub usage: Usage,
    /// Cost in USD, from the catalog's prices (shown to 6 decimals).
    #[serde(serialize_with = "crate::usage::usd")]
    pub cost_usd: f64,
    /// Pass this to continue the conversation (for an ephemeral request: the id it read, if any).
    pub continuation_id: String,
    /// This request's id (also in logs and the tracing span).
    pub request_id: String,
    /// Why the model stopped (`stop`, `length`, …).
    pub finish_reason: Option<String>,
    /// Providers tried before this one, and why they were left.
    pub fallbacks: Vec<FallbackNote>,
    /// Whether the response cache answered (`hit`: no provider was called, nothing charged,
    /// `cost_usd` is 0) or was asked and missed; `None` when the cache is off for the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheStatus>,
}

/// One item of a streamed reply.
#[derive(Debug, Clone)]
#[non_exhaustive]
#[allow(
    clippy::large_enum_variant,
    reason = "Done comes once per stream, and embedders match it by value: a Box would change every match"
)]
pub enum ChatEvent {
    /// What the request is doing now (waiting for a free slot, calling a provider, falling
    /// back), for progress displays. Not part of the reply.
    Status(String),
    /// A piece of the reply.
    Text(String),
    /// A piece of the model's reasoning.
    Reasoning(String),
    /// The end: the whole reply with usage.
    Done(ChatResponse),
}
