//! A TCP proxy that can be switched off, to take an engine "down" for one test without
//! touching the shared engine other tests use.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy to one upstream address. Switched off, it cuts every open connection and
/// closes its port (callers get "connection refused") until it is switched on again.
pub struct SwitchableProxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    generation: tokio::sync::watch::Sender<u64>,
}

impl SwitchableProxy {
    /// Starts proxying on a free local port (on the current tokio runtime).
    pub async fn start(upstream: SocketAddr) -> Arc<Self> {
        let listener = match TcpListener::bind("127.0.0.1:0").await {
            Ok(listener) => listener,
            Err(error) => panic!("cannot bind a proxy port: {error}"),
        };
        let addr = match listener.local_addr() {
            Ok(addr) => addr,
            Err(error) => panic!("cannot read the proxy's port: {error}"),
        };
        let (generation, _) = tokio::sync::watch::channel(0);
        let proxy = Arc::new(Self {
            addr,
            up: Arc::new(AtomicBool::new(true)),
            generation,
        });
        tokio::spawn(Self::serve(proxy.clone(), listener, upstream));
        proxy
    }

    async fn serve(self: Arc<Self>, mut listener: TcpListener, upstream: SocketAddr) {
        loop {
            if !self.up.load(Ordering::SeqCst) {
                drop(listener);
                while !self.up.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                listener = loop {
                    // The port was free a moment ago; retry briefly if the OS is slow to
                    // release it.
                    match TcpListener::bind(self.addr).await {
                        Ok(listener) => break listener,
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                };
            }
            let accepted =
                tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
            let Ok(Ok((mut inbound, _))) = accepted else {
                continue;
            };
            let mut cut = self.generation.subscribe();
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = cut.changed() => {}
                }
            });
        }
    }

    /// Switches the proxy on or off.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            self.generation.send_modify(|generation| *generation += 1);
        }
    }

    /// `http://ADDR` for HTTP upstreams.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}
