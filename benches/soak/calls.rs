//! The soak's calls: which front door each call goes through, whether it is streamed, which
//! upstream fault it asks for, the prompt that carries its id — and how a call can end.

/// A front door of exai-ws.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Door {
    /// `POST /v1/chat/completions`.
    OpenAi,
    /// `POST /v1/messages`.
    Anthropic,
    /// MCP over streamable HTTP (`/mcp`), the `chat` tool.
    McpHttp,
    /// MCP JSON-RPC over WebSocket (`/ws`), the `chat` tool.
    McpWs,
    /// The EXAI protocol over WebSocket (`/ws`), the `chat` tool.
    Exai,
}

impl Door {
    /// Every door, in the order calls are dealt to them.
    pub const ALL: [Door; 5] = [Door::OpenAi, Door::Anthropic, Door::McpHttp, Door::McpWs, Door::Exai];

    /// The door's name in the summary.
    pub fn name(self) -> &'static str {
        match self {
            Door::OpenAi => "OpenAI /v1/chat/completions",
            Door::Anthropic => "Anthropic /v1/messages",
            Door::McpHttp => "MCP over HTTP /mcp",
            Door::McpWs => "MCP over WebSocket",
            Door::Exai => "EXAI protocol (WebSocket)",
        }
    }
}

/// A fault the fake upstream is asked for in the prompt.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fault {
    /// HTTP 429 with `Retry-After: 1`.
    TooMany,
    /// HTTP 500.
    Failed,
    /// The reply breaks after three chunks.
    Dropped,
    /// No answer at all: the call's deadline must end it.
    Hang,
}

impl Fault {
    /// Every fault, in the order fault calls are dealt them.
    pub const ALL: [Fault; 4] = [Fault::TooMany, Fault::Failed, Fault::Dropped, Fault::Hang];

    /// Its name in the summary.
    pub fn name(self) -> &'static str {
        match self {
            Fault::TooMany => "429",
            Fault::Failed => "500",
            Fault::Dropped => "drop",
            Fault::Hang => "hang",
        }
    }
}

/// One call of the soak.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    /// Its number, which is also its id (`req-000123`) and its JSON-RPC id.
    pub n: usize,
    pub door: Door,
    /// Asks for a streamed reply (OpenAI, Anthropic) or progress notifications (MCP); the EXAI
    /// protocol always streams its chunks.
    pub stream: bool,
    pub fault: Option<Fault>,
}

impl Call {
    /// Call `n`: the doors in turn; in each round of five, one round in ten carries a fault (so
    /// exactly 10% of each door's calls), the faults in turn; streamed or not alternating, with
    /// the fault rounds' parity flipped every 40 rounds so that half of each fault is streamed.
    pub fn nth(n: usize) -> Self {
        let round = n / Door::ALL.len();
        Self {
            n,
            door: Door::ALL[n % Door::ALL.len()],
            stream: (round % 2) ^ ((round / 40) % 2) == 1,
            fault: (round % 10 == 3).then(|| Fault::ALL[(round / 10) % Fault::ALL.len()]),
        }
    }

    pub fn id(&self) -> String {
        format!("req-{:06}", self.n)
    }

    /// The prompt the fake upstream echoes (or answers with the fault it names).
    pub fn prompt(&self) -> String {
        let fault = match self.fault {
            Some(f) => format!(" [fault:{}]", f.name()),
            None => String::new(),
        };
        format!("{} say this back{fault}", self.id())
    }
}

/// How a call ended, as its client saw it.
#[derive(Debug)]
pub enum Outcome {
    /// A reply: its text (checked for ids by the tally).
    Reply(String),
    /// An error in the door's own protocol: its code or type.
    Refused(String),
    /// An answer in no protocol (a stream cut without its error event, a body of the wrong
    /// shape): what was wrong.
    Malformed(String),
    /// No answer within the client's timeout, or the connection failed.
    Lost(String),
    /// An answer naming another request.
    Crossed(String),
}
