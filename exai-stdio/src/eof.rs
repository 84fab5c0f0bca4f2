//! Knowing at once that the client went away.
//!
//! When stdin reaches EOF, rmcp's service loop waits up to 5 s for in-flight handlers before it
//! returns — too long for a process that must exit within 2 s of its client. This transport wraps
//! the stdio one and fires a signal the moment `receive` sees the end of input, so the server can
//! start its own (shorter) drain right away.

use std::borrow::Cow;

use rmcp::service::{RoleServer, RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use tokio::sync::oneshot;

/// A transport that reports end of input.
pub(crate) struct EofSignal<T> {
    inner: T,
    eof: Option<oneshot::Sender<()>>,
}

impl<T> EofSignal<T> {
    pub fn new(inner: T) -> (Self, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        (Self { inner, eof: Some(tx) }, rx)
    }
}

impl<T: Transport<RoleServer>> Transport<RoleServer> for EofSignal<T> {
    type Error = T::Error;

    fn name() -> Cow<'static, str> {
        T::name()
    }

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        let message = self.inner.receive().await;
        if message.is_none()
            && let Some(eof) = self.eof.take()
        {
            let _ = eof.send(());
        }
        message
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}
