//! The entries every measurement writes, publishes and reads: a realistic,
//! deterministic mix of kinds.
//!
//! [`Corpus`] plays the scripted coding conversation of
//! `podlog_pod::script::Script::demo` over and over (user inputs, reasoning,
//! text, tool calls, usage, turn ends, notifications, run completions), with
//! every tool output replaced by generated text of 256 bytes to 4 KiB, the
//! size of a file excerpt or a test run's output. The same `seed` always
//! yields the same entries (timestamps come from a step clock), so podlog and
//! its baselines are measured on identical bodies.

use std::collections::VecDeque;
use std::sync::Arc;

use podlog_entry::{LogEntry, StepClock};
use podlog_pod::script::{Script, Step};

/// The shortest generated tool output, in bytes.
pub const MIN_TOOL_OUTPUT: usize = 256;
/// The longest generated tool output, in bytes.
pub const MAX_TOOL_OUTPUT: usize = 4096;

/// An endless, deterministic stream of realistic entries (never a
/// `SessionStart`: those only start a session).
pub struct Corpus {
    script: Script,
    clock: StepClock,
    rng: SplitMix,
    run: usize,
    pending: VecDeque<LogEntry>,
}

impl Corpus {
    /// The stream for `seed`; equal seeds give equal streams.
    pub fn new(seed: u64) -> Self {
        Self {
            script: Script::demo(),
            clock: StepClock::new(1_700_000_000_000, 7),
            rng: SplitMix(seed),
            run: 0,
            pending: VecDeque::new(),
        }
    }

    /// The next `n` entries.
    pub fn take_vec(&mut self, n: usize) -> Vec<LogEntry> {
        self.by_ref().take(n).collect()
    }

    fn refill(&mut self) {
        let mut script = self.script.clone();
        for run in &mut script.runs {
            for step in &mut run.steps {
                if let Step::Call { name, output, .. } = step {
                    *output = tool_output(&mut self.rng, name);
                }
            }
        }
        let prefix = format!("call-{}", self.run);
        self.pending
            .extend(script.run(self.run, &prefix, &self.clock));
        self.run += 1;
    }
}

impl Iterator for Corpus {
    type Item = LogEntry;

    fn next(&mut self) -> Option<LogEntry> {
        if self.pending.is_empty() {
            self.refill();
        }
        self.pending.pop_front()
    }
}

/// `n` entries of the corpus for `seed`, each behind an `Arc`, for building
/// large mirrors that share a smaller set of distinct bodies.
pub fn shared_pool(seed: u64, n: usize) -> Vec<Arc<LogEntry>> {
    Corpus::new(seed).take(n).map(Arc::new).collect()
}

/// The total length of the entries' JSON text, in bytes.
pub fn json_bytes<'a>(entries: impl IntoIterator<Item = &'a LogEntry>) -> u64 {
    entries.into_iter().map(|e| e.to_json().len() as u64).sum()
}

/// Text that looks like what the named tool returns: source lines for a file
/// read, test lines for a command, between [`MIN_TOOL_OUTPUT`] and
/// [`MAX_TOOL_OUTPUT`] bytes, skewed towards the short end.
fn tool_output(rng: &mut SplitMix, tool: &str) -> String {
    // Square a uniform draw: most outputs are short, a few are long.
    let u = rng.unit();
    let span = (MAX_TOOL_OUTPUT - MIN_TOOL_OUTPUT) as f64;
    let want = MIN_TOOL_OUTPUT + (u * u * span) as usize;
    let mut out = String::with_capacity(want + 96);
    let mut line = 1u64;
    while out.len() < want {
        let k = rng.next_u64() % 1000;
        let text = match tool {
            "run_command" => format!(
                "test store::tests::case_{k} ... {}\n",
                if k.is_multiple_of(17) { "FAILED" } else { "ok" }
            ),
            "edit_file" => format!("@@ -{line},3 +{line},4 @@ fn item_{k}() {{ \"edited\" }}\n"),
            _ => format!(
                "{line:>4}  pub fn item_{k}(input: &str) -> Result<Vec<u8>, Error> {{ \
                 parse(\"{k}\\t\", input) }}\n"
            ),
        };
        out.push_str(&text);
        line += 1;
    }
    let mut end = want.min(out.len());
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    out
}

/// SplitMix64: a small, fast, deterministic generator; statistical quality
/// is irrelevant here, repeatability is what matters.
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A draw in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
