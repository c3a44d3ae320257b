//! Row P9: what a reconnecting client costs. A pod restored on a long
//! session is served by `podlog-server`; one client attaches fresh and
//! reads the snapshot (the baseline: what the seed re-sent on every
//! reconnect), another reconnects with `Last-Event-ID` a few entries behind
//! the end and reads up to the last entry. Both count every byte the server
//! sent them (status line, headers, chunk framing and events), and both
//! check that they got what they should: the snapshot ends at the session's
//! last seq, the resume carries exactly the entries after its position.

use std::net::SocketAddr;

use podlog_pod::{Pod, ScriptedDriver};
use podlog_server::{PodRegistry, Server, ServerConfig};

use crate::error::{BenchError, Result};
use crate::fanout::POD;
use crate::restore::RestoreFixture;
use crate::sse_client::SseStream;

/// What one reconnect cost against a fresh attach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumeCost {
    /// Entries in the session.
    pub entries: u64,
    /// Entries the reconnecting client was behind.
    pub behind: u64,
    /// Bytes a fresh attach received up to the end of its snapshot.
    pub snapshot_bytes: u64,
    /// Bytes the reconnecting client received up to the last entry.
    pub resume_bytes: u64,
}

impl ResumeCost {
    /// Resume bytes per snapshot byte.
    pub fn ratio(&self) -> f64 {
        self.resume_bytes as f64 / self.snapshot_bytes as f64
    }
}

fn check(problem: impl Into<String>) -> BenchError {
    BenchError::Check {
        row: "P9",
        problem: problem.into(),
    }
}

/// Restores a pod on the session of `fixture` (which must not be open for
/// writing elsewhere), serves it, and measures a fresh attach against a
/// reconnect `behind` entries before the end.
pub fn measure_resume(fixture: &RestoreFixture, behind: u64) -> Result<ResumeCost> {
    let pod = Pod::restore(
        fixture.store(),
        fixture.session(),
        Box::new(ScriptedDriver::demo()),
    )
    .map_err(|e| check(format!("cannot restore the pod: {e}")))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| check(format!("cannot start the server runtime: {e}")))?;
    let pods = PodRegistry::new();
    pods.insert(POD, pod.clone()).map_err(check)?;
    let config = ServerConfig {
        listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..ServerConfig::default()
    };
    let server = runtime
        .block_on(Server::start(config, fixture.store(), pods))
        .map_err(|e| check(format!("cannot start the server: {e}")))?;
    let result = match server.local_addr() {
        Some(addr) => runtime.block_on(attach_and_resume(addr, &pod, behind)),
        None => Err(check("the server has no TCP address")),
    };
    let stopped = runtime.block_on(server.shutdown());
    drop(runtime);
    let result = result?;
    stopped.map_err(|e| check(format!("the server did not shut down cleanly: {e}")))?;
    Ok(result)
}

async fn attach_and_resume(addr: SocketAddr, pod: &Pod, behind: u64) -> Result<ResumeCost> {
    let path = format!("/pods/{POD}/events");
    let end = pod.end_seq().get();
    let io = |what: &'static str| move |e: std::io::Error| check(format!("{what}: {e}"));

    let mut fresh = SseStream::open(addr, &path, None)
        .await
        .map_err(io("fresh attach"))?;
    let snapshot = fresh
        .next_frame()
        .await
        .map_err(io("reading the snapshot"))?
        .ok_or_else(|| check("the stream ended before the snapshot"))?;
    if snapshot.event != "snapshot" || snapshot.id_seq() != Some(end) {
        return Err(check(format!(
            "the first event is {:?} with id {:?}, want the snapshot ending at seq {end}",
            snapshot.event, snapshot.id
        )));
    }
    let session = snapshot.id_session().unwrap_or_default().to_owned();
    let snapshot_bytes = fresh.bytes_read();
    drop(fresh);

    let from = end.saturating_sub(behind);
    let last_id = format!("{session}:{from}");
    let mut resumed = SseStream::open(addr, &path, Some(&last_id))
        .await
        .map_err(io("reconnecting"))?;
    let mut want = from + 1;
    while want <= end {
        let frame = resumed
            .next_frame()
            .await
            .map_err(io("reading the resumed stream"))?
            .ok_or_else(|| check(format!("the resumed stream ended before seq {want}")))?;
        if frame.id_seq() != Some(want) {
            return Err(check(format!(
                "resumed after seq {from}: got {:?} with id {:?}, want seq {want}",
                frame.event, frame.id
            )));
        }
        want += 1;
    }
    Ok(ResumeCost {
        entries: end,
        behind: end - from,
        snapshot_bytes,
        resume_bytes: resumed.bytes_read(),
    })
}
