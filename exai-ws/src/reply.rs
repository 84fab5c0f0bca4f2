//! A core [`WireReply`] as an HTTP response, for the doors whose replies are in a client's wire
//! (`openai.rs`, `anthropic.rs`): a whole reply's JSON, or a stream's bytes as they come — one
//! hop: the response body polls the gateway's stream, which polls the provider's — with who
//! answered in `x-exai-provider` and `x-exai-model`, and what the gateway changed in
//! `x-exai-warning`. A failure after the 200 is written by the
//! door's `stream_error` as its wire's error event.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use exai_core::{Error, WireReply};
use futures::StreamExt;

/// `reply` as a response; `stream_error` renders a failure after the stream began.
pub(crate) fn wire_response(reply: WireReply, stream_error: fn(Error) -> Bytes) -> Response {
    let (mut response, provider, model, warning) = match reply {
        WireReply::Whole {
            body,
            provider,
            model,
            warning,
        } => {
            let response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
            (response, provider, model, warning)
        }
        WireReply::Stream(stream) => {
            let (provider, model) = (stream.provider.clone(), stream.model.clone());
            let warning = stream.warning.clone();
            let body = stream.map(move |item| Ok::<_, Infallible>(item.unwrap_or_else(stream_error)));
            let headers = [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
            ];
            (
                (headers, Body::from_stream(body)).into_response(),
                provider,
                model,
                warning,
            )
        }
    };
    let warning = warning.map(|w| ("x-exai-warning", w));
    for (name, value) in [("x-exai-provider", provider), ("x-exai-model", model)]
        .into_iter()
        .chain(warning)
    {
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, v);
        }
    }
    response
}
