//! Helpers shared by the integration tests: running the `podlog` binary on a
//! database in a temp dir, and the stock `sqlite3` shell.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temp dir with a database path in it.
pub struct TempDb {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl TempDb {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("podlog.db");
        Self { dir, path }
    }
}

/// The result of one run of a program, as text.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// `podlog --db DB ARGS...`, with no `PODLOG_DB` from the environment.
pub fn podlog(db: &Path, args: &[&str]) -> Run {
    Command::new(env!("CARGO_BIN_EXE_podlog"))
        .arg("--db")
        .arg(db)
        .args(args)
        .env_remove("PODLOG_DB")
        .output()
        .expect("run podlog")
        .into()
}

/// `sqlite3 -readonly DB SQL`: the stock shell, as a user would run it. The
/// test fails (it does not skip) when the shell is missing: `.ci/run`
/// installs it.
pub fn sqlite3(db: &Path, sql: &str) -> Run {
    Command::new("sqlite3")
        .arg("-readonly")
        .arg(db)
        .arg(sql)
        .output()
        .expect("the sqlite3 shell must be installed (apt-get install sqlite3)")
        .into()
}

/// A xorshift generator: random enough to pick kill moments, and the same
/// sequence for the same seed, so a failing run can be replayed.
pub struct Rng(pub u64);

impl Rng {
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
