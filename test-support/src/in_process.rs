//! A server that runs on a task of the test's own runtime (the project's servers
//! take a listener and a shutdown future), stopped with a signal and awaited with a
//! deadline, so a server that does not stop fails the test instead of hanging it.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Resolves when [`InProcessServer::stop`] is called (or the server handle is dropped).
pub struct Shutdown(oneshot::Receiver<()>);

impl Future for Shutdown {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

/// A server future spawned with [`InProcessServer::spawn`].
pub struct InProcessServer<E> {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), E>>,
}

impl<E: Debug + Send + 'static> InProcessServer<E> {
    /// Spawns `serve(shutdown)` on the current runtime.
    pub fn spawn<F>(serve: impl FnOnce(Shutdown) -> F) -> Self
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        let (shutdown, rx) = oneshot::channel();
        InProcessServer {
            shutdown,
            task: tokio::spawn(serve(Shutdown(rx))),
        }
    }

    /// Signals shutdown and waits (10 s at most) for the server to end without error.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the server stops within 10 s")
            .expect("the server task does not panic")
            .expect("the server ends without error");
    }
}
