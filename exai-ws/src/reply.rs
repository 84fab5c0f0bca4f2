//! A core [`WireReply`] as an HTTP response, for the doors whose replies are in a client's wire
//! (`openai.rs`, `anthropic.rs`): a whole reply's JSON, or a stream's bytes as they come — one
//! hop: the response body polls the gateway's stream, which polls the provider's — with who
//! answered in `x-exai-provider` and `x-exai-model`, what the gateway changed in
//! `x-exai-warning`, and whether the response cache answered in `x-exai-cache` (`hit`, `miss`). A failure after the 200 is written by the
//! door's `stream_error` as its wire's error event.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use exai_core::{Error, WireReply};
use futures::StreamExt;

/// `reply` as a response; `stream_error` renders a failure after the stream began.
pub(crate) fn wire_response(reply: WireReply, stream_error: fn(Error) -> Bytes) -> Response {
    let (mut response, provider, model, warning, cache) = match reply {
        WireReply::Whole {
            body,
            provider,
            model,
            warning,
            cache,
        } => {
            let response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
            (response, provider, model, warning, cache)
        }
        WireReply::Stream(stream) => {
            let (provider, model) = (stream.provider.clone(), stream.model.clone());
            let (warning, cache) = (stream.warning.clone(), stream.cache);
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
                cache,
            )
        }
    };
    if let Some(cache) = cache {
        response
            .headers_mut()
            .insert("x-exai-cache", HeaderValue::from_static(cache.as_str()));
    }
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
