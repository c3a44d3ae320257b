//! Listeners and connections: the TCP and Unix-socket accept loops, and the
//! Unix socket file's life.
//!
//! # Contract
//!
//! * The Unix socket is created mode 0600 before it accepts anything: it is
//!   bound, its mode set, and only then does it listen, so no other user can
//!   connect in between.
//! * An existing path is never clobbered while live: a socket that accepts a
//!   connection means another server runs there, and starting fails with
//!   [`ServerError::SocketInUse`]; a socket nobody answers on is a leftover
//!   of a crashed server and is replaced; a path that is not a socket is
//!   refused with [`ServerError::NotASocket`].
//! * The socket file is removed when the server shuts down (if it is still
//!   the one this server created).
//! * Each accepted connection is logged once (listener and peer) and served
//!   as HTTP/1.1 on its own task, registered with the server's graceful
//!   shutdown. An accept error (too many open files, ...) is logged, and the
//!   loop pauses briefly and goes on.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

use crate::error::ServerError;
use crate::Stats;

/// Binds `addr` for TCP.
pub(crate) async fn bind_tcp(addr: std::net::SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

/// The Unix socket this server created, for removal at shutdown.
#[derive(Debug)]
pub(crate) struct SocketFile {
    pub(crate) path: PathBuf,
    /// Device and inode of the file this server made: removal leaves alone a
    /// file that has since been replaced.
    identity: (u64, u64),
}

impl SocketFile {
    /// Removes the socket file if it is still ours.
    pub(crate) fn remove(&self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.identity {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the unix socket");
                }
            }
        }
    }
}

/// Creates the Unix socket at `path` (0600), refusing a live one.
pub(crate) fn bind_unix(path: &Path) -> Result<(UnixListener, SocketFile), ServerError> {
    let fail = |source: std::io::Error| ServerError::Unix {
        path: path.to_owned(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ServerError::SocketInUse(path.to_owned()));
            }
            tracing::info!(path = %path.display(), "replacing a stale unix socket nobody listens on");
            std::fs::remove_file(path).map_err(fail)?;
        }
        Ok(_) => return Err(ServerError::NotASocket(path.to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    let socket =
        socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).map_err(fail)?;
    let address = socket2::SockAddr::unix(path).map_err(fail)?;
    socket.bind(&address).map_err(fail)?;
    let made = || -> std::io::Result<(u64, u64)> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        socket.listen(1024)?;
        socket.set_nonblocking(true)?;
        let meta = std::fs::symlink_metadata(path)?;
        Ok((meta.dev(), meta.ino()))
    };
    let identity = match made() {
        Ok(identity) => identity,
        Err(e) => {
            let _ = std::fs::remove_file(path);
            return Err(fail(e));
        }
    };
    let std_listener: std::os::unix::net::UnixListener = socket.into();
    let listener = UnixListener::from_std(std_listener).map_err(fail)?;
    Ok((
        listener,
        SocketFile {
            path: path.to_owned(),
            identity,
        },
    ))
}

/// Something that accepts connections.
pub(crate) trait Accept: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(
        &self,
    ) -> impl std::future::Future<Output = std::io::Result<(Self::Io, String)>> + Send;
}

impl Accept for TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept(&self) -> std::io::Result<(Self::Io, String)> {
        let (stream, peer) = TcpListener::accept(self).await?;
        let _ = stream.set_nodelay(true);
        Ok((stream, peer.to_string()))
    }
}

impl Accept for UnixListener {
    type Io = tokio::net::UnixStream;
    async fn accept(&self) -> std::io::Result<(Self::Io, String)> {
        let (stream, _) = UnixListener::accept(self).await?;
        let peer = stream
            .peer_cred()
            .ok()
            .and_then(|c| c.pid())
            .map_or_else(|| "unix".to_owned(), |pid| format!("unix pid {pid}"));
        Ok((stream, peer))
    }
}

/// Accepts connections on `listener` until `stop` turns true, serving each
/// with `router`.
pub(crate) async fn accept_loop<L: Accept>(
    listener: L,
    kind: &'static str,
    router: Router,
    mut stop: watch::Receiver<bool>,
    graceful: Arc<GracefulShutdown>,
    stats: Arc<Stats>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            accepted = listener.accept() => accepted,
        };
        let (io, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::error!(listener = kind, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        stats.connections.fetch_add(1, Ordering::Relaxed);
        tracing::info!(listener = kind, peer = %peer, "connection");
        let service = TowerToHyperService::new(router.clone());
        let connection =
            hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // A client that goes away mid-response is ordinary.
                tracing::debug!(listener = kind, peer = %peer, error = %e, "connection ended with an error");
            }
        });
    }
}
