//! Benchmarks only; see `benches/` and `README.md`.

// The project README's Rust snippets run as this crate's doc tests: the
// README is the repository's, outside every published package.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ProjectReadmeDoctests;
