//! Reading Prometheus text exposition in tests.

/// The value of the sample `name{labels}` (labels as the exporter orders
/// them).
pub fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let head = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&head))
        .map(|v| v.trim().parse().unwrap())
}
