//! Checks shared by the CLI's test binaries.

/// `PREFIX_stats_history.csv` as Locust's: one Aggregated row a second,
/// none twice, from a row before any user (0 users, 0 requests) to the
/// last second of the running test (`users` users), with a total request
/// count that advances evenly (each step within `spread` of the mean, the
/// first step, which holds the ramp, aside).
pub fn assert_history_is_even(history: &str, users: u64, spread: f64) {
    let rows: Vec<[u64; 3]> = history
        .lines()
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l.split(',').collect();
            [cols[0], cols[1], cols[17]].map(|c| c.parse().unwrap_or_else(|e| panic!("{c}: {e}\n{history}")))
        })
        .collect();
    assert!(rows.len() >= 3, "one row a second: {history}");
    assert_eq!((rows[0][1], rows[0][2]), (0, 0), "the first row is from before the test: {history}");
    assert_eq!(rows.last().unwrap()[1], users, "the last row is of the running test: {history}");
    assert!(rows.windows(2).all(|w| w[1][0] == w[0][0] + 1), "a row each second, none twice: {history}");
    let steps: Vec<f64> = rows.windows(2).skip(1).map(|w| (w[1][2] - w[0][2]) as f64).collect();
    let mean = steps.iter().sum::<f64>() / steps.len() as f64;
    let even = (1.0 - spread) * mean..=(1.0 + spread) * mean;
    assert!(steps.iter().all(|s| even.contains(s)), "even steps: {steps:?}\n{history}");
}
