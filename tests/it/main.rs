//! Whole-system integration tests of the podlog binary and crates.
