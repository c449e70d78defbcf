//! What the WebSocket stand-ins (Jetstream, the firehose) share: a loopback
//! listener that hands every connection to the stand-in's own handler, with
//! the state tests publish into and the signal that something was published.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// The published state and its wake-up, as each connection's handler gets them.
pub(crate) struct Shared<S> {
    pub state: Arc<Mutex<S>>,
    pub published: Arc<Notify>,
}

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Self {
            state: Arc::clone(&self.state),
            published: Arc::clone(&self.published),
        }
    }
}

/// Listens on a free loopback port and serves every connection with
/// `serve`; returns the address and the state shared with the handlers.
pub(crate) async fn start<S, F, Fut>(serve: F) -> (SocketAddr, Shared<S>)
where
    S: Default + Send + 'static,
    F: Fn(TcpStream, Shared<S>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    let shared = Shared {
        state: Arc::new(Mutex::new(S::default())),
        published: Arc::new(Notify::new()),
    };
    let handed = shared.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, handed.clone()));
        }
    });
    (addr, shared)
}
