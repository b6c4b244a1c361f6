//! Benchmarks only; see `benches/` and `README.md`.

// The project README's Rust snippets run as this crate's doc tests: the
// README is the repository's, outside every published package.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ProjectReadmeDoctests;

/// The `n`th command-line argument as a count of at least 1, `default` when
/// absent; anything else ends the run with exit code 2, naming the argument
/// and showing `usage` (a bad count silently replaced by a default would
/// measure something other than what was asked).
pub fn count_arg(n: usize, name: &str, default: usize, usage: &str) -> usize {
    match std::env::args().nth(n) {
        None => default,
        Some(s) => match s.parse() {
            Ok(v) if v >= 1 => v,
            _ => {
                eprintln!("{name} must be a whole number of at least 1, not {s:?}");
                eprintln!("usage: {usage}");
                std::process::exit(2);
            }
        },
    }
}
