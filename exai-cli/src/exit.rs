//! Errors at the edge of the CLI: one or two lines, and an exit code per kind (see `EXIT_CODES`).

use exai_core::Error;

/// A failure to report, with its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The exit code for a gateway error: the one table every binary shares
/// ([`exai_core::EXIT_CODES`]).
pub fn code_for(e: &Error) -> i32 {
    e.exit_code()
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let mut message = e.to_string();
        if let Some(after) = e.retry_after() {
            message.push_str(&format!("\n(retry in {} s)", after.as_secs().max(1)));
        }
        Failure {
            code: code_for(&e),
            message,
        }
    }
}

impl From<exai_core::ConfigError> for Failure {
    fn from(e: exai_core::ConfigError) -> Self {
        Failure::new(3, e.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::new(1, e.to_string())
    }
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Self {
        Failure::new(1, e.to_string())
    }
}
