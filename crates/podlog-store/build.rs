//! Embeds the workspace's `migrations/NNNN_name.sql` files into the store.
//!
//! Writes `$OUT_DIR/migrations.rs`, a table of `(version, name, sql)` built
//! with `include_str!`, so editing a migration rebuilds the crate; the
//! `rerun-if-changed` on the folder also picks up added or removed files.
//! File names must be a 4-digit version, an underscore and a name; versions
//! must run 1, 2, 3, ... with no gap.

use std::path::PathBuf;
use std::{env, fs};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let dir = manifest.join("../../migrations");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut found: Vec<(u32, String, PathBuf)> = Vec::new();
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("list migrations").path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if !name.ends_with(".sql") {
            continue;
        }
        let version: u32 = name
            .get(..4)
            .and_then(|v| v.parse().ok())
            .filter(|_| name.as_bytes().get(4) == Some(&b'_'))
            .unwrap_or_else(|| panic!("migration {name} must be named NNNN_name.sql"));
        println!("cargo:rerun-if-changed={}", path.display());
        found.push((version, name, path.canonicalize().expect("canonical path")));
    }
    found.sort();
    for (i, (version, name, _)) in found.iter().enumerate() {
        assert_eq!(
            *version as usize,
            i + 1,
            "migration {name}: versions must run 1, 2, 3, ... with no gap"
        );
    }
    let mut out = String::from("/// Every migration, in order: (version, file name, SQL).\npub(crate) const MIGRATIONS: &[(u32, &str, &str)] = &[\n");
    for (version, name, path) in &found {
        out.push_str(&format!(
            "    ({version}, {name:?}, include_str!({:?})),\n",
            path.display().to_string()
        ));
    }
    out.push_str("];\n");
    let dest = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo")).join("migrations.rs");
    fs::write(dest, out).expect("write migrations.rs");
}
