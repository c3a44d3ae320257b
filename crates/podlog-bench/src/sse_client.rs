//! A minimal HTTP/1.1 client of one SSE stream, for the server rows P8 and
//! P9: it counts every byte the server sends (status line, headers, chunk
//! framing, events) and splits the body into SSE messages without copying
//! the stream more than once, so a snapshot of tens of megabytes on one
//! `data:` line costs a linear scan.
//!
//! It speaks only what those rows need: one `GET` with an optional
//! `Last-Event-ID`, a `200` answer with a chunked or close-delimited body,
//! and `\n`-separated SSE fields. Anything else is an error naming what was
//! found.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One SSE message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseFrame {
    pub id: Option<String>,
    /// The `event:` name (`message` when absent).
    pub event: String,
    pub data: String,
}

impl SseFrame {
    /// The seq after the last `:` of the `id:` (`SESSION:SEQ`).
    pub fn id_seq(&self) -> Option<u64> {
        self.id.as_deref()?.rsplit_once(':')?.1.parse().ok()
    }

    /// The session before the last `:` of the `id:`.
    pub fn id_session(&self) -> Option<&str> {
        Some(self.id.as_deref()?.rsplit_once(':')?.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line.
    Size,
    /// This many bytes of chunk data to go.
    Data(usize),
    /// The CRLF after a chunk's data.
    Crlf,
    /// The last (empty) chunk was read.
    Done,
}

/// An open event stream.
pub struct SseStream {
    stream: TcpStream,
    /// Bytes read and not yet de-chunked.
    raw: Vec<u8>,
    /// The de-chunked body not yet split into messages.
    body: Vec<u8>,
    /// `body[..scanned]` holds no message end.
    scanned: usize,
    chunked: Option<Chunk>,
    bytes_read: u64,
    eof: bool,
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl SseStream {
    /// Connects to `addr` and asks for the stream at `path`, with
    /// `Last-Event-ID: last_event_id` when given. Fails on a non-200 answer
    /// (with its status line).
    pub async fn open(
        addr: SocketAddr,
        path: &str,
        last_event_id: Option<&str>,
    ) -> io::Result<Self> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
             Cache-Control: no-cache\r\n"
        );
        if let Some(id) = last_event_id {
            request.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut this = Self {
            stream,
            raw: Vec::with_capacity(4096),
            body: Vec::new(),
            scanned: 0,
            chunked: None,
            bytes_read: 0,
            eof: false,
        };
        let head_end = loop {
            if let Some(i) = find(&this.raw, b"\r\n\r\n") {
                break i;
            }
            if this.read_more().await? == 0 {
                return Err(invalid(format!(
                    "the server closed the connection before the headers ended ({} bytes)",
                    this.raw.len()
                )));
            }
        };
        let head = String::from_utf8_lossy(&this.raw[..head_end]).into_owned();
        this.raw.drain(..head_end + 4);
        let status = head.lines().next().unwrap_or("");
        if !status.starts_with("HTTP/1.1 200") {
            return Err(invalid(format!("the server answered {status:?}")));
        }
        let chunked = head.lines().skip(1).any(|l| {
            l.split_once(':').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("transfer-encoding")
                    && v.trim().eq_ignore_ascii_case("chunked")
            })
        });
        this.chunked = chunked.then_some(Chunk::Size);
        this.decode()?;
        Ok(this)
    }

    /// Every byte read from the socket so far, headers and framing included.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Reads the stream's first message (comment-only blocks before it,
    /// heartbeats, are skipped) without holding it: each read is scanned
    /// and dropped, so a message of a gigabyte costs a few kilobytes of
    /// memory. Its data is kept when it is at most `keep` bytes.
    pub async fn measure_first_frame(mut self, keep: usize) -> io::Result<FirstFrame> {
        let mut meter = FrameMeter::new(keep);
        loop {
            let done = meter.feed(&self.body);
            self.body.clear();
            self.scanned = 0;
            if done {
                return Ok(meter.finish(self.bytes_read));
            }
            if self.eof || self.chunked == Some(Chunk::Done) {
                return Err(invalid(format!(
                    "the stream ended {} bytes into its first message",
                    meter.bytes
                )));
            }
            if self.read_more().await? == 0 {
                self.eof = true;
            }
            self.decode()?;
        }
    }

    /// The next message, or `None` once the server ended the stream.
    pub async fn next_frame(&mut self) -> io::Result<Option<SseFrame>> {
        loop {
            if let Some(frame) = self.take_frame() {
                return Ok(Some(frame));
            }
            if self.eof || self.chunked == Some(Chunk::Done) {
                return Ok(None);
            }
            if self.read_more().await? == 0 {
                self.eof = true;
            }
            self.decode()?;
        }
    }

    async fn read_more(&mut self) -> io::Result<usize> {
        self.raw.reserve(16 * 1024);
        let n = self.stream.read_buf(&mut self.raw).await?;
        self.bytes_read += n as u64;
        Ok(n)
    }

    /// Moves what `raw` holds of the body into `body`.
    fn decode(&mut self) -> io::Result<()> {
        let Some(mut state) = self.chunked else {
            self.body.append(&mut self.raw);
            return Ok(());
        };
        let mut pos = 0;
        loop {
            match state {
                Chunk::Size => {
                    let Some(end) = find(&self.raw[pos..], b"\r\n") else {
                        break;
                    };
                    let line = String::from_utf8_lossy(&self.raw[pos..pos + end]).into_owned();
                    let hex = line.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(hex, 16)
                        .map_err(|_| invalid(format!("bad chunk size line {line:?}")))?;
                    pos += end + 2;
                    state = if size == 0 {
                        Chunk::Done
                    } else {
                        Chunk::Data(size)
                    };
                }
                Chunk::Data(left) => {
                    let take = left.min(self.raw.len() - pos);
                    self.body.extend_from_slice(&self.raw[pos..pos + take]);
                    pos += take;
                    if take == left {
                        state = Chunk::Crlf;
                    } else {
                        state = Chunk::Data(left - take);
                        break;
                    }
                }
                Chunk::Crlf => {
                    if self.raw.len() - pos < 2 {
                        break;
                    }
                    pos += 2;
                    state = Chunk::Size;
                }
                Chunk::Done => break,
            }
        }
        self.raw.drain(..pos);
        self.chunked = Some(state);
        Ok(())
    }

    /// Splits the first complete message off `body`. Comment-only blocks
    /// (heartbeats) are skipped.
    fn take_frame(&mut self) -> Option<SseFrame> {
        loop {
            let from = self.scanned.saturating_sub(1);
            let Some(i) = find(&self.body[from..], b"\n\n") else {
                self.scanned = self.body.len();
                return None;
            };
            let end = from + i;
            let block: Vec<u8> = self.body.drain(..end + 2).collect();
            self.scanned = 0;
            let text = String::from_utf8_lossy(&block[..end]);
            let mut frame = SseFrame {
                id: None,
                event: "message".to_owned(),
                data: String::new(),
            };
            let mut has_data = false;
            for line in text.split('\n') {
                let line = line.strip_suffix('\r').unwrap_or(line);
                if line.starts_with(':') {
                    continue;
                }
                let (field, value) = match line.split_once(':') {
                    Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                    None => (line, ""),
                };
                match field {
                    "id" => frame.id = Some(value.to_owned()),
                    "event" => frame.event = value.to_owned(),
                    "data" => {
                        if has_data {
                            frame.data.push('\n');
                        }
                        frame.data.push_str(value);
                        has_data = true;
                    }
                    _ => {}
                }
            }
            if has_data {
                return Some(frame);
            }
        }
    }
}

/// The first message of a stream, as [`SseStream::measure_first_frame`]
/// measured it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirstFrame {
    pub id: Option<String>,
    /// The `event:` name (`message` when absent).
    pub event: String,
    /// The message's bytes: its field lines and the blank line ending it.
    pub bytes: u64,
    /// Bytes read from the socket when the message had arrived: the HTTP
    /// head and chunk framing included.
    pub wire_bytes: u64,
    /// The data (its lines joined by `\n`), when at most the bytes asked
    /// to keep.
    pub data: Option<String>,
}

impl FirstFrame {
    /// The seq after the last `:` of the `id:` (`SESSION:SEQ`).
    pub fn id_seq(&self) -> Option<u64> {
        self.id.as_deref()?.rsplit_once(':')?.1.parse().ok()
    }
}

/// Scans a message as its bytes arrive, keeping only its short fields.
pub(crate) struct FrameMeter {
    /// Data bytes to keep at most.
    keep: usize,
    /// The current line's first bytes (at most `cap`).
    line: Vec<u8>,
    cap: usize,
    /// The current line's length.
    line_len: u64,
    /// The message's bytes so far.
    bytes: u64,
    /// A field line was seen (a block of comments alone is no message).
    fields: bool,
    id: Option<String>,
    event: Option<String>,
    data: Vec<u8>,
    data_lines: u64,
    data_whole: bool,
}

impl FrameMeter {
    pub(crate) fn new(keep: usize) -> Self {
        Self {
            keep,
            line: Vec::new(),
            // Room for an `id:` or `event:` line whatever `keep` is.
            cap: keep.max(4096) + 16,
            line_len: 0,
            bytes: 0,
            fields: false,
            id: None,
            event: None,
            data: Vec::new(),
            data_lines: 0,
            data_whole: true,
        }
    }

    /// Takes the next bytes of the stream's body; `true` once the message
    /// ended (the rest of `bytes` is not looked at).
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            let Some(i) = bytes.iter().position(|&b| b == b'\n') else {
                self.take(bytes);
                return false;
            };
            self.take(&bytes[..i]);
            self.bytes += 1;
            bytes = &bytes[i + 1..];
            if self.end_line() {
                return true;
            }
        }
        false
    }

    fn take(&mut self, part: &[u8]) {
        self.bytes += part.len() as u64;
        self.line_len += part.len() as u64;
        let room = self.cap.saturating_sub(self.line.len()).min(part.len());
        self.line.extend_from_slice(&part[..room]);
    }

    /// Handles the line just ended; `true` when it ended the message.
    fn end_line(&mut self) -> bool {
        let line = std::mem::take(&mut self.line);
        let len = std::mem::take(&mut self.line_len);
        if len == 0 {
            if self.fields {
                return true;
            }
            // A block of comments (a heartbeat) before the message.
            self.bytes = 0;
            return false;
        }
        if line[0] == b':' {
            return false;
        }
        self.fields = true;
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(c) => {
                let rest = &line[c + 1..];
                (&line[..c], rest.strip_prefix(b" ").unwrap_or(rest))
            }
            None => (&line[..], &line[line.len()..]),
        };
        let whole = len == line.len() as u64;
        let text = || String::from_utf8_lossy(value).into_owned();
        match field {
            b"id" => self.id = Some(text()),
            b"event" => self.event = Some(text()),
            b"data" => {
                let sep = usize::from(self.data_lines > 0);
                if whole && self.data_whole && self.data.len() + sep + value.len() <= self.keep {
                    if sep == 1 {
                        self.data.push(b'\n');
                    }
                    self.data.extend_from_slice(value);
                } else {
                    self.data_whole = false;
                }
                self.data_lines += 1;
            }
            _ => {}
        }
        false
    }

    pub(crate) fn finish(self, wire_bytes: u64) -> FirstFrame {
        FirstFrame {
            id: self.id,
            event: self.event.unwrap_or_else(|| "message".to_owned()),
            bytes: self.bytes,
            wire_bytes,
            data: (self.data_whole && self.data_lines > 0)
                .then(|| String::from_utf8_lossy(&self.data).into_owned()),
        }
    }
}

/// The first index of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
