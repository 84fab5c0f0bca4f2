//! Who a request comes from: the peer address axum recorded for the connection. Every front
//! door counts its client's rate by this address (the core does the counting).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::Extensions;

/// The client's address (loopback when the router runs without connection info, as in tests
/// that call it directly).
pub(crate) fn client_ip(extensions: &Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.0.ip())
}
