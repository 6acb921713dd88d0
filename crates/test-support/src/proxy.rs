//! A TCP proxy that can be switched off or frozen, to take an engine "down" or make it hang
//! for one test without touching the shared engine other tests use.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::watch,
};

/// A TCP proxy to one upstream address. Switched off, it cuts every open connection and
/// closes its port (callers get "connection refused") until it is switched on again. Frozen,
/// it behaves like an upstream process that was stopped (`SIGSTOP`): connections are still
/// accepted, but not a byte moves in either direction, on open connections or new ones,
/// until it is thawed; then everything held is delivered.
pub struct SwitchableProxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    frozen: watch::Sender<bool>,
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
        let (generation, _) = watch::channel(0);
        let (frozen, _) = watch::channel(false);
        let proxy = Arc::new(Self {
            addr,
            up: Arc::new(AtomicBool::new(true)),
            generation,
            frozen,
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
            let Ok(Ok((inbound, _))) = accepted else {
                continue;
            };
            let mut cut = self.generation.subscribe();
            let frozen = self.frozen.subscribe();
            tokio::spawn(async move {
                let Ok(outbound) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (inbound_read, inbound_write) = inbound.into_split();
                let (outbound_read, outbound_write) = outbound.into_split();
                tokio::select! {
                    () = async {
                        tokio::join!(
                            pump(inbound_read, outbound_write, frozen.clone()),
                            pump(outbound_read, inbound_write, frozen),
                        );
                    } => {}
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

    /// Freezes or thaws the proxy (see the type's documentation).
    pub fn set_frozen(&self, frozen: bool) {
        self.frozen.send_replace(frozen);
    }

    /// `http://ADDR` for HTTP upstreams.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Copies one direction of a connection, moving nothing while the proxy is frozen; passes
/// end-of-stream on as a half close.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut frozen: watch::Receiver<bool>) {
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        // Neither read nor write while frozen: the peer's kernel buffers fill up as they would
        // against a stopped process.
        if frozen.wait_for(|frozen| !*frozen).await.is_err() {
            return;
        }
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(read) => read,
        };
        if frozen.wait_for(|frozen| !*frozen).await.is_err() {
            return;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
