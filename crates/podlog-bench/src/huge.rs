//! The long session of rows H1 to H4: a coding agent's session whose tool
//! outputs add up to a gigabyte, half of it repeats of earlier outputs, and
//! row H4, what the database keeps of it against its JSONL export.
//!
//! # The corpus
//!
//! [`HugeCorpus::plan`] lays out one session of [`HugeSpec::entries`]
//! entries (its `SessionStart` included) as runs of a coding agent: a user
//! input; two to ten model turns that call tools (sometimes after some
//! reasoning, one to three calls a turn, each turn closed by its usage and
//! `TurnEnd`, the results after it, now and then a runtime notification);
//! a closing turn with the answer; `RunCompleted`. The last run is shaped to
//! end exactly at the last entry, so the session holds no open run (a
//! restore then writes nothing).
//!
//! About a quarter of the entries are tool results. Most read a file, run
//! the tests or build (source listings with line numbers, test runs, build
//! logs with warnings), some search (`grep` hits), some edit a file (a
//! one-line acknowledgement). Those that read, test or build are large:
//! their sizes are drawn log-uniformly over a range of 1 to 64 and scaled
//! so that all outputs add up to [`HugeSpec::output_bytes`] (none below
//! 16 KiB, twice the out-of-line threshold; the outputs never repeated
//! share what the scaling leaves over); the rest are under 8 KiB.
//!
//! Half the output bytes are exact repeats, as repeated `cat`s and test
//! runs are: whenever the repeated bytes so far are fewer than the fresh
//! ones, a large output is, nine times in ten, a copy of one of the last 16
//! fresh large outputs of the same tool (the same file, the same test
//! command, hence the same call arguments). Everything follows from [`HugeSpec::seed`]:
//! the same spec gives the same session byte for byte.
//!
//! # How it is written
//!
//! [`HugeFixture::build`] streams the session as JSON Lines in podlog's
//! export format ([`HugeCorpus::jsonl`], generated as it is read, never a
//! file) into `Store::import` on a store at `synchronous=NORMAL`: one
//! transaction, each large string hashed and stored once as it would be by
//! an append, at the speed of generating and hashing the text.
//!
//! # Row H4
//!
//! [`HugeFixture::measure_size`]: after `PRAGMA wal_checkpoint(TRUNCATE)`,
//! the database file's size (and the WAL's, which the checkpoint empties)
//! against the bytes `Store::export` writes for the session. It checks that
//! the export has every entry and that the store holds exactly one payload
//! per distinct large output.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use podlog_entry::payload::THRESHOLD;
use podlog_entry::{AssistantContent, LogEntry, RequestConfig, SessionId, SystemItem};
use podlog_store::{Store, Synchronous};
use serde_json::{json, Value};

use crate::append::open_store;
use crate::corpus::SplitMix;
use crate::error::{self, BenchError, Result};

/// The session's id.
pub const SESSION_ID: &str = "huge-0001";

/// The fewest entries a session can have: its `SessionStart` and one run
/// (user input, answer, usage, turn end, run end).
pub const MIN_ENTRIES: usize = 1 + MIN_RUN;

/// The smallest large output: twice the out-of-line threshold.
pub const MIN_LARGE_OUTPUT: usize = 2 * THRESHOLD;

/// A run's user input and closing turn.
const MIN_RUN: usize = 1 + CLOSING;
/// The closing turn: answer, usage, turn end, run end.
const CLOSING: usize = 4;
/// How many recent fresh outputs a repeat is drawn from.
const RECENT: usize = 16;
/// Distinct files (and crates, commands) the tools work on.
const TARGETS: u64 = 128;
const START_TS: u64 = 1_700_000_000_000;
const MODEL: &str = "demo-model-1";

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HugeSpec {
    /// Entries in the session, its `SessionStart` included (at least
    /// [`MIN_ENTRIES`]).
    pub entries: usize,
    /// The tool outputs' bytes in all, repeats included.
    pub output_bytes: u64,
    /// The same seed gives the same session.
    pub seed: u64,
}

/// What a corpus holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HugeStats {
    pub entries: u64,
    pub runs: u64,
    pub tool_results: u64,
    /// Tool results of the out-of-line threshold or more.
    pub large_results: u64,
    /// The tool outputs' bytes, repeats included.
    pub output_bytes: u64,
    /// Bytes of outputs that repeat an earlier output exactly.
    pub repeated_bytes: u64,
    /// Distinct outputs of the out-of-line threshold or more, and their
    /// bytes: what the store keeps as payloads.
    pub distinct_large: u64,
    pub distinct_large_bytes: u64,
}

impl HugeStats {
    /// The share of output bytes that repeat an earlier output.
    pub fn repeated_share(&self) -> f64 {
        self.repeated_bytes as f64 / self.output_bytes.max(1) as f64
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Tool {
    ReadFile,
    Test,
    Build,
    Grep,
    Edit,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::ReadFile => "read_file",
            Tool::Test | Tool::Build => "run_command",
            Tool::Grep => "grep",
            Tool::Edit => "edit_file",
        }
    }
}

/// A tool call before sizing: its tool, whether its output is large, and
/// the output's weight (its share of the large outputs' bytes).
#[derive(Clone, Copy, Debug)]
struct Slot {
    tool: Tool,
    large: bool,
    error: bool,
    weight: f64,
    target: u64,
}

/// One tool output. Its text follows from these fields alone, so a repeat,
/// a copy of an earlier `Output`, has the same text and the same call
/// arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Output {
    tool: Tool,
    error: bool,
    target: u64,
    seed: u64,
    size: usize,
}

/// One entry of the session, before it is rendered.
#[derive(Clone, Copy, Debug)]
enum Step {
    Start,
    User { run: u64 },
    Think { seed: u64 },
    Say { seed: u64 },
    Call { run: u64, call: u64, slot: usize },
    Usage { turn: u64, seed: u64 },
    TurnEnd { turn: u64 },
    Result { run: u64, call: u64, slot: usize },
    Notify { seed: u64 },
    RunCompleted { turns: u64 },
}

/// A planned session: every entry is rendered from it on demand.
#[derive(Clone, Debug)]
pub struct HugeCorpus {
    steps: Vec<Step>,
    outputs: Vec<Output>,
    stats: HugeStats,
}

impl HugeCorpus {
    /// Lays out the session of `spec` (see the module docs).
    pub fn plan(spec: &HugeSpec) -> Self {
        let (steps, slots, runs) = structure(spec);
        let outputs = size_outputs(&slots, spec);
        let mut stats = tally(&outputs);
        stats.entries = steps.len() as u64;
        stats.runs = runs;
        Self {
            steps,
            outputs,
            stats,
        }
    }

    /// What the session holds.
    pub fn stats(&self) -> &HugeStats {
        &self.stats
    }

    /// The session's entries in seq order, rendered one at a time.
    pub fn entries(&self) -> impl Iterator<Item = LogEntry> + '_ {
        (0..self.steps.len()).map(|i| self.entry(i))
    }

    /// The session in podlog's export format (a header line, then one line
    /// per entry), generated as it is read.
    pub fn jsonl(&self) -> Jsonl<'_> {
        Jsonl {
            corpus: self,
            next: 0,
            line: Vec::new(),
            pos: 0,
        }
    }

    /// The time stamp of entry `i`: increasing, 1 to 2.5 s apart.
    fn ts(i: usize) -> u64 {
        let mut mix = SplitMix(i as u64);
        START_TS + i as u64 * 1_500 + mix.next_u64() % 1_000
    }

    fn entry(&self, i: usize) -> LogEntry {
        let ts = Self::ts(i);
        match self.steps[i] {
            Step::Start => LogEntry::SessionStart {
                ts,
                system_prompt: Some(
                    "You are a careful coding assistant working in a Rust repository. \
                     Read before you edit, run the tests after every change."
                        .to_owned(),
                ),
                config: RequestConfig {
                    model: MODEL.to_owned(),
                    ..RequestConfig::default()
                },
                history: Vec::new(),
                forked_from: None,
                compacted_from: None,
            },
            Step::User { run } => LogEntry::UserInput {
                ts,
                text: pick(USER_INPUTS, run).to_owned(),
                attachments: Vec::new(),
            },
            Step::Think { seed } => LogEntry::AssistantItem {
                ts,
                item: AssistantContent::Reasoning {
                    text: sentence(seed, THOUGHTS),
                },
            },
            Step::Say { seed } => LogEntry::AssistantItem {
                ts,
                item: AssistantContent::Text {
                    text: sentence(seed, ANSWERS),
                },
            },
            Step::Call { run, call, slot } => {
                let output = &self.outputs[slot];
                LogEntry::AssistantItem {
                    ts,
                    item: AssistantContent::ToolCall {
                        id: call_id(run, call),
                        name: output.tool.name().to_owned(),
                        arguments: arguments(output),
                    },
                }
            }
            Step::Usage { turn, seed } => LogEntry::LlmUsage {
                ts,
                model: MODEL.to_owned(),
                input_tokens: 2_000 + 900 * turn + seed % 500,
                output_tokens: 40 + seed % 600,
                cached_tokens: 1_500 + 800 * turn.saturating_sub(1),
            },
            Step::TurnEnd { turn } => LogEntry::TurnEnd {
                ts,
                turn_count: turn,
            },
            Step::Result { run, call, slot } => {
                let output = &self.outputs[slot];
                LogEntry::ToolResult {
                    ts,
                    call_id: call_id(run, call),
                    output: output_text(output),
                    is_error: output.error,
                }
            }
            Step::Notify { seed } => {
                let message = pick(NOTIFICATIONS, seed).to_owned();
                LogEntry::SystemItem {
                    ts,
                    item: SystemItem::Notification {
                        body: format!("[Notification] {message}"),
                        message,
                    },
                }
            }
            Step::RunCompleted { turns } => LogEntry::RunCompleted {
                ts,
                turn_count: turns,
            },
        }
    }

    /// The export's header line for the session.
    fn header(&self) -> String {
        let last = self.steps.len();
        json!({
            "type": "podlog.session",
            "format_version": 1,
            "id": SESSION_ID,
            "origin": "new",
            "parent_id": null,
            "parent_seq": null,
            "created_at": Self::ts(0),
            "updated_at": Self::ts(last.saturating_sub(1)),
            "last_seq": last,
            "title": "a long session with large, often repeated tool outputs",
        })
        .to_string()
    }
}

/// The session of a [`HugeCorpus`] as JSON Lines, generated line by line as
/// it is read.
pub struct Jsonl<'a> {
    corpus: &'a HugeCorpus,
    /// The next line: 0 is the header, `k` the entry at seq `k`.
    next: usize,
    line: Vec<u8>,
    pos: usize,
}

impl BufRead for Jsonl<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.line.len() && self.next <= self.corpus.steps.len() {
            self.line.clear();
            self.pos = 0;
            if self.next == 0 {
                self.line.extend_from_slice(self.corpus.header().as_bytes());
            } else {
                let entry = self.corpus.entry(self.next - 1).to_json();
                write!(
                    self.line,
                    "{{\"session_id\":\"{SESSION_ID}\",\"seq\":{},\"entry\":{entry}}}",
                    self.next
                )?;
            }
            self.line.push(b'\n');
            self.next += 1;
        }
        Ok(&self.line[self.pos..])
    }

    fn consume(&mut self, amount: usize) {
        self.pos = (self.pos + amount).min(self.line.len());
    }
}

impl Read for Jsonl<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// The runs of the session: its steps, its tool calls in order, and how
/// many runs.
fn structure(spec: &HugeSpec) -> (Vec<Step>, Vec<Slot>, u64) {
    let total = spec.entries.max(MIN_ENTRIES);
    let mut rng = SplitMix(spec.seed);
    let mut steps = vec![Step::Start];
    let mut slots = Vec::new();
    let mut run = 0u64;
    while steps.len() < total {
        // At least MIN_RUN: each run leaves none or at least MIN_RUN.
        let budget = total - steps.len();
        let mut out = vec![Step::User { run }];
        let mut turn = 0u64;
        let mut call = 0u64;
        for _ in 0..2 + rng.next_u64() % 9 {
            let think = rng.unit() < 0.3;
            let calls = match rng.next_u64() % 10 {
                0..=4 => 1,
                5..=7 => 2,
                _ => 3,
            };
            let notify = rng.unit() < 0.05;
            let size = usize::from(think) + 2 * calls + 2 + usize::from(notify);
            if out.len() + size + CLOSING > budget {
                break;
            }
            turn += 1;
            if think {
                out.push(Step::Think {
                    seed: rng.next_u64(),
                });
            }
            let mut made = Vec::with_capacity(calls);
            for _ in 0..calls {
                let slot = slots.len();
                slots.push(draw_slot(&mut rng));
                out.push(Step::Call { run, call, slot });
                made.push((call, slot));
                call += 1;
            }
            out.push(Step::Usage {
                turn,
                seed: rng.next_u64(),
            });
            out.push(Step::TurnEnd { turn });
            for (call, slot) in made {
                out.push(Step::Result { run, call, slot });
            }
            if notify {
                out.push(Step::Notify {
                    seed: rng.next_u64(),
                });
            }
        }
        // The closing turn. What a next run could not use goes into this
        // one as reasoning, so the session ends with a closed run.
        let left = budget - out.len() - CLOSING;
        let think = if left < MIN_RUN {
            left
        } else {
            usize::from(left > MIN_RUN && rng.unit() < 0.3)
        };
        for _ in 0..think {
            out.push(Step::Think {
                seed: rng.next_u64(),
            });
        }
        turn += 1;
        out.push(Step::Say {
            seed: rng.next_u64(),
        });
        out.push(Step::Usage {
            turn,
            seed: rng.next_u64(),
        });
        out.push(Step::TurnEnd { turn });
        out.push(Step::RunCompleted { turns: turn });
        steps.extend(out);
        run += 1;
    }
    (steps, slots, run)
}

fn draw_slot(rng: &mut SplitMix) -> Slot {
    let tool = match rng.next_u64() % 100 {
        0..=34 => Tool::ReadFile,
        35..=59 => Tool::Test,
        60..=74 => Tool::Build,
        75..=84 => Tool::Grep,
        _ => Tool::Edit,
    };
    let error = tool == Tool::ReadFile && rng.unit() < 0.03;
    let wide_grep = rng.unit() < 0.3;
    let large = match tool {
        Tool::ReadFile => !error,
        Tool::Test | Tool::Build => true,
        Tool::Grep => wide_grep,
        Tool::Edit => false,
    };
    Slot {
        tool,
        large,
        error,
        // Log-uniform over [1, 64].
        weight: (rng.unit() * 64f64.ln()).exp(),
        target: rng.next_u64() % TARGETS,
    }
}

/// Sizes every output so that they add up to about `spec.output_bytes`:
/// the scale of the large outputs' weights is corrected a few times, since
/// which outputs repeat depends on their sizes.
fn size_outputs(slots: &[Slot], spec: &HugeSpec) -> Vec<Output> {
    let weights: f64 = slots.iter().filter(|s| s.large).map(|s| s.weight).sum();
    let mut scale = spec.output_bytes as f64 / weights.max(1.0);
    let mut outputs = assign(slots, scale, spec.seed);
    for _ in 0..8 {
        let small: u64 = outputs
            .iter()
            .filter(|o| o.size < MIN_LARGE_OUTPUT)
            .map(|o| o.size as u64)
            .sum();
        let total: u64 = outputs.iter().map(|o| o.size as u64).sum();
        let (want, got) = (spec.output_bytes.saturating_sub(small), total - small);
        if got == 0 || want.abs_diff(got) * 1_000 < got {
            break;
        }
        scale *= want as f64 / got as f64;
        outputs = assign(slots, scale, spec.seed);
    }
    // What the corrections leave over or under is spread over the fresh
    // large outputs that are never repeated, so the outputs add up to the
    // bytes asked for (unless that would take one below its smallest).
    let total: u64 = outputs.iter().map(|o| o.size as u64).sum();
    let mut uses: HashMap<Output, usize> = HashMap::new();
    for o in &outputs {
        *uses.entry(*o).or_default() += 1;
    }
    let alone: Vec<usize> = (0..outputs.len())
        .filter(|&i| outputs[i].size >= MIN_LARGE_OUTPUT && uses[&outputs[i]] == 1)
        .collect();
    let left = spec.output_bytes as i64 - total as i64;
    if let Some(n) = i64::try_from(alone.len()).ok().filter(|&n| n > 0) {
        // Shares of `left` that add up to it exactly, negative or not.
        let (each, rest) = (left.div_euclid(n), left.rem_euclid(n));
        let sized = |k: usize| {
            let share = each + i64::from((k as i64) < rest);
            outputs[alone[k]].size as i64 + share
        };
        if (0..alone.len()).all(|k| sized(k) >= MIN_LARGE_OUTPUT as i64) {
            let sizes: Vec<i64> = (0..alone.len()).map(sized).collect();
            for (k, size) in sizes.into_iter().enumerate() {
                outputs[alone[k]].size = size as usize;
            }
        }
    }
    outputs
}

/// One output per slot at `scale` bytes per unit of weight, repeats chosen
/// as the module docs say.
fn assign(slots: &[Slot], scale: f64, seed: u64) -> Vec<Output> {
    let mut rng = SplitMix(seed ^ 0x6f75_7470_7574_7321);
    let mut recent: Vec<Output> = Vec::with_capacity(RECENT + 1);
    let (mut fresh, mut repeated) = (0u64, 0u64);
    let mut outputs = Vec::with_capacity(slots.len());
    for slot in slots {
        // The same draws whatever the scale, so that the choices move
        // little from one correction to the next.
        let (coin, pick, text_seed, small) =
            (rng.unit(), rng.next_u64(), rng.next_u64(), rng.next_u64());
        let candidates: Vec<&Output> = recent.iter().filter(|o| o.tool == slot.tool).collect();
        if slot.large && repeated < fresh && !candidates.is_empty() && coin < 0.9 {
            let output = *candidates[(pick % candidates.len() as u64) as usize];
            repeated += output.size as u64;
            outputs.push(output);
            continue;
        }
        let mut output = Output {
            tool: slot.tool,
            error: slot.error,
            target: slot.target,
            seed: text_seed,
            size: 0,
        };
        output.size = if slot.large {
            ((scale * slot.weight) as usize).max(MIN_LARGE_OUTPUT)
        } else if slot.tool == Tool::Grep {
            200 + (small % 5_800) as usize
        } else {
            // Edits and errors: a line whose length is its own.
            output_text(&output).len()
        };
        fresh += output.size as u64;
        if slot.large {
            recent.push(output);
            if recent.len() > RECENT {
                recent.remove(0);
            }
        }
        outputs.push(output);
    }
    outputs
}

fn tally(outputs: &[Output]) -> HugeStats {
    let mut stats = HugeStats::default();
    let mut seen = HashSet::new();
    for o in outputs {
        stats.tool_results += 1;
        stats.output_bytes += o.size as u64;
        let large = o.size >= THRESHOLD;
        stats.large_results += u64::from(large);
        if seen.insert(*o) {
            if large {
                stats.distinct_large += 1;
                stats.distinct_large_bytes += o.size as u64;
            }
        } else {
            stats.repeated_bytes += o.size as u64;
        }
    }
    stats
}

fn call_id(run: u64, call: u64) -> String {
    format!("call-{run}-{call}")
}

fn pick<T: Copy>(items: &[T], k: u64) -> T {
    items[(k % items.len() as u64) as usize]
}

fn file_path(target: u64) -> String {
    format!(
        "crates/{}/src/{}.rs",
        pick(CRATES, target),
        pick(MODULES, target / CRATES.len() as u64)
    )
}

fn arguments(output: &Output) -> Value {
    let t = output.target;
    match output.tool {
        Tool::ReadFile => json!({ "path": file_path(t) }),
        Tool::Test => json!({ "cmd": format!("cargo test -p {}", pick(CRATES, t)) }),
        Tool::Build => json!({ "cmd": pick(BUILDS, t) }),
        Tool::Grep => json!({
            "pattern": format!("fn {}_{}", pick(VERBS, t), pick(NOUNS, t / 7)),
            "path": "crates",
        }),
        Tool::Edit => json!({
            "path": file_path(t),
            "old": format!("let {} = {}(", pick(NOUNS, t), pick(VERBS, t)),
            "new": format!("let {} = self.{}(", pick(NOUNS, t), pick(VERBS, t)),
        }),
    }
}

/// The text of `output`: exactly `output.size` bytes for the outputs that
/// are sized, ASCII throughout.
fn output_text(output: &Output) -> String {
    let t = output.target;
    let mut rng = SplitMix(output.seed);
    if output.error {
        return format!(
            "error: cannot read {}: No such file or directory (os error 2)",
            file_path(t)
        );
    }
    let line: fn(&mut SplitMix, u64, u64, &mut String) = match output.tool {
        Tool::Edit => {
            let k = rng.next_u64();
            return format!(
                "edited {} (+{} -{} lines)",
                file_path(t),
                1 + k % 9,
                k / 9 % 4
            );
        }
        Tool::ReadFile => source_line,
        Tool::Test => test_line,
        Tool::Build => build_line,
        Tool::Grep => grep_line,
    };
    let mut out = String::with_capacity(output.size + 512);
    let mut n = 1;
    while out.len() < output.size {
        line(&mut rng, t, n, &mut out);
        n += 1;
    }
    out.truncate(output.size);
    out
}

/// A numbered line of a Rust source file, as `cat -n` shows it.
fn source_line(rng: &mut SplitMix, _target: u64, n: u64, out: &mut String) {
    let k = rng.next_u64();
    let (noun, other, verb) = (
        pick(NOUNS, k >> 8),
        pick(NOUNS, k >> 16),
        pick(VERBS, k >> 24),
    );
    let (ty, ty2, id) = (pick(TYPES, k >> 32), pick(TYPES, k >> 40), (k >> 48) % 1000);
    let _ = match k % 12 {
        0 => writeln!(out, "{n:>6}\t"),
        1 => writeln!(
            out,
            "{n:>6}\t/// {verb}s the {noun} at `{other}_{id}` and returns its {other}."
        ),
        2 => writeln!(
            out,
            "{n:>6}\tpub fn {verb}_{noun}(&mut self, {noun}: &{ty}) -> Result<{ty2}, Error> {{"
        ),
        3 => writeln!(
            out,
            "{n:>6}\t    let {noun} = self.{other}s.get(&{noun}_{id}).ok_or(Error::Missing({id}))?;"
        ),
        4 => writeln!(out, "{n:>6}\t    if {noun}.len() > {id} {{"),
        5 => writeln!(
            out,
            "{n:>6}\t        return Err(Error::TooLong {{ len: {noun}.len(), max: {id} }});"
        ),
        6 => writeln!(out, "{n:>6}\t    }}"),
        7 => writeln!(out, "{n:>6}\t    Ok({ty2}::from({noun}))"),
        8 => writeln!(out, "{n:>6}\t}}"),
        9 => writeln!(
            out,
            "{n:>6}\tuse crate::{}::{{{ty}, {ty2}}};",
            pick(MODULES, k >> 20)
        ),
        10 => writeln!(
            out,
            "{n:>6}\t    // {verb} before the commit: the {noun} must be on disk first."
        ),
        _ => writeln!(out, "{n:>6}\t    self.{noun}_count += {};", id % 7 + 1),
    };
}

/// A line of `cargo test` output.
fn test_line(rng: &mut SplitMix, target: u64, n: u64, out: &mut String) {
    let k = rng.next_u64();
    let krate = pick(CRATES, target);
    if n == 1 {
        let _ = write!(
            out,
            "    Finished `test` profile [unoptimized + debuginfo] target(s) in {}.{:02}s\n     \
             Running unittests src/lib.rs (target/debug/deps/{}-{:016x})\n\nrunning {} tests\n",
            k % 60,
            k / 60 % 100,
            krate.replace('-', "_"),
            k,
            300 + k % 700
        );
        return;
    }
    let (module, verb, noun) = (
        pick(MODULES, k >> 8),
        pick(VERBS, k >> 16),
        pick(NOUNS, k >> 24),
    );
    let id = (k >> 32) % 10_000;
    let _ = if k.is_multiple_of(97) {
        write!(
            out,
            "test {module}::tests::{verb}_{noun}_{id} ... FAILED\n\n---- {module}::tests::{verb}_{noun}_{id} stdout ----\n\
             thread '{module}::tests::{verb}_{noun}_{id}' panicked at crates/{krate}/src/{module}.rs:{}:{}:\n\
             assertion `left == right` failed\n  left: {}\n right: {}\n\
             note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n\n",
            (k >> 12) % 900 + 10,
            (k >> 20) % 60 + 5,
            id % 9,
            id % 9 + 1
        )
    } else if k.is_multiple_of(89) {
        writeln!(
            out,
            "test {module}::tests::{verb}_{noun}_{id} ... ignored, needs a real disk"
        )
    } else {
        writeln!(out, "test {module}::tests::{verb}_{noun}_{id} ... ok")
    };
}

/// A line (or a warning's block) of `cargo build` output.
fn build_line(rng: &mut SplitMix, target: u64, _n: u64, out: &mut String) {
    let k = rng.next_u64();
    let krate = pick(CRATES, target);
    let (module, noun, verb) = (
        pick(MODULES, k >> 8),
        pick(NOUNS, k >> 16),
        pick(VERBS, k >> 24),
    );
    let (line, col, id) = ((k >> 32) % 900 + 10, (k >> 42) % 40 + 5, (k >> 50) % 1000);
    let _ = match k % 10 {
        0..=5 => writeln!(
            out,
            "   Compiling {} v{}.{}.{}",
            pick(DEPENDENCIES, k >> 4),
            (k >> 40) % 3,
            (k >> 44) % 40,
            (k >> 52) % 12
        ),
        6 | 7 => write!(
            out,
            "warning: unused variable: `{noun}_{id}`\n  --> crates/{krate}/src/{module}.rs:{line}:{col}\n   |\n\
             {line:>3} |     let {noun}_{id} = {verb}({id});\n   |         ^^^^^^^^ help: if this is intentional, \
             prefix it with an underscore: `_{noun}_{id}`\n   |\n   = note: `#[warn(unused_variables)]` on by default\n\n"
        ),
        8 => write!(
            out,
            "warning: this `if` has identical blocks\n  --> crates/{krate}/src/{module}.rs:{line}:{col}\n\
             {line:>3} |         if {noun}.is_empty() {{ {verb}(&{noun}) }} else {{ {verb}(&{noun}) }}\n\
             \x20  = help: see https://rust-lang.github.io/rust-clippy/master/index.html#if_same_then_else\n\n"
        ),
        _ => writeln!(
            out,
            "    Checking {krate} v0.1.0 (/work/podlog/crates/{krate})"
        ),
    };
}

/// A hit of a search over the source tree.
fn grep_line(rng: &mut SplitMix, target: u64, _n: u64, out: &mut String) {
    let k = rng.next_u64();
    let _ = writeln!(
        out,
        "crates/{}/src/{}.rs:{}:    let {} = {}_{}(&{}_{})?;",
        pick(CRATES, k >> 4),
        pick(MODULES, k >> 12),
        (k >> 20) % 1200 + 1,
        pick(NOUNS, k >> 32),
        pick(VERBS, target),
        pick(NOUNS, target / 7),
        pick(NOUNS, k >> 40),
        (k >> 48) % 100
    );
}

/// Two or three sentences from `pool`, chosen by `seed`.
fn sentence(seed: u64, pool: &[&str]) -> String {
    let mut rng = SplitMix(seed);
    let n = 2 + rng.next_u64() % 2;
    let parts: Vec<&str> = (0..n).map(|_| pick(pool, rng.next_u64())).collect();
    parts.join(" ")
}

const CRATES: &[&str] = &[
    "podlog-store",
    "podlog-sink",
    "podlog-pod",
    "podlog-server",
    "podlog-entry",
    "podlog-protocol",
    "podlog-bench",
    "podlog",
];
const MODULES: &[&str] = &[
    "rows",
    "writer",
    "commit",
    "lifecycle",
    "jsonl",
    "verify",
    "payloads",
    "schema",
    "lock",
    "sse",
    "api",
    "view",
    "event",
    "pod",
    "driver",
    "script",
];
const NOUNS: &[&str] = &[
    "entry", "session", "payload", "writer", "snapshot", "event", "stream", "cursor", "batch",
    "record", "offset", "frame",
];
const VERBS: &[&str] = &[
    "read", "write", "append", "decode", "encode", "check", "split", "merge", "load", "flush",
];
const TYPES: &[&str] = &[
    "Entry", "Session", "Payload", "Seq", "Snapshot", "Event", "Batch", "Row", "Cursor", "Frame",
];
const DEPENDENCIES: &[&str] = &[
    "serde",
    "serde_json",
    "tokio",
    "hyper",
    "axum",
    "rusqlite",
    "libsqlite3-sys",
    "blake3",
    "imbl",
    "clap",
    "thiserror",
    "tracing",
    "bytes",
    "futures-util",
    "uuid",
    "libc",
];
const BUILDS: &[&str] = &[
    "cargo build --workspace",
    "cargo clippy --workspace --all-targets -- -D warnings",
    "cargo build --release -p podlog",
];
const USER_INPUTS: &[&str] = &[
    "Run the tests and fix whatever fails.",
    "Why is the restore slow on long sessions? Find out and fix it.",
    "Read the store's writer and explain the group commit to me.",
    "Add a test for a payload whose hash does not match its text.",
    "The build prints warnings again; clean them up.",
    "Rename the `rows` module's reader and update every caller.",
    "Check that export and import round-trip a forked session.",
];
const THOUGHTS: &[&str] = &[
    "The failing test points at the writer; read it before guessing.",
    "The build log is long, but only the first error matters.",
    "That file was read a moment ago; the change since is small.",
    "Run the whole suite again to be sure nothing else broke.",
    "The warning is real: the variable is computed and never used.",
    "The search shows three callers; each needs the new name.",
];
const ANSWERS: &[&str] = &[
    "The tests pass now.",
    "The fix is in the writer: it checked the counter after the insert instead of before.",
    "I renamed the reader and updated every caller; the build is clean.",
    "The warnings came from two unused variables and a duplicated branch; all three are gone.",
    "Export and import round-trip the forked session, parent chain included.",
    "One test still fails on this machine because it needs a real disk; it is marked ignored.",
];
const NOTIFICATIONS: &[&str] = &[
    "all tests pass",
    "the build finished with warnings",
    "the file changed on disk since it was read",
];

/// A written huge session and its store.
pub struct HugeFixture {
    store: Arc<Store>,
    /// The database file.
    path: PathBuf,
    session: SessionId,
    stats: HugeStats,
    import_time: Duration,
}

/// What row H4 measured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SizeCost {
    /// The database file after a `wal_checkpoint(TRUNCATE)`.
    pub db_bytes: u64,
    /// The WAL file then (zero unless another connection held it).
    pub wal_bytes: u64,
    /// Bytes of `Store::export` of the session.
    pub export_bytes: u64,
    /// `Store::payload_totals`: payloads and their bytes.
    pub payloads: u64,
    pub payload_bytes: u64,
    /// `Store::search_index_bytes`: what the full-text index holds.
    pub search_bytes: u64,
}

impl SizeCost {
    /// Database bytes (file and WAL) per export byte.
    pub fn ratio(&self) -> f64 {
        (self.db_bytes + self.wal_bytes) as f64 / self.export_bytes.max(1) as f64
    }
}

fn check(row: &'static str, problem: impl Into<String>) -> BenchError {
    BenchError::Check {
        row,
        problem: problem.into(),
    }
}

impl HugeFixture {
    /// Generates the session of `spec` into a new store at `dir/name`
    /// through `Store::import` (see the module docs).
    pub fn build(dir: &Path, name: &str, spec: &HugeSpec) -> Result<Self> {
        let corpus = HugeCorpus::plan(spec);
        let store = open_store("H4", dir, name, Synchronous::Normal)?;
        let start = Instant::now();
        let transfer = store
            .import(corpus.jsonl(), |_| {})
            .map_err(error::store("H4"))?;
        let import_time = start.elapsed();
        let stats = corpus.stats().clone();
        if transfer.entries != stats.entries {
            return Err(check(
                "H4",
                format!(
                    "imported {} entries, want {}",
                    transfer.entries, stats.entries
                ),
            ));
        }
        let session = SessionId::new(SESSION_ID).map_err(|e| check("H4", e.to_string()))?;
        Ok(Self {
            store,
            path: dir.join(name),
            session,
            stats,
            import_time,
        })
    }

    pub fn store(&self) -> Arc<Store> {
        self.store.clone()
    }

    pub fn session(&self) -> &SessionId {
        &self.session
    }

    /// The database file.
    pub fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// What the session holds.
    pub fn stats(&self) -> &HugeStats {
        &self.stats
    }

    /// How long the import took.
    pub fn import_time(&self) -> Duration {
        self.import_time
    }

    /// Row H4: the database's size after a checkpoint against the session's
    /// export (see the module docs).
    pub fn measure_size(&self) -> Result<SizeCost> {
        self.store.checkpoint().map_err(error::store("H4"))?;
        let path = self.path();
        let db_bytes = std::fs::metadata(&path)
            .map_err(error::io("H4", "reading the size of", &path))?
            .len();
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        let wal_bytes = std::fs::metadata(&wal).map_or(0, |m| m.len());
        let mut counted = ByteCount(0);
        let transfer = self
            .store
            .export(&self.session, false, &mut counted, |_| {})
            .map_err(error::store("H4"))?;
        if transfer.entries != self.stats.entries {
            return Err(check(
                "H4",
                format!(
                    "the export holds {} entries, want {}",
                    transfer.entries, self.stats.entries
                ),
            ));
        }
        let (payloads, payload_bytes) = self.store.payload_totals().map_err(error::store("H4"))?;
        if (payloads, payload_bytes) != (self.stats.distinct_large, self.stats.distinct_large_bytes)
        {
            return Err(check(
                "H4",
                format!(
                    "the store holds {payloads} payloads of {payload_bytes} bytes, want one per \
                     distinct large output: {} of {} bytes",
                    self.stats.distinct_large, self.stats.distinct_large_bytes
                ),
            ));
        }
        let search_bytes = self
            .store
            .search_index_bytes()
            .map_err(error::store("H4"))?;
        Ok(SizeCost {
            db_bytes,
            wal_bytes,
            export_bytes: counted.0,
            payloads,
            payload_bytes,
            search_bytes,
        })
    }
}

/// A writer that keeps only the count of bytes written.
struct ByteCount(u64);

impl Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
