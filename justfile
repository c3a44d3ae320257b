# podlog's recipes: `just` lists them.

# List the recipes.
default:
    @just --list

# Run the whole test suite (the README's test command).
test:
    cargo test --workspace

# Clippy with warnings as errors, over every target.
lint:
    cargo clippy --workspace --all-targets -- -D warnings

# Format every crate.
fmt:
    cargo fmt --all

# Exactly what CI runs.
ci:
    bash .ci/run

# Print the quick ratio table of docs/performance.md (options: --dir, --repeats).
bench *ARGS:
    cargo run --release -p podlog-bench -- {{ARGS}}

# Run the criterion, memory and fan-out benches.
benches:
    cargo bench -p podlog-bench

# Write a scripted conversation into the default database and print it.
demo:
    cargo run -- demo
