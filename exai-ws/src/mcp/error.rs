//! [`McpError`]: a failure before the MCP server sees the request (a refused key, a body over
//! the limit), as a JSON-RPC error response with id `null` and the HTTP status of its
//! [`exai_core::ErrorClass`] — `-32600` (invalid request) for the client's fault, `-32603`
//! (internal error) for the server's.

use axum::response::{IntoResponse, Response};
use exai_core::Error;
use rmcp::model::ErrorCode;
use serde_json::Value;

use crate::failure::Failure;

/// The error of the MCP-over-HTTP door (`/mcp`).
#[derive(Debug)]
pub(crate) struct McpError(Failure);

impl From<Failure> for McpError {
    fn from(failure: Failure) -> Self {
        Self(failure)
    }
}

impl From<Error> for McpError {
    fn from(e: Error) -> Self {
        Self(e.into())
    }
}

/// JSON-RPC's error code for a failure with HTTP `status`.
fn code_for(status: u16) -> i64 {
    let code = if status < 500 {
        ErrorCode::INVALID_REQUEST
    } else {
        ErrorCode::INTERNAL_ERROR
    };
    i64::from(code.0)
}

impl IntoResponse for McpError {
    fn into_response(self) -> Response {
        let status = self.0.class.http_status();
        let body = exai_mcp::error_response(Value::Null, code_for(status), self.0.message.as_str());
        self.0.respond(status, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exai_core::ErrorClass;

    #[test]
    fn the_clients_faults_are_invalid_requests_and_the_servers_internal_errors() {
        assert_eq!(code_for(ErrorClass::TooLarge.http_status()), exai_mcp::INVALID_REQUEST);
        assert_eq!(
            code_for(ErrorClass::Unauthorized.http_status()),
            exai_mcp::INVALID_REQUEST
        );
        assert_eq!(code_for(ErrorClass::KeysUnavailable.http_status()), -32603);
        let response = McpError::from(Failure::too_large(10)).into_response();
        assert_eq!(response.status().as_u16(), 413);
    }
}
