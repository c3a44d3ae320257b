//! The `podlog` command-line program.
fn main() {}
